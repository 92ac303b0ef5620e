//! Lambda: one runner function per environment (`<project>-<env>-lumo-runner`), created or
//! updated only when its code or settings changed (`provision.rs`), and one
//! `InvokeWithResponseStream` per task run (`invoke.rs`, its streamed answer read in
//! `stream.rs`); what the function answers when it fails is told to the user in
//! `function_error.rs`.

mod function_error;
mod invoke;
mod provision;
mod stream;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_smithy_types::retry::RetryConfig;
use lumo_runner::executor::OutputObserver;
use tokio::sync::Mutex;

use super::AwsTarget;
use super::s3::S3Store;
use crate::backend::{BackendResult, Prepare, RunReport, RunRequest, TaskExecutor};

pub struct LambdaExecutor {
    control: Client,
    /// Invoke must never be retried by the SDK: a retry would run the task twice.
    invoke: Client,
    s3: S3Store,
    target: Arc<AwsTarget>,
    prepared: Mutex<BTreeSet<String>>,
}

/// `<project>-<env>-lumo-runner`.
pub fn function_name(project: &str, env: &str) -> String {
    format!("{project}-{env}-lumo-runner")
}

impl LambdaExecutor {
    pub fn new(sdk: &aws_config::SdkConfig, s3: S3Store, target: Arc<AwsTarget>) -> Self {
        let invoke_config = aws_sdk_lambda::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .build();
        LambdaExecutor {
            control: Client::new(sdk),
            invoke: Client::from_conf(invoke_config),
            s3,
            target,
            prepared: Mutex::new(BTreeSet::new()),
        }
    }
}

#[async_trait]
impl TaskExecutor for LambdaExecutor {
    async fn prepare(&self, env: &str, mode: Prepare) -> BackendResult<()> {
        let mut prepared = self.prepared.lock().await;
        if prepared.contains(env) {
            return Ok(());
        }
        match mode {
            Prepare::Deploy => self.ensure_function(env).await?,
            Prepare::Run => self.check_function(env).await?,
        }
        prepared.insert(env.to_string());
        Ok(())
    }

    async fn run(
        &self,
        request: RunRequest,
        output: &mut dyn OutputObserver,
    ) -> BackendResult<RunReport> {
        self.invoke_task(request, output).await
    }
}
