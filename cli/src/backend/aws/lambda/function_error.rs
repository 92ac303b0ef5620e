//! What the runner function answered instead of a response (a function error), and the
//! [`BackendError`] a user reads for it: which part failed, and what to do about it.

use lumo_runner::BundleHash;
use lumo_runner::mask::Masker;

use super::LambdaExecutor;
use crate::backend::BackendError;

/// What the runner function answered instead of a response: Lambda's `X-Amz-Function-Error`
/// with the `{errorType, errorMessage}` the runner (`lumo.*` types) or Lambda itself
/// (`Runtime.ExitError`, `Sandbox.Timedout`, ...) reported.
#[derive(Debug, thiserror::Error)]
#[error("{error_type}: {message}")]
pub(super) struct FunctionError {
    error_type: String,
    message: String,
}

/// The run a function error ended.
pub(super) struct FailedRun<'a> {
    pub function: &'a str,
    pub env: &'a str,
    pub task: &'a str,
    /// The bundle's sha256; `None` for a command run without one.
    pub bundle: Option<&'a BundleHash>,
}

impl FunctionError {
    /// An error of `error_type` (the runner's `lumo.*` or Lambda's own) with `message`, masked.
    pub(super) fn new(error_type: &str, message: &str, masker: &Masker) -> FunctionError {
        FunctionError {
            error_type: error_type.to_string(),
            message: masker.mask_str(if message.is_empty() {
                "no message"
            } else {
                message
            }),
        }
    }

    /// From a streamed invocation's `InvokeComplete`: `ErrorCode` is the type, `ErrorDetails`
    /// the message — or the `{errorType, errorMessage}` document itself, which is read then.
    pub(super) fn from_details(code: &str, details: &str, masker: &Masker) -> FunctionError {
        if details.trim_start().starts_with('{') {
            return FunctionError::parse(code, details.as_bytes(), masker);
        }
        FunctionError::new(code, details, masker)
    }

    /// `kind` is the header's value (`Unhandled`), the fallback when the body names no type.
    pub(super) fn parse(kind: &str, payload: &[u8], masker: &Masker) -> FunctionError {
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
    pub(super) async fn function_failed(
        &self,
        run: FailedRun<'_>,
        error: FunctionError,
    ) -> BackendError {
        let (name, task) = (run.function, run.task);
        let deploy = format!("`lumo deploy --env {}`", run.env);
        let logs = format!("the function's log in CloudWatch (`/aws/lambda/{name}`) says more");
        let (message, hint) = match error.error_type.as_str() {
            "lumo.BundleDownloadFailed" => {
                let key = run
                    .bundle
                    .map(|bundle| (bundle, self.s3.bundle_key(bundle)));
                let exists = match &key {
                    Some((_, key)) => self.s3.bundle_exists(key).await,
                    None => Ok(true),
                };
                match (exists, key) {
                    (Ok(false), Some((bundle, key))) => (
                        format!(
                            "the bundle {bundle} of task `{task}` is missing from `{}`",
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let error = FunctionError::from_details(
            "Runtime.ExitError",
            "RequestId: 1 Error: Runtime exited with error: signal: killed (hunter2)",
            &masker,
        );
        assert_eq!(
            error.to_string(),
            "Runtime.ExitError: RequestId: 1 Error: Runtime exited with error: signal: killed (***)"
        );
        let error = FunctionError::from_details(
            "Unhandled",
            r#"{"errorType":"lumo.RunnerStorageFailed","errorMessage":"full"}"#,
            &masker,
        );
        assert_eq!(error.to_string(), "lumo.RunnerStorageFailed: full");
    }
}
