//! Why the runner could not do its part of an invocation, and how that reaches the CLI: a
//! function error whose `errorType` (`lumo.*`) says which part failed.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

use lambda_runtime::Diagnostic;

use super::RUNNER_VERSION;
use super::cache::CacheError;
use crate::run::RunnerError;

/// Why the runner could not do its part of an invocation. Reported as a function error; a task
/// that fails is an [`InvokeResponse`], not one of these.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(
        "the payload is not a valid lumo `InvokeRequest` (lumo-runner {RUNNER_VERSION}): {reason}"
    )]
    Payload { reason: String },
    #[error(transparent)]
    Bundle(#[from] CacheError),
    #[error("could not prepare `{}` for the run's output", path.display())]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run task `{task}`")]
    Run {
        task: String,
        #[source]
        source: RunnerError,
    },
    #[error("the runner's {what} stopped unexpectedly: {reason}")]
    Internal { what: &'static str, reason: String },
}

impl InvokeError {
    /// The `errorType` the function error is reported with.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvokeError::Payload { .. } => "lumo.InvalidPayload",
            InvokeError::Bundle(CacheError::Download { .. }) => "lumo.BundleDownloadFailed",
            InvokeError::Bundle(CacheError::Store { .. }) | InvokeError::LogFile { .. } => {
                "lumo.RunnerStorageFailed"
            }
            InvokeError::Run { .. } => "lumo.RunFailed",
            InvokeError::Internal { .. } => "lumo.RunnerFailed",
        }
    }
}

/// The function error's message is the whole chain: the CLI shows it as it is.
impl From<InvokeError> for Diagnostic {
    fn from(error: InvokeError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error_chain(&error),
        }
    }
}

/// `error` and its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
