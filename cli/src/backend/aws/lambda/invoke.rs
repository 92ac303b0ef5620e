//! One task run on Lambda: the payload (presigned URLs for the bundle, the log, the data and
//! the cancel object), one synchronous Invoke that the SDK never retries, a stop passed on
//! through the cancel object, and the response read back into a [`RunReport`].

use std::time::{Duration, SystemTime};

use aws_sdk_lambda::operation::invoke::InvokeOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::timeout::TimeoutConfig;
use lumo_runner::executor::{DEFAULT_KILL_GRACE, OutputObserver};
use lumo_runner::invoke::{
    BundleLocation, INVOKE_VERSION, InvokeRequest, InvokeResponse, UploadTarget,
};
use lumo_runner::mask::Masker;
use lumo_runner::{BundleHash, TaskSpec};

use super::function_error::{FailedRun, FunctionError};
use super::provision::FUNCTION_TIMEOUT_SECS;
use super::{LambdaExecutor, function_name};
use crate::backend::aws::errors::sdk_error;
use crate::backend::{BackendError, BackendResult, RunReport, RunRequest};
use crate::stop::{StopReason, StopSignal};

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

/// The S3 keys of one run's objects.
struct RunKeys {
    bundle: String,
    log: String,
    data: String,
    cancel: String,
}

/// How the Invoke of a run ended.
enum Invoked {
    /// The function answered (`stopped`: after the CLI asked it to stop the task).
    Answered {
        response: InvokeOutput,
        stopped: Option<StopReason>,
    },
    /// The run was stopped and the invocation did not answer in time (`why`); it was left to
    /// finish on its own.
    LeftRunning { reason: StopReason, why: String },
}

impl LambdaExecutor {
    /// Runs one task on the environment's runner function
    /// ([`TaskExecutor::run`](crate::backend::TaskExecutor::run)).
    pub(super) async fn invoke_task(
        &self,
        request: RunRequest,
        output: &mut dyn OutputObserver,
    ) -> BackendResult<RunReport> {
        let RunRequest { bundle, spec, stop } = request;
        let name = function_name(&self.target.project, spec.environment());
        let (task, env, timeout) = (
            spec.task().to_owned(),
            spec.environment().to_owned(),
            spec.timeout,
        );
        let run_id = spec.run_id().to_owned();
        let keys = RunKeys {
            bundle: self.s3.bundle_key(bundle.as_str()),
            log: self.s3.log_key(&run_id),
            data: self.s3.data_key(&run_id),
            cancel: self.s3.cancel_key(&run_id),
        };
        let masker = Masker::new(spec.secrets.values().cloned());
        // The runner uploads the log when the run ends, which may be as late as the function's
        // deadline: the URLs must outlive the whole wait.
        let wait = invoke_wait(timeout);
        let payload = self
            .payload(spec, bundle.clone(), &keys, wait + PRESIGN_SLACK)
            .await?;
        let started_at = SystemTime::now();
        let (response, stopped) = match self.send(&name, &payload, wait, &stop, &keys).await? {
            Invoked::Answered { response, stopped } => (response, stopped),
            Invoked::LeftRunning { reason, why } => {
                return Ok(RunReport::stopped(
                    reason,
                    &format!(
                        "its Lambda invocation {why} and was left to finish on its own (the task's timeout, {}, still applies there)",
                        humantime::format_duration(timeout)
                    ),
                    started_at,
                ));
            }
        };
        let body = response.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = response.function_error() {
            let error = FunctionError::parse(kind, body, &masker);
            let failed = FailedRun {
                function: &name,
                env: &env,
                task: &task,
                bundle: bundle.as_str(),
            };
            return Err(self.function_failed(failed, error).await);
        }
        let answer = read_response(&name, body)?;
        self.show_output(&answer, &keys.log, output).await;
        if let Some(problem) = &answer.upload_error {
            tracing::warn!("run {run_id}: the runner could not upload an artifact: {problem}");
        }
        let report = RunReport {
            data_ref: answer.data_uploaded.then(|| self.s3.url(&keys.data)),
            log_ref: answer.log_uploaded.then(|| self.s3.url(&keys.log)),
            outcome: answer.outcome,
        }
        .after_stop(
            stopped,
            &format!(
                "the task got SIGTERM in Lambda (then SIGKILL after {})",
                humantime::format_duration(DEFAULT_KILL_GRACE)
            ),
        );
        // As on `local`: the outcome stands, and the record names what could not be kept.
        Ok(match &answer.upload_error {
            Some(problem) => report.with_storage_failure(&format!("not all was stored: {problem}")),
            None => report,
        })
    }

