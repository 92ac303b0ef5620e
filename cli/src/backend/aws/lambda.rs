//! Lambda: one runner function per environment (`<project>-<env>-lumo-runner`), created or
//! updated only when its code or settings changed, and one synchronous Invoke per task run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture as LambdaArch, EphemeralStorage, FunctionCode, FunctionConfiguration,
    InvocationType, LastUpdateStatus, Runtime, State,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use lumo_runner::contract::{
    BundleLocation, InvokeRequest, InvokeResponse, RunStatus, UploadTarget,
};
use lumo_runner::executor::{DEFAULT_KILL_GRACE, OutputObserver};
use lumo_runner::mask::Masker;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tokio::sync::Mutex;

use super::errors::sdk_error;
use super::s3::S3Store;
use super::{AwsTarget, runner_missing};
use crate::backend::records::Timestamp;
use crate::backend::{BackendError, BackendResult, Prepare, RunReport, RunRequest, TaskExecutor};
use crate::bundle::assets::{BundleEntry, EntrySource};
use crate::config::Architecture;
use crate::stop::StopReason;

/// The runner function's timeout: Lambda's maximum. Billing is by duration, so this costs
/// nothing, and the runner stops each task at its own (lower) timeout.
const FUNCTION_TIMEOUT_SECS: i32 = 900;
/// How long the CLI waits for an Invoke beyond the function's timeout: Lambda's own overhead
/// (a cold start is not part of the function's timeout) and the response's way back.
const INVOKE_SLACK: Duration = Duration::from_secs(60);
/// The runner function's `/tmp` (MB). Lambda's default of 512 MB does not hold the runner's
/// bundle cache (up to 256 MiB, `lumo_runner::lambda::DEFAULT_CACHE_MAX_BYTES`), a download
/// beside it and the unpacked bundle (up to Lambda's 250 MB) with the run's log at once; 1024
/// does, with room to spare. The extra 512 MB costs a fraction of the function's memory price.
const EPHEMERAL_STORAGE_MB: i32 = 1024;
/// How long a presigned URL outlives the task's timeout (or the function's, when longer).
const PRESIGN_SLACK: Duration = Duration::from_secs(15 * 60);
/// Output up to this size is fetched from S3 after the run and shown in full; beyond it, the tail.
const SHOW_FULL_OUTPUT_BYTES: u64 = 1 << 20;
/// How long a stopped run waits for the runner to stop the task and answer: its look for the
/// cancel object (every second), the task's kill grace (3 s), the log upload, with room.
const CANCEL_WAIT: Duration = Duration::from_secs(20);
/// How many times to look at the function again when it changed while a deploy set it up.
const CONFLICT_ROUNDS: u32 = 4;
/// How long to wait for the function to become active or finish updating.
const READY_WAIT: Duration = Duration::from_secs(300);

/// The runner binary for Lambda and the sha256 that identifies it.
struct Runner<'a> {
    path: &'a Path,
    sha256: String,
}

