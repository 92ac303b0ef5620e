//! An ad-hoc command in an environment (PRODUCT.md §7, `lumo exec`), Spacelift's "run your
//! custom command" for lumo: the one-off `psql`, `./bin/migrate status` or data fix that would
//! otherwise need a task file deployed and removed again. It runs the way the environment's
//! tasks run — its runner (a local process, or its Lambda function), its secrets as variables
//! and masked, under its writer lock, with the same stop and timeout rules — and is recorded
//! like any run, as kind `exec` with its (masked) command line. It needs the environment's
//! `exec` role. `lumo exec` parses and confirms; from the role check on, it is this module's.

use std::collections::BTreeMap;
use std::time::Duration;

use lumo_runner::BundleHash;

use crate::access;
use crate::backend::Prepare;
use crate::backend::records::{EnvState, command_line};
use crate::error::CliError;
use crate::execute::{self, CommandJob, Session};
use crate::lock;
use crate::manual_run::{Ran, RunReport};
use crate::operation::Operation;
use crate::stop::StopReason;
use crate::task::Task;

/// How long a command may run unless `--timeout` says otherwise: a task's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest `--timeout`: a task's longest, Lambda's limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(900);

/// A command to run in an environment.
pub struct ExecRun<'a> {
    /// The program and its arguments; never empty.
    pub argv: Vec<String>,
    /// The task whose deployed bundle the command runs in (`--in`); `None`: an empty directory.
    pub in_task: Option<&'a Task>,
    pub timeout: Duration,
    /// Secret values by environment variable name.
    pub secrets: BTreeMap<String, String>,
}

impl ExecRun<'_> {
    /// The command line as it is shown and recorded: shell-quoted, every secret masked.
    pub fn shown(&self) -> String {
        command_line(&crate::backend::records::masked_argv(
            &self.argv,
            self.secrets.values(),
        ))
    }
}

/// `--timeout`, checked: from 1 s to 15 min, as a task's `timeout`.
pub fn check_timeout(timeout: Option<Duration>) -> Result<Duration, CliError> {
    let Some(timeout) = timeout else {
        return Ok(DEFAULT_TIMEOUT);
    };
    if timeout < Duration::from_secs(1) || timeout > MAX_TIMEOUT {
        return Err(CliError::invalid(format!(
            "`--timeout {}`: must be from 1s to 15m (900 s, as a task's `timeout`)",
            humantime::format_duration(timeout)
        )));
    }
    Ok(timeout)
}

/// Whether the operation's actor holds the environment's `exec` role; a refusal is recorded.
pub async fn authorize(op: &Operation) -> Result<(), CliError> {
    let needed = access::exec_role(&op.project.config, &op.env);
    access::require(op, needed, access::EXEC).await
}

/// The deployed bundle of `task` in the environment whose state is `state`; exit 2 naming the
/// task and the deployed ones when it has none.
pub fn deployed_bundle(
    op: &Operation,
    state: &EnvState,
    task: &Task,
) -> Result<BundleHash, CliError> {
    if let Some(bundle) = state.bundles.get(&task.name) {
        return Ok(bundle.clone());
    }
    let env = &op.env;
    let deployed = if state.bundles.is_empty() {
        format!("nothing is deployed in `{env}` yet")
    } else {
        format!(
            "the deployed tasks are {}",
            crate::quoted::list(state.bundles.keys())
        )
    };
    Err(CliError::invalid(format!(
        "`--in {}`: task `{}` has no deployed bundle in environment `{env}`; {deployed}",
        task.name, task.name
    ))
    .hint(format!(
        "deploy it first (`lumo deploy --env {env}`), or leave out `--in` to run in an empty directory"
    )))
}

/// Runs `exec` in the operation's environment, waiting up to `wait` for its lock.
pub async fn run(op: &Operation, exec: ExecRun<'_>, wait: Duration) -> Result<Ran, CliError> {
    let what = format!("exec {}", exec.shown());
    lock::with_writer_lock(op, what, wait, async move || run_locked(op, exec).await).await
}

/// The command run proper, with the environment's writer lock held.
async fn run_locked(op: &Operation, exec: ExecRun<'_>) -> Result<Ran, CliError> {
    let state = op.backend.audit.env_state(&op.env).await?;
    // Checked before the lock too; a deploy may have changed what is deployed since.
    let bundle = match exec.in_task {
        Some(task) => Some(deployed_bundle(op, &state, task)?),
        None => None,
    };
    op.backend.executor.prepare(&op.env, Prepare::Run).await?;
    let session = Session::of_manual_run(op, state.version, state.previous_version, exec.secrets);
    let job = CommandJob {
        argv: exec.argv,
        in_task: exec.in_task.cloned(),
        bundle,
        timeout: exec.timeout,
    };
    let record = execute::run_command(&session, &job).await?;
    let stopped = op.stop.reason().or_else(|| {
        (record.status == lumo_runner::contract::RunStatus::Abandoned)
            .then_some(StopReason::LockLost)
    });
    Ok(Ran {
        report: RunReport(record),
        stopped,
    })
}
