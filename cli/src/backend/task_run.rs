//! What the CLI asks a [`TaskExecutor`](super::TaskExecutor) for and what it gets back: the
//! runner crate's shared [`TaskSpec`] and [`RunOutcome`], with only what the CLI adds around
//! them — the bundle's hash and the stop signal going in, where the data and the log were
//! stored coming out — and the one place the outcome is written into the run's record.

use std::time::SystemTime;

use lumo_runner::contract::RunStatus;
use lumo_runner::{BundleHash, RunOutcome, TaskSpec};

use super::records::{TaskRun, Timestamp};
use crate::stop::{StopReason, StopSignal};

/// Everything the executor needs to run one task.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The bundle to run, already in the [`BundleStore`](super::BundleStore); `None` only for
    /// a command run (`spec.argv`, `lumo exec` without `--in`), in an empty directory.
    pub bundle: Option<BundleHash>,
    /// The task, its context, env, secrets and timeout: the same on every provider.
    pub spec: TaskSpec,
    /// Pulled when the run must end early (an interrupt, a lost lock).
    pub stop: StopSignal,
}

/// How a run ended, as the executor saw it: the task's outcome, and where the provider stored
/// what was too large to keep in the record.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: RunOutcome,
    /// Where `data` was stored instead, when it was too large to return.
    pub data_ref: Option<String>,
    /// Where the full output was stored.
    pub log_ref: Option<String>,
}

impl RunReport {
    /// A run ended early by a [`StopSignal`]: `failed`, saying why and what became of the
    /// task (`fate`).
    pub fn stopped(reason: StopReason, fate: &str, started_at: SystemTime) -> RunReport {
        RunReport::not_started(RunReport::stop_message(reason, fate), started_at)
    }

    /// The message of a run stopped for `reason`, saying what became of its task.
    pub fn stop_message(reason: StopReason, fate: &str) -> String {
        format!("stopped: {reason}; {fate}")
    }

    /// A run that failed before its task could start (a refused bundle, a runner that could
    /// not fetch it): no exit code, no output.
    pub fn not_started(message: String, started_at: SystemTime) -> RunReport {
        RunReport {
            outcome: RunOutcome::not_started(message, started_at),
            data_ref: None,
            log_ref: None,
        }
    }

    /// When the run was stopped (`reason`) and did not succeed first, its message says so and
    /// what became of its task (`fate`) instead of what the stopped task last said.
    pub fn after_stop(mut self, reason: Option<StopReason>, fate: &str) -> RunReport {
        if let Some(reason) = reason
            && self.outcome.status != RunStatus::Succeeded
        {
            self.outcome.message = RunReport::stop_message(reason, fate);
        }
        self
    }

    /// A run whose outcome stands but whose output or data could not all be kept (a full
    /// disk, a failed upload): the message says so after the task's own word, so the record
    /// keeps both the truth of the run and why its log is missing. Both providers use it.
    pub fn with_storage_failure(mut self, failure: &str) -> RunReport {
        self.outcome.message = if self.outcome.message.is_empty() {
            format!("({failure})")
        } else {
            format!("{} ({failure})", self.outcome.message)
        };
        self
    }

    /// Writes the outcome into the run's record, as `finish_run` stores it. The end is never
    /// before the record's start (the clocks of the CLI and a runner may disagree).
    pub fn record_on(self, run: &mut TaskRun) {
        let RunReport {
            outcome,
            data_ref,
            log_ref,
        } = self;
        run.status = outcome.status;
        run.exit_code = outcome.exit_code;
        run.message = Some(outcome.message);
        run.data = outcome.data;
        run.data_ref = data_ref;
        run.log_ref = log_ref;
        run.output_tail = Some(outcome.output_tail);
        run.output_bytes = outcome.output_bytes;
        run.ended_at = Some(Timestamp::from(outcome.ended_at).max(run.started_at));
    }
}
