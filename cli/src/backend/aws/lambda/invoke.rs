//! One task run on Lambda: the payload (presigned URLs for the bundle, the log, the data and
//! the cancel object), one synchronous Invoke that the SDK never retries, a stop passed on
//! through the cancel object, and the response read back into a [`RunReport`].

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::timeout::TimeoutConfig;
use lumo_runner::contract::{
    BundleLocation, InvokeRequest, InvokeResponse, RunStatus, UploadTarget,
};
use lumo_runner::executor::{DEFAULT_KILL_GRACE, OutputObserver};
use lumo_runner::mask::Masker;

use super::function_error::{FailedRun, FunctionError};
use super::provision::FUNCTION_TIMEOUT_SECS;
use super::{LambdaExecutor, function_name};
use crate::backend::aws::errors::sdk_error;
use crate::backend::records::Timestamp;
use crate::backend::{BackendError, BackendResult, RunReport, RunRequest};
use crate::stop::StopReason;

/// How long the CLI waits for an Invoke beyond the function's timeout: Lambda's own overhead
/// (a cold start is not part of the function's timeout) and the response's way back.
const INVOKE_SLACK: Duration = Duration::from_secs(60);
/// How long a presigned URL outlives the task's timeout (or the function's, when longer).
const PRESIGN_SLACK: Duration = Duration::from_secs(15 * 60);
/// Output up to this size is fetched from S3 after the run and shown in full; beyond it, the tail.
const SHOW_FULL_OUTPUT_BYTES: u64 = 1 << 20;
/// How long a stopped run waits for the runner to stop the task and answer: its look for the
/// cancel object (every second), the task's kill grace (3 s), the log upload, with room.
const CANCEL_WAIT: Duration = Duration::from_secs(20);

impl LambdaExecutor {
    /// Runs one task on the environment's runner function ([`TaskExecutor::run`](crate::backend::TaskExecutor::run)).
    pub(super) async fn invoke_task(
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

    /// Asks the runner of a run to stop its task: writes the cancel object it looks for.
    async fn cancel(&self, cancel_key: &str, reason: &StopReason) -> BackendResult<()> {
        self.s3
            .put_bytes(cancel_key, reason.to_string().into_bytes(), "text/plain")
            .await
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
}