/// Whether a change to the function was made: `false` when Lambda answered
/// `ResourceConflictException` (the function changed meanwhile, or another change of it is in
/// progress), any other error described as `what` was being done.
fn applied<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    what: impl FnOnce() -> String,
) -> BackendResult<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ResourceConflictException") => Ok(false),
        Err(e) => Err(sdk_error(&what(), e)),
    }
}

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

    fn wanted_arch(&self) -> LambdaArch {
        match self.target.architecture {
            Architecture::Arm64 => LambdaArch::Arm64,
            Architecture::X86_64 => LambdaArch::X8664,
        }
    }

    /// Creates the function, or updates its code and settings where they differ, then waits
    /// until it can be invoked.
    ///
    /// Lambda answers `ResourceConflictException` when the function appeared since we looked
    /// (a create that went through although its response was lost, so the SDK retried it) or
    /// another update of it is in progress: we look again, and wait for a function that is
    /// still being created or updated before comparing it.
    async fn ensure_function(&self, env: &str) -> BackendResult<()> {
        let name = function_name(&self.target.project, env);
        if name.len() > 64 {
            return Err(BackendError::new(format!(
                "the runner function name `{name}` is longer than Lambda's 64 characters"
            ))
            .hint("use a shorter `projectName` or environment name"));
        }
        // The runner's identity is the sha256 of its binary, kept in the function's description:
        // comparing it costs a hash (cached by file metadata), where comparing `CodeSha256`
        // would mean zipping the binary on every deploy.
        let runner = match &self.target.runner {
            Some(path) => Some(Runner {
                sha256: binary_sha256(path, &self.target.cache_dir)?,
                path,
            }),
            None => None,
        };
        let mut round = 1;
        loop {
            let settled = match self.function_configuration(&name).await? {
                None => self.create_function(&name, env, runner.as_ref()).await?,
                Some(config) => {
                    self.update_function(&name, env, runner.as_ref(), &config)
                        .await?
                }
            };
            if settled {
                return Ok(());
            }
            if round == CONFLICT_ROUNDS {
                return Err(BackendError::new(format!(
                    "the runner function `{name}` kept changing while this deploy set it up"
                ))
                .hint("is another deploy or tool updating it? Try again once it has finished"));
            }
            tracing::info!("`{name}` changed while we set it up; looking again");
            round += 1;
        }
    }

    /// The function's configuration, or `None` when it does not exist.
    async fn function_configuration(
        &self,
        name: &str,
    ) -> BackendResult<Option<FunctionConfiguration>> {
        match self.control.get_function().function_name(name).send().await {
            Ok(out) => Ok(out.configuration),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(
                &format!("looking up the runner function `{name}`"),
                e,
            )),
        }
    }

    fn description(&self, env: &str, runner: &Runner) -> String {
        format!(
            "lumo runner for {} / {env} (runner sha256 {})",
            self.target.project, runner.sha256
        )
    }

    /// Creates the function and waits until it is active; `false` when it exists already.
    async fn create_function(
        &self,
        name: &str,
        env: &str,
        runner: Option<&Runner<'_>>,
    ) -> BackendResult<bool> {
        let Some(runner) = runner else {
            return Err(runner_missing(&self.target));
        };
        let Some(role) = &self.target.role_arn else {
            return Err(BackendError::new(format!(
                "cannot create the runner function `{name}`: the config sets no `aws.roleArn`"
            ))
            .hint("use the `RunnerRoleArn` output of the stack in `infra/`"));
        };
        tracing::info!("creating the runner function {name}");
        let created = self
            .control
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .architectures(self.wanted_arch())
            .memory_size(self.target.memory_size as i32)
            .timeout(FUNCTION_TIMEOUT_SECS)
            .ephemeral_storage(ephemeral_storage()?)
            .description(self.description(env, runner))
            .tags("lumo:project", &self.target.project)
            .tags("lumo:environment", env)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(runner_zip(runner.path)?))
                    .build(),
            )
            .send()
            .await;
        // A conflict: it exists already (our own create went through though its answer was lost).
        if !applied(created, || format!("creating the runner function `{name}`"))? {
            return Ok(false);
        }
        self.wait_active(name).await?;
        Ok(true)
    }

    /// Updates the function's code and settings where they differ from what this deploy
    /// wants, then waits until it is ready. `false` when another change of it was under way
    /// (then it has been waited for, and `config` is out of date).
    async fn update_function(
        &self,
        name: &str,
        env: &str,
        runner: Option<&Runner<'_>>,
        config: &FunctionConfiguration,
    ) -> BackendResult<bool> {
        let pending = config.state().is_some_and(|s| *s == State::Pending);
        let updating = config
            .last_update_status()
            .is_some_and(|s| *s == LastUpdateStatus::InProgress);
        if pending || updating {
            if pending {
                self.wait_active(name).await?;
            }
            if updating {
                self.wait_updated(name).await?;
            }
            return Ok(false);
        }
        let mut changed = false;
        let wanted_description = runner.map(|r| self.description(env, r));
        match runner {
            Some(runner) => {
                let same_code = config
                    .description()
                    .is_some_and(|d| d.ends_with(&format!("(runner sha256 {})", runner.sha256)));
                let same_arch = config
                    .architectures()
                    .first()
                    .is_none_or(|a| *a == self.wanted_arch());
                if !same_code || !same_arch {
                    tracing::info!("updating the code of {name}");
                    let updated = self
                        .control
                        .update_function_code()
                        .function_name(name)
                        .zip_file(Blob::new(runner_zip(runner.path)?))
                        .architectures(self.wanted_arch())
                        .send()
                        .await;
                    if !applied(updated, || format!("updating the code of `{name}`"))? {
                        return Ok(false);
                    }
                    self.wait_updated(name).await?;
                    changed = true;
                }
            }
            None => tracing::warn!("runner binary not found; using the deployed `{name}` as it is"),
        }
        let settings_differ = config.memory_size() != Some(self.target.memory_size as i32)
            || config.timeout() != Some(FUNCTION_TIMEOUT_SECS)
            || config.ephemeral_storage().map(EphemeralStorage::size) != Some(EPHEMERAL_STORAGE_MB)
            || config.handler() != Some("bootstrap")
            || config.runtime() != Some(&Runtime::Providedal2023)
            || wanted_description
                .as_deref()
                .is_some_and(|d| config.description() != Some(d))
            || self
                .target
                .role_arn
                .as_deref()
                .is_some_and(|r| config.role() != Some(r));
        if settings_differ {
            tracing::info!("updating the settings of {name}");
            let mut update = self
                .control
                .update_function_configuration()
                .function_name(name)
                .memory_size(self.target.memory_size as i32)
                .timeout(FUNCTION_TIMEOUT_SECS)
                .ephemeral_storage(ephemeral_storage()?)
                .handler("bootstrap")
                .runtime(Runtime::Providedal2023)
                .set_description(wanted_description);
            if let Some(role) = &self.target.role_arn {
                update = update.role(role);
            }
            let updated = update.send().await;
            if !applied(updated, || format!("updating the settings of `{name}`"))? {
                return Ok(false);
            }
            changed = true;
        }
        if changed {
            self.wait_updated(name).await?;
        }
        Ok(true)
    }

    /// Asks the runner of a run to stop its task: writes the cancel object it looks for.
    async fn cancel(&self, cancel_key: &str, reason: &StopReason) -> BackendResult<()> {
        self.s3
            .put_bytes(cancel_key, reason.to_string().into_bytes(), "text/plain")
            .await
    }

    /// The function exists (a manual run changes no infrastructure).
    async fn check_function(&self, env: &str) -> BackendResult<()> {
        let name = function_name(&self.target.project, env);
        match self.function_configuration(&name).await? {
            Some(_) => Ok(()),
            None => Err(
                BackendError::new(format!("the runner function `{name}` does not exist")).hint(
                    format!("deploy the environment first: `lumo deploy --env {env}`"),
                ),
            ),
        }
    }

    async fn wait_active(&self, name: &str) -> BackendResult<()> {
        self.control
            .wait_until_function_active_v2()
            .function_name(name)
            .wait(READY_WAIT)
            .await
            .map_err(|e| {
                BackendError::with_source(
                    format!("the runner function `{name}` did not become active"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn wait_updated(&self, name: &str) -> BackendResult<()> {
        self.control
            .wait_until_function_updated_v2()
            .function_name(name)
            .wait(READY_WAIT)
            .await
            .map_err(|e| {
                BackendError::with_source(
                    format!("the runner function `{name}` did not finish updating"),
                    e,
                )
            })?;
        Ok(())
    }
}

fn ephemeral_storage() -> BackendResult<EphemeralStorage> {
    EphemeralStorage::builder()
        .size(EPHEMERAL_STORAGE_MB)
        .build()
        .map_err(|e| BackendError::with_source("cannot describe the runner's `/tmp` size", e))
}

/// How long to wait for one Invoke before giving up on it.
///
/// Not the task's timeout: the runner may spend up to the function's own deadline downloading
/// the bundle before the task even starts (its download is bounded by that deadline only), and
/// after the task it uploads the output. A CLI that gave up earlier would record the run as
/// failed and release the environment's lock while the function may still start the task. So
/// the wait covers the longest the function may run: its timeout (Lambda's maximum, which lumo
/// sets; a longer task timeout is lowered by the runner), plus slack.
fn invoke_wait(task_timeout: Duration) -> Duration {
    let function_timeout = Duration::from_secs(FUNCTION_TIMEOUT_SECS.unsigned_abs().into());
    task_timeout.max(function_timeout) + INVOKE_SLACK
}

/// The runner binary zipped as `bootstrap` (deterministic, like every lumo zip).
fn runner_zip(binary: &Path) -> BackendResult<Vec<u8>> {
    let fail = |e: std::io::Error| {
        BackendError::with_source(
            format!("cannot zip the runner binary `{}`", binary.display()),
            e,
        )
    };
    let size = std::fs::metadata(binary).map_err(fail)?.len();
    let entry = BundleEntry {
        path: "bootstrap".into(),
        source: EntrySource::File(binary.to_path_buf()),
        executable: true,
        size,
    };
    let mut file = tempfile::tempfile().map_err(fail)?;
    crate::bundle::write_zip(&file, &[entry]).map_err(fail)?;
    file.rewind().map_err(fail)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

/// The sha256 of the runner binary, cached in `<cache_dir>/runner.sha256` under the file's
/// path, size, modification time and inode, so an unchanged binary costs one `stat`.
fn binary_sha256(binary: &Path, cache_dir: &Path) -> BackendResult<String> {
    let meta = std::fs::metadata(binary).map_err(|e| {
        BackendError::with_source(
            format!("cannot read the runner binary `{}`", binary.display()),
            e,
        )
    })?;
    let key = format!(
        "{}\t{}\t{}.{}\t{}",
        binary.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let cache = cache_dir.join("runner.sha256");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((cached_key, sha)) = text.trim_end().rsplit_once('\t')
        && cached_key == key
    {
        return Ok(sha.to_string());
    }
    let sha = lumo_runner::bundle::sha256_file(binary).map_err(|e| {
        BackendError::with_source(
            format!("cannot hash the runner binary `{}`", binary.display()),
            e,
        )
    })?;
    // Only a cache: failing to write it costs the next deploy a hash, nothing else.
    let _ = std::fs::create_dir_all(cache_dir)
        .and_then(|()| std::fs::write(&cache, format!("{key}\t{sha}\n")));
    Ok(sha)
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
        let name = function_name(&self.target.project, &request.env);
        let run_id = request.context.run_id.clone();
        // The runner uploads the log when the run ends, which may be as late as the function's
        // deadline: the URLs must outlive the whole wait.
        let wait = invoke_wait(request.timeout);
        let expires = wait + PRESIGN_SLACK;
        let bundle_key = self.s3.bundle_key(&request.bundle);
        let log_key = self.s3.log_key(&run_id);
        let data_key = self.s3.data_key(&run_id);
        let cancel_key = self.s3.cancel_key(&run_id);
        let payload = InvokeRequest {
            task: request.task.clone(),
            bundle: BundleLocation {
                url: self.s3.presign_get(&bundle_key, expires).await?,
                key: bundle_key,
                sha256: request.bundle.clone(),
            },
            context: request.context,
            timeout_ms: request.timeout.as_millis() as u64,
            env: request.env_vars,
            secrets: request.secrets,
            log_upload: Some(UploadTarget {
                url: self.s3.presign_put(&log_key, expires).await?,
                key: log_key.clone(),
            }),
            data_upload: Some(UploadTarget {
                url: self.s3.presign_put(&data_key, expires).await?,
                key: data_key.clone(),
            }),
            cancel_url: Some(self.s3.presign_get(&cancel_key, expires).await?),
        };
        let body = serde_json::to_vec(&payload)
            .map_err(|e| BackendError::with_source("cannot encode the runner payload", e))?;
        // The call lasts as long as the function may run: see `invoke_wait`.
        let timeouts = TimeoutConfig::builder()
            .read_timeout(wait)
            .operation_timeout(wait)
            .operation_attempt_timeout(wait)
            .build();
        let started_at = Timestamp::now();
        let masker = Masker::new(payload.secrets.values().cloned());
        let invoke = self
            .invoke
            .invoke()
            .function_name(&name)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(body))
            .customize()
            .config_override(aws_sdk_lambda::config::Builder::default().timeout_config(timeouts))
            .send();
        tokio::pin!(invoke);
        let mut stopped = None;
        let response = tokio::select! {
            response = &mut invoke => response,
            // A synchronous Invoke cannot be called back; the runner looks for the cancel
            // object and stops the task as on a timeout, then answers as usual.
            reason = request.stop.stopped() => {
                let answered = match self.cancel(&cancel_key, &reason).await {
                    Ok(()) => tokio::time::timeout(CANCEL_WAIT, &mut invoke)
                        .await
                        .map_err(|_| format!("did not stop within {}s", CANCEL_WAIT.as_secs())),
                    Err(e) => Err(format!("could not be asked to stop ({e})")),
                };
                let response = match answered {
                    Ok(response) => response,
                    Err(why) => {
                        return Ok(RunReport::stopped(
                            reason,
                            &format!(
                                "its Lambda invocation {why} and was left to finish on its own (the task's timeout, {}, still applies there)",
                                humantime::format_duration(request.timeout)
                            ),
                            started_at,
                        ));
                    }
                };
                stopped = Some(reason);
                response
            }
        };
        let response = response
            .map_err(|e| sdk_error(&format!("invoking `{name}` for task `{}`", request.task), e))?;
        let payload = response.payload().map(|b| b.as_ref()).unwrap_or_default();

        if let Some(kind) = response.function_error() {
            let error = FunctionError::parse(kind, payload, &masker);
            let failed = FailedRun {
                function: &name,
                env: &request.env,
                task: &request.task,
                bundle: &request.bundle,
            };
            return Err(self.function_failed(failed, error).await);
        }
        let outcome: InvokeResponse = serde_json::from_slice(payload).map_err(|e| {
            BackendError::with_source(
                format!("`{name}` answered with something that is not a lumo runner response"),
                e,
            )
            .hint("is the function running an older or foreign runner? deploy again to update it")
        })?;
        self.show_output(&outcome, &log_key, output).await;
        if let Some(problem) = &outcome.upload_error {
            tracing::warn!("run {run_id}: the runner could not upload an artifact: {problem}");
        }
        let message = match stopped {
            Some(reason) if outcome.status != RunStatus::Succeeded => RunReport::stop_message(
                reason,
                &format!(
                    "the task got SIGTERM in Lambda (then SIGKILL after {})",
                    humantime::format_duration(DEFAULT_KILL_GRACE)
                ),
            ),
            _ => outcome.message,
        };
        Ok(RunReport {
            status: outcome.status,
            exit_code: outcome.exit_code,
            message,
            data: outcome.data,
            data_ref: outcome.data_uploaded.then(|| self.s3.url(&data_key)),
            output_tail: outcome.output_tail,
            output_bytes: outcome.output_bytes,
            log_ref: outcome.log_uploaded.then(|| self.s3.url(&log_key)),
            started_at: Timestamp(outcome.started_at_ms),
            ended_at: Timestamp(outcome.ended_at_ms),
        })
    }
}

/// What the runner function answered instead of a response: Lambda's `X-Amz-Function-Error`
/// with the `{errorType, errorMessage}` the runner (`lumo.*` types) or Lambda itself
/// (`Runtime.ExitError`, `Sandbox.Timedout`, ...) reported.
#[derive(Debug, thiserror::Error)]
#[error("{error_type}: {message}")]
struct FunctionError {
    error_type: String,
    message: String,
}

/// The run a function error ended.
struct FailedRun<'a> {
    function: &'a str,
    env: &'a str,
    task: &'a str,
    /// The bundle's sha256.
    bundle: &'a str,
}

impl FunctionError {
    /// `kind` is the header's value (`Unhandled`), the fallback when the body names no type.
    fn parse(kind: &str, payload: &[u8], masker: &Masker) -> FunctionError {
        let body: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let text = |key: &str| {
            body.get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        FunctionError {
            error_type: text("errorType").unwrap_or_else(|| kind.to_string()),
            message: masker.mask_str(&text("errorMessage").unwrap_or_else(|| "no message".into())),
        }
    }
}

impl LambdaExecutor {
    /// The backend error for a function error.
    ///
    /// A function error is never the task's outcome: the runner answers everything the task does
    /// (fail, time out, a bundle refused for its sha256, as `local` records it) with a response.
    /// An error means the runner could not do its part (fetch the bundle, use its `/tmp`, read
    /// the payload) or the function itself died or ran out of time: infrastructure, exit 4, as
    /// `local` reports a bundle it cannot find. The error's type and message are the cause.
    async fn function_failed(&self, run: FailedRun<'_>, error: FunctionError) -> BackendError {
        let (name, task) = (run.function, run.task);
        let deploy = format!("`lumo deploy --env {}`", run.env);
        let logs = format!("the function's log in CloudWatch (`/aws/lambda/{name}`) says more");
        let (message, hint) = match error.error_type.as_str() {
            "lumo.BundleDownloadFailed" => {
                let key = self.s3.bundle_key(run.bundle);
                match self.s3.bundle_exists(&key).await {
                    Ok(false) => (
                        format!(
                            "the bundle {} of task `{task}` is missing from `{}`",
                            run.bundle,
                            self.s3.url(&key)
                        ),
                        format!("deploy again ({deploy}) to upload it"),
                    ),
                    _ => (
                        format!(
                            "the runner function `{name}` could not download the bundle of task `{task}`"
                        ),
                        format!(
                            "run it again; if it keeps failing, deploy again ({deploy}); {logs}"
                        ),
                    ),
                }
            }
            "lumo.RunnerStorageFailed" => (
                format!("the runner function `{name}` could not use its `/tmp` for task `{task}`"),
                format!("run it again; {logs}"),
            ),
            "lumo.InvalidPayload" => (
                format!(
                    "the runner function `{name}` did not understand lumo's request for task `{task}`"
                ),
                format!(
                    "its runner does not match this lumo: deploy again ({deploy}) to update it"
                ),
            ),
            "Sandbox.Timedout" => (
                format!(
                    "the runner function `{name}` ran out of time on task `{task}` before it could answer"
                ),
                format!(
                    "the runner ends every task before the function's deadline, so the time went to \
                     fetching the bundle or uploading the output; {logs}"
                ),
            ),
            kind if kind.starts_with("Runtime.") => (
                format!(
                    "the runner function `{name}` crashed or was stopped while running task `{task}`"
                ),
                format!(
                    "it may have run out of memory: raise `aws.memorySize` (or the task's \
                     `memorySize`) and deploy again; {logs}"
                ),
            ),
            _ => (
                format!("the runner function `{name}` failed on task `{task}`"),
                logs,
            ),
        };
        BackendError::with_source(message, error).hint(hint)
    }

    /// A synchronous Invoke cannot stream, so the output is shown once the run ends: in full
    /// from S3 when it is small enough, else its tail.
    async fn show_output(
        &self,
        outcome: &InvokeResponse,
        log_key: &str,
        output: &mut dyn OutputObserver,
    ) {
        if outcome.log_uploaded
            && outcome.output_bytes <= SHOW_FULL_OUTPUT_BYTES
            && let Ok(Some(bytes)) = self.s3.get(log_key).await
        {
            output.output(&bytes);
            return;
        }
        if outcome.output_bytes > outcome.output_tail.len() as u64 {
            let note = format!(
                "… {} earlier bytes; `lumo logs` has them all\n",
                outcome.output_bytes - outcome.output_tail.len() as u64
            );
            output.output(note.as_bytes());
        }
        output.output(outcome.output_tail.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the CLI gave up on an Invoke after the task's timeout + 120 s (and released
    /// the lock) while the runner could still be downloading the bundle, up to the function's
    /// 900 s deadline, and then start the task.
    #[test]
    fn the_invoke_wait_outlasts_the_function() {
        let function = Duration::from_secs(FUNCTION_TIMEOUT_SECS as u64);
        for task in [1, 10, 300, 900] {
            let wait = invoke_wait(Duration::from_secs(task));
            assert!(wait > function, "task timeout {task} s: waits {wait:?}");
        }
    }

    #[test]
    fn a_function_error_keeps_its_type_and_masks_its_message() {
        let masker = Masker::new(["hunter2".to_string()]);
        let error = FunctionError::parse(
            "Unhandled",
            br#"{"errorType":"lumo.BundleDownloadFailed","errorMessage":"could not download: hunter2"}"#,
            &masker,
        );
        assert_eq!(
            error.to_string(),
            "lumo.BundleDownloadFailed: could not download: ***"
        );
        let error = FunctionError::parse("Unhandled", b"not json", &masker);
        assert_eq!(error.to_string(), "Unhandled: no message");
    }
}