    /// The Invoke payload for `spec`: presigned URLs, valid for `expires`, to fetch the bundle,
    /// upload the log and the data, and look for the cancel object.
    async fn payload(
        &self,
        spec: TaskSpec,
        bundle: BundleHash,
        keys: &RunKeys,
        expires: Duration,
    ) -> BackendResult<InvokeRequest> {
        let location = BundleLocation {
            url: self.s3.presign_get(&keys.bundle, expires).await?,
            key: keys.bundle.clone(),
            sha256: bundle,
        };
        Ok(InvokeRequest {
            log_upload: Some(UploadTarget {
                url: self.s3.presign_put(&keys.log, expires).await?,
                key: keys.log.clone(),
            }),
            data_upload: Some(UploadTarget {
                url: self.s3.presign_put(&keys.data, expires).await?,
                key: keys.data.clone(),
            }),
            cancel_url: Some(self.s3.presign_get(&keys.cancel, expires).await?),
            ..InvokeRequest::new(spec, location)
        })
    }

    /// One synchronous Invoke of `name` with `payload`, waiting up to `wait`. When `stop` is
    /// pulled meanwhile, the runner is asked to stop the task (it looks for the cancel object
    /// and stops the task as on a timeout, then answers as usual): a synchronous Invoke cannot
    /// be called back.
    async fn send(
        &self,
        name: &str,
        payload: &InvokeRequest,
        wait: Duration,
        stop: &StopSignal,
        keys: &RunKeys,
    ) -> BackendResult<Invoked> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| BackendError::with_source("cannot encode the runner payload", e))?;
        // The call lasts as long as the function may run: see `invoke_wait`.
        let timeouts = TimeoutConfig::builder()
            .read_timeout(wait)
            .operation_timeout(wait)
            .operation_attempt_timeout(wait)
            .build();
        let invoke = self
            .invoke
            .invoke()
            .function_name(name)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(body))
            .customize()
            .config_override(aws_sdk_lambda::config::Builder::default().timeout_config(timeouts))
            .send();
        tokio::pin!(invoke);
        let (response, stopped) = tokio::select! {
            response = &mut invoke => (response, None),
            reason = stop.stopped() => {
                let answered = match self.cancel(&keys.cancel, &reason).await {
                    Ok(()) => tokio::time::timeout(CANCEL_WAIT, &mut invoke)
                        .await
                        .map_err(|_| format!("did not stop within {}s", CANCEL_WAIT.as_secs())),
                    Err(e) => Err(format!("could not be asked to stop ({e})")),
                };
                match answered {
                    Ok(response) => (response, Some(reason)),
                    Err(why) => return Ok(Invoked::LeftRunning { reason, why }),
                }
            }
        };
        let response = response.map_err(|e| {
            sdk_error(
                &format!("invoking `{name}` for task `{}`", payload.spec.task()),
                e,
            )
        })?;
        Ok(Invoked::Answered { response, stopped })
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
        answer: &InvokeResponse,
        log_key: &str,
        output: &mut dyn OutputObserver,
    ) {
        let outcome = &answer.outcome;
        if answer.log_uploaded
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

/// The runner's response, of a version this lumo reads (one without `v` is version 1).
fn read_response(name: &str, body: &[u8]) -> BackendResult<InvokeResponse> {
    let response: InvokeResponse = serde_json::from_slice(body).map_err(|e| {
        BackendError::with_source(
            format!("`{name}` answered with something that is not a lumo runner response"),
            e,
        )
        .hint("is the function running an older or foreign runner? deploy again to update it")
    })?;
    if response.v > INVOKE_VERSION {
        return Err(BackendError::new(format!(
            "`{name}` answered in version {} of lumo's runner response, and this lumo reads versions up to {INVOKE_VERSION}",
            response.v
        ))
        .hint("its runner is newer than this lumo: upgrade lumo, or deploy with this one"));
    }
    Ok(response)
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
