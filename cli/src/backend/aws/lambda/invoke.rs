//! One task run on Lambda: the payload (presigned URLs for the bundle, the log, the data and
//! the cancel object), one `InvokeWithResponseStream` that the SDK never retries (its output
//! shown as it arrives, its outcome the stream's last frame: `stream.rs`), a stop passed on
//! through the cancel object, and the answer read back into a [`RunReport`].

use std::time::{Duration, SystemTime};

use aws_sdk_lambda::primitives::Blob;
use aws_smithy_types::timeout::TimeoutConfig;
use lumo_runner::executor::{DEFAULT_KILL_GRACE, OutputObserver};
use lumo_runner::invoke::stream::OutputCut;
use lumo_runner::invoke::{BundleLocation, InvokeRequest, InvokeResponse, UploadTarget};
use lumo_runner::mask::Masker;
use lumo_runner::{BundleHash, TaskSpec};

use super::function_error::FailedRun;
use super::provision::FUNCTION_TIMEOUT_SECS;
use super::stream::{RunnerAnswer, read_answer};
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
    /// `None` for a command run without a bundle.
    bundle: Option<String>,
    log: String,
    data: String,
    cancel: String,
}

/// How the Invoke of a run ended.
enum Invoked {
    /// The function answered (`stopped`: after the CLI asked it to stop the task).
    Answered {
        answer: RunnerAnswer,
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
            bundle: bundle.as_ref().map(|b| self.s3.bundle_key(b)),
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
        let invoked = self
            .send(&name, &payload, wait, &stop, &keys, output, &masker)
            .await?;
        let (answer, stopped) = match invoked {
            Invoked::Answered { answer, stopped } => (answer, stopped),
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
        let (answer, streamed_output, cut) = match answer {
            RunnerAnswer::Response {
                response,
                streamed_output,
                cut,
            } => (*response, streamed_output, cut),
            RunnerAnswer::Failed(error) => {
                let failed = FailedRun {
                    function: &name,
                    env: &env,
                    task: &task,
                    bundle: bundle.as_ref(),
                };
                return Err(self.function_failed(failed, error).await);
            }
        };
        if let Some(cut) = cut {
            output.output(cut_note(&cut, &answer, &run_id).as_bytes());
        } else if !streamed_output {
            // A runner from before streaming answers at the end, with the tail.
            self.show_output(&answer, &keys.log, output).await;
        }
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
        bundle: Option<BundleHash>,
        keys: &RunKeys,
        expires: Duration,
    ) -> BackendResult<InvokeRequest> {
        let location = match (bundle, &keys.bundle) {
            (Some(sha256), Some(key)) => Some(BundleLocation {
                url: self.s3.presign_get(key, expires).await?,
                key: key.clone(),
                sha256,
            }),
            _ => None,
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

    /// One `InvokeWithResponseStream` of `name` with `payload`, its output to `output` as it
    /// arrives, waiting up to `wait`. When `stop` is pulled meanwhile, the runner is asked to
    /// stop the task (it looks for the cancel object and stops the task as on a timeout, then
    /// answers as usual): an invocation cannot be called back.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        name: &str,
        payload: &InvokeRequest,
        wait: Duration,
        stop: &StopSignal,
        keys: &RunKeys,
        output: &mut dyn OutputObserver,
        masker: &Masker,
    ) -> BackendResult<Invoked> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| BackendError::with_source("cannot encode the runner payload", e))?;
        // The call lasts as long as the function may run: see `invoke_wait`.
        let timeouts = TimeoutConfig::builder()
            .read_timeout(wait)
            .operation_timeout(wait)
            .operation_attempt_timeout(wait)
            .build();
        let task = payload.spec.task();
        let invoke = async {
            let mut call = self
                .invoke
                .invoke_with_response_stream()
                .function_name(name)
                .payload(Blob::new(body))
                .customize()
                .config_override(
                    aws_sdk_lambda::config::Builder::default().timeout_config(timeouts),
                )
                .send()
                .await
                .map_err(|e| sdk_error(&format!("invoking `{name}` for task `{task}`"), e))?;
            read_answer(name, &mut call, output, masker).await
        };
        tokio::pin!(invoke);
        let (answer, stopped) = tokio::select! {
            answer = &mut invoke => (answer, None),
            reason = stop.stopped() => {
                let answered = match self.cancel(&keys.cancel, &reason).await {
                    Ok(()) => tokio::time::timeout(CANCEL_WAIT, &mut invoke)
                        .await
                        .map_err(|_| format!("did not stop within {}s", CANCEL_WAIT.as_secs())),
                    Err(e) => Err(format!("could not be asked to stop ({e})")),
                };
                match answered {
                    Ok(answer) => (answer, Some(reason)),
                    Err(why) => return Ok(Invoked::LeftRunning { reason, why }),
                }
            }
        };
        Ok(Invoked::Answered {
            answer: answer?,
            stopped,
        })
    }

    /// Asks the runner of a run to stop its task: writes the cancel object it looks for.
    async fn cancel(&self, cancel_key: &str, reason: &StopReason) -> BackendResult<()> {
        self.s3
            .put_bytes(cancel_key, reason.to_string().into_bytes(), "text/plain")
            .await
    }

    /// A runner from before streaming answers only once the run ends: its output is shown
    /// then, in full from S3 when it is small enough, else its tail.
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

/// What the user reads where the live output stops: how much came, and where the rest is.
fn cut_note(cut: &OutputCut, answer: &InvokeResponse, run_id: &str) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let total = answer.outcome.output_bytes;
    let place = if answer.log_uploaded {
        format!(
            "the full log ({:.1} MiB) is in S3: `lumo logs {run_id}`",
            mib(total)
        )
    } else {
        "the full log could not be uploaded (see the warning below)".to_string()
    };
    format!(
        "\n… live output stops here: Lambda streams at most {:.0} MiB of a response; {place}\n",
        mib(cut.limit)
    )
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
