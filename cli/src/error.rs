//! Errors at the CLI boundary: every failure carries the exit code of PRODUCT.md §7 and an
//! optional hint, and is printed as `error: …` / `Caused by: …` / `hint: …`.

use std::error::Error as StdError;
use std::fmt;

use serde::Serialize;

use crate::backend::{BackendError, BackendErrorKind};
use crate::bundle::BundleError;
use crate::config::{ConfigError, ConfigProblem};
use crate::project::ProjectError;

/// The exit codes of errors. (Exit code 1, a task that failed or timed out, is not an error:
/// the command prints its report and returns 1.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// 2: invalid config or arguments.
    Invalid,
    /// 2: a confirmation was declined (a deliberate "no", told apart from a typo in `--json`).
    Declined,
    /// 3: the environment is locked.
    Locked,
    /// 4: backend or infrastructure error.
    Backend,
    /// 130: stopped by SIGINT (Ctrl-C).
    Interrupted,
    /// 143: stopped by SIGTERM (a cancelled CI job).
    Terminated,
    /// 129: stopped by SIGHUP (the terminal closed).
    HungUp,
}

impl ExitKind {
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Invalid | ExitKind::Declined => 2,
            ExitKind::Locked => 3,
            ExitKind::Backend => 4,
            ExitKind::Interrupted => 130,
            ExitKind::Terminated => 143,
            ExitKind::HungUp => 129,
        }
    }
}

#[derive(Debug)]
pub struct CliError {
    pub kind: ExitKind,
    pub error: Box<dyn StdError + Send + Sync>,
    pub hint: Option<String>,
    /// An invalid config's problems one by one (they are in the message too), for `--json`.
    pub problems: Vec<ConfigProblem>,
}

impl CliError {
    pub fn new(kind: ExitKind, error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        CliError {
            kind,
            error: error.into(),
            hint: None,
            problems: Vec::new(),
        }
    }

    /// An invalid argument or config: exit code 2.
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::new(ExitKind::Invalid, message.into())
    }

    /// A command cut short by a [`StopReason`](crate::stop::StopReason).
    pub fn stopped(reason: crate::stop::StopReason) -> Self {
        use crate::stop::{Interrupt, StopReason};
        match reason {
            StopReason::Interrupted(signal) => CliError::new(
                match signal {
                    Interrupt::Sigint => ExitKind::Interrupted,
                    Interrupt::Sigterm => ExitKind::Terminated,
                    Interrupt::Sighup => ExitKind::HungUp,
                },
                format!("interrupted by {signal}"),
            ),
            StopReason::LockLost => CliError::new(
                ExitKind::Locked,
                "the environment's lock was taken over by another writer; stopped",
            ),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The top message and each cause below it.
    pub fn chain(&self) -> (String, Vec<String>) {
        let mut causes = Vec::new();
        let mut source = self.error.source();
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        (self.error.to_string(), causes)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl From<crate::preflight::PreflightError> for CliError {
    fn from(e: crate::preflight::PreflightError) -> Self {
        let message = format!("{e}:\n{}", e.listing());
        CliError {
            problems: e.problems,
            ..CliError::invalid(message).hint("fix each task above and run the command again")
        }
    }
}

impl From<ProjectError> for CliError {
    fn from(e: ProjectError) -> Self {
        // A path from `LUMO_CONFIG` is named as such: "pass `--config PATH`" would not say
        // where the path the user never typed came from.
        let unusable_path = matches!(
            &e,
            ProjectError::Config(ConfigError::NotFound { .. } | ConfigError::Read { .. })
        );
        let variable = "LUMO_CONFIG";
        let hint = if unusable_path && crate::flag_source::value_from_variable("config", variable) {
            Some(format!(
                "the path comes from the environment variable `{variable}`: point it at the \
                 config file, or unset it (`unset {variable}`) to use `{}` here or in a parent \
                 directory",
                crate::config::CONFIG_FILE_NAME
            ))
        } else {
            match &e {
                ProjectError::Config(ConfigError::NotFound { .. }) => {
                    Some("run `lumo init` to create one, or pass `--config PATH`".to_string())
                }
                ProjectError::NoEnvironment { .. } => {
                    Some("pass `--env NAME` or set `environment` in the config".to_string())
                }
                _ => None,
            }
        };
        let problems = match &e {
            ProjectError::Invalid { problems, .. }
            | ProjectError::Config(ConfigError::Invalid { problems, .. }) => problems.clone(),
            _ => Vec::new(),
        };
        CliError {
            kind: ExitKind::Invalid,
            error: Box::new(e),
            hint,
            problems,
        }
    }
}

impl CliError {
    /// A bundling failure of the project whose config is `config`: problems name the config
    /// file like every other config error (PRODUCT.md §3); a store failure is a backend error.
    pub fn bundle(e: BundleError, config: &std::path::Path) -> Self {
        match e {
            BundleError::Invalid(problems) => CliError {
                problems: problems.clone(),
                ..CliError::invalid(format!(
                    "cannot bundle the tasks of `{}`:\n{}",
                    config.display(),
                    crate::project::list(&problems)
                ))
            },
            store @ BundleError::Store { .. } => CliError::new(ExitKind::Backend, store),
            BundleError::Stopped(reason) => CliError::stopped(reason),
        }
    }
}

/// Exit code 4, except for settings that cannot open the backend: those are an invalid config
/// (2), with their problems for `--json` like any other.
impl From<BackendError> for CliError {
    fn from(mut e: BackendError) -> Self {
        let hint = e.hint.take();
        let problems = std::mem::take(&mut e.problems);
        CliError {
            kind: match e.kind {
                BackendErrorKind::Invalid => ExitKind::Invalid,
                _ => ExitKind::Backend,
            },
            error: Box::new(e),
            hint,
            problems,
        }
    }
}

/// The JSON form of an error, printed on stdout with `--json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDocument {
    pub error: ErrorBody,
    /// What the command had done when it was stopped (a deploy's report up to the stop):
    /// `--json` prints one document, so the error carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub kind: ExitKind,
    pub exit_code: i32,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    /// With an invalid config: each problem as `{ "key": "tasks.a.timeout", "message": … }`;
    /// otherwise empty.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ErrorDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error.message)
    }
}
