//! One shape for a task's outcome, wherever lumo reports one: each task of `deploy --json`, the
//! document of `run --json`, each run of `history --json` and `status --json`, and the CI
//! reports (step summary, annotations, JUnit). A script or a CI step that reads the exit code,
//! the output's tail or the log's location of one run reads it the same way from all of them.

use std::collections::BTreeMap;

use lumo_runner::contract::{RunStatus, Trigger};
use lumo_runner::{BundleHash, RunId, Version};
use serde::Serialize;
use serde_json::Value;

use crate::backend::records::{RunKind, TaskRun, Timestamp, empty_is_none};

/// How one task's run went, or (in a deployment's report) why it did not run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOutcome {
    pub task: String,
    /// A run status (`succeeded`, `failed`, `timed_out`, `skipped`, `abandoned`, `running`);
    /// in a deployment's report also `would_run` (dry run) or `not_run`.
    pub status: String,
    /// The run's record (`lumo logs RUN_ID`); `None` when the task did not run.
    pub run_id: Option<String>,
    /// 1 for the first attempt; retries count up.
    pub attempt: Option<u32>,
    pub trigger: Option<Trigger>,
    pub actor: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    /// The task's exit code; `None` when it was killed by a signal or never started.
    pub exit_code: Option<i32>,
    /// The task's own word on how it went: its result file's message, else its error line,
    /// else its last output line.
    pub message: Option<String>,
    /// The end of the output (masked), for a look without fetching the log.
    pub output_tail: Option<String>,
    /// Where the full output is stored.
    pub log_ref: Option<String>,
    /// The task's `data`, `null` when it returned none (always present, as in the record).
    pub data: Option<Value>,
}

impl TaskOutcome {
    /// The outcome of a recorded run.
    pub fn of_run(run: &TaskRun) -> TaskOutcome {
        TaskOutcome {
            task: run.task.clone(),
            status: run.status.as_str().to_string(),
            run_id: Some(run.id.to_string()),
            attempt: Some(run.attempt),
            trigger: Some(run.trigger),
            actor: Some(run.actor.clone()),
            started_at: Some(run.started_at),
            ended_at: run.ended_at,
            duration_ms: run.duration_ms,
            exit_code: run.exit_code,
            message: run.message.clone(),
            output_tail: run.output_tail.clone(),
            log_ref: run.log_ref.clone(),
            data: run.data.clone(),
        }
    }

    /// A task of a deployment that has no run: `status` is `would_run` or `not_run`.
    pub fn without_run(task: String, status: &str) -> TaskOutcome {
        TaskOutcome {
            task,
            status: status.to_string(),
            run_id: None,
            attempt: None,
            trigger: None,
            actor: None,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            exit_code: None,
            message: None,
            output_tail: None,
            log_ref: None,
            data: None,
        }
    }

    /// Whether the run did not succeed although it ran (failed, timed out, abandoned).
    pub fn failed(&self) -> bool {
        [RunStatus::Failed, RunStatus::TimedOut, RunStatus::Abandoned]
            .iter()
            .any(|s| s.as_str() == self.status)
    }

    /// Whether the task was meant to run and did not start (its deployment failed first).
    pub fn skipped(&self) -> bool {
        self.status == RunStatus::Skipped.as_str()
    }

    /// The command that prints this run's full output.
    pub fn logs_command(&self) -> Option<String> {
        self.run_id.as_ref().map(|id| format!("lumo logs {id}"))
    }
}

/// A run as `run --json`, `history --json` and `status --json` show it: its [`TaskOutcome`],
/// and the rest of its audit record (where it belongs, what it ran).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDocument {
    #[serde(flatten)]
    pub outcome: TaskOutcome,
    /// The run id again, under the record's own name (`runId` is the same).
    pub id: RunId,
    pub deployment_id: Option<String>,
    pub project: String,
    pub env: String,
    /// `""` for none, as in the record.
    #[serde(serialize_with = "empty_is_none::serialize")]
    pub version: Option<Version>,
    pub previous_version: Option<Version>,
    /// `""` for none, as in the record.
    #[serde(serialize_with = "empty_is_none::serialize")]
    pub bundle_hash: Option<BundleHash>,
    /// Where `data` lives when it was too large to keep in the record.
    pub data_ref: Option<String>,
    pub output_bytes: u64,
    pub kind: RunKind,
    pub args: BTreeMap<String, String>,
    /// Ran the working copy's bundle (`lumo run --from-source`), not the deployed one.
    pub from_source: bool,
    /// What an `exec` run ran, masked; `None` for a task run.
    pub command: Option<Vec<String>>,
}

impl From<&TaskRun> for RunDocument {
    fn from(run: &TaskRun) -> RunDocument {
        RunDocument {
            outcome: TaskOutcome::of_run(run),
            id: run.id.clone(),
            deployment_id: run.deployment_id.clone(),
            project: run.project.clone(),
            env: run.env.clone(),
            version: run.version.clone(),
            previous_version: run.previous_version.clone(),
            bundle_hash: run.bundle_hash.clone(),
            data_ref: run.data_ref.clone(),
            output_bytes: run.output_bytes,
            kind: run.kind,
            args: run.args.clone(),
            from_source: run.from_source,
            command: run.command.clone(),
        }
    }
}

/// Serializes runs as [`RunDocument`]s, for documents that keep the records themselves.
pub fn serialize_runs<S: serde::Serializer>(runs: &[TaskRun], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(runs.iter().map(RunDocument::from))
}

/// Serializes one run as a [`RunDocument`].
pub fn serialize_run<S: serde::Serializer>(run: &TaskRun, s: S) -> Result<S::Ok, S::Error> {
    RunDocument::from(run).serialize(s)
}
