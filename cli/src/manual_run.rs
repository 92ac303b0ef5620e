//! A task run by hand (PRODUCT.md §5, `lumo run`): from the environment's deployed bundle (or
//! the working copy's, `--from-source`),
//! under the environment's lock, recorded like any run, with the task's `permission` checked
//! first. `lumo run` parses the arguments and asks for confirmation; everything from here on is
//! this module's, so another verb that runs a task by hand (a retry, say) reuses it whole.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lumo_runner::contract::{RunStatus, Trigger};
use serde::Serialize;

use crate::access;
use crate::backend::Prepare;
use crate::backend::records::TaskRun;
use crate::bundle::BuiltBundle;
use crate::config::Provider;
use crate::error::CliError;
use crate::execute::{self, Session, TaskJob};
use crate::lock;
use crate::operation::Operation;
use crate::output::format_duration;
use crate::stop::StopReason;
use crate::task::Task;

/// A task to run by hand, with its checked arguments.
pub struct ManualRun<'a> {
    pub task: &'a Task,
    /// `--arg` values, checked against the task's `args`, defaults filled in.
    pub args: BTreeMap<String, String>,
    /// Secret values by environment variable name.
    pub secrets: BTreeMap<String, String>,
    /// The working tree's bundle of the task (`--from-source`), run instead of the deployed
    /// one; `None` runs the deployed bundle.
    pub working_copy: Option<BuiltBundle>,
}

/// How a manual run ended.
pub struct Ran {
    pub report: RunReport,
    /// Why it ended before the task did, if it did.
    pub stopped: Option<StopReason>,
}

impl Ran {
    pub fn succeeded(&self) -> bool {
        self.report.0.status == RunStatus::Succeeded
    }
}

/// Whether the operation's actor may run `task` by hand; a refusal is recorded.
pub async fn authorize(op: &Operation, task: &Task) -> Result<(), CliError> {
    access::require(
        op,
        task.config.permission,
        &access::running_task(&task.name),
    )
    .await
}

/// Runs `run` in the operation's environment, waiting up to `wait` for its lock.
pub async fn run(op: &Operation, run: ManualRun<'_>, wait: Duration) -> Result<Ran, CliError> {
    let what = format!("run {}", run.task.name);
    lock::with_writer_lock(op, what, wait, async move || run_locked(op, run).await).await
}

/// The manual run proper, with the environment's writer lock held.
async fn run_locked(op: &Operation, run: ManualRun<'_>) -> Result<Ran, CliError> {
    let env = &op.env;
    let task = run.task;
    let state = op.backend.audit.env_state(env).await?;
    let Some(version) = state.version else {
        if run.working_copy.is_some() {
            return Err(CliError::invalid(from_source_needs_a_deploy(
                env,
                op.project.config.provider,
            ))
            .hint(format!(
                "deploy it first: `lumo deploy --env {env}`; then `--from-source` runs the \
                 working copy of any task, deployed or not"
            )));
        }
        return Err(CliError::invalid(format!(
            "task `{}` has no deployed bundle in environment `{env}`",
            task.name
        ))
        .hint(format!("deploy it first: `lumo deploy --env {env}`")));
    };
    let bundle = match &run.working_copy {
        // Checked startable when it was built; stored like a deploy's, content-addressed.
        Some(built) => {
            op.backend.bundles.put(built).await?;
            built.sha256.clone()
        }
        None => {
            let Some(bundle) = state.bundles.get(&task.name).cloned() else {
                return Err(CliError::invalid(format!(
                    "task `{}` has no deployed bundle in environment `{env}`",
                    task.name
                ))
                .hint(format!(
                    "deploy it (`lumo deploy --env {env}`), or run the working copy with \
                     `--from-source`"
                )));
            };
            crate::preflight::check_stored(
                op.project.config.provider,
                &op.project.lumo_dir(),
                &task.name,
                &bundle,
            )?;
            bundle
        }
    };
    op.backend.executor.prepare(env, Prepare::Run).await?;
    let session = Session::of_manual_run(op, Some(version), state.previous_version, run.secrets);
    let job = TaskJob {
        task: task.clone(),
        bundle,
        trigger: Trigger::Manual,
        args: run.args,
        from_source: run.working_copy.is_some(),
    };
    let record = execute::run_task(&session, &job).await?;
    // An abandoned run is one another writer took the environment from.
    let stopped = op
        .stop
        .reason()
        .or_else(|| (record.status == RunStatus::Abandoned).then_some(StopReason::LockLost));
    Ok(Ran {
        report: RunReport(record),
        stopped,
    })
}

/// Why a `--from-source` run refuses an environment that was never deployed. It needs no
/// deployed bundle (it brings its own), but its context carries the environment's deployed
/// version, and on `aws` it runs on the runner function only a deploy creates.
pub fn from_source_needs_a_deploy(env: &str, provider: Provider) -> String {
    let runner = match provider {
        Provider::Aws => " and runs on the runner function a deploy creates",
        Provider::Local => "",
    };
    format!(
        "`--from-source` needs environment `{env}` deployed once: the run takes its version \
         (`ctx.deployment.version`) from the last deploy{runner}, and `{env}` has none yet"
    )
}

/// What `lumo run` prints: the run's record, as a [`RunDocument`](crate::report::outcome::RunDocument).
#[derive(Serialize)]
#[serde(transparent)]
pub struct RunReport(
    #[serde(serialize_with = "crate::report::outcome::serialize_run")] pub TaskRun,
);

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "Run {} of {} in {}: {} in {}",
            r.id,
            r.title(),
            r.env,
            r.status,
            format_duration(r.duration_ms.unwrap_or(0))
        )?;
        if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
            writeln!(f, "  message: {m}")?;
        }
        if let Some(code) = r.exit_code {
            writeln!(f, "  exit code: {code}")?;
        }
        if r.from_source {
            writeln!(
                f,
                "  bundle: {} (the working copy, not deployed)",
                r.bundle_hash
                    .as_ref()
                    .map_or("", |hash| &hash.as_str()[..12])
            )?;
        }
        if let Some(data) = &r.data {
            writeln!(f, "  data: {data}")?;
        }
        if matches!(
            r.status,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Abandoned
        ) {
            writeln!(f, "  full output: `lumo logs {}`", r.id)?;
        }
        Ok(())
    }
}
