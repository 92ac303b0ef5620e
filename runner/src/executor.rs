//! Runs one task process under the task contract (PRODUCT.md §4) and says how it went.
//!
//! This is the one place that knows how a task is started, fed, watched, stopped and judged, so
//! that `lumo` on a laptop (the `local` provider) and the Lambda runner record the same status
//! and message for the same task. [`execute`] is the run's sequence; each step lives with its
//! idea:
//! - `spawn.rs` starts the task: scratch files, the command and its environment, one pipe for
//!   stdout and stderr (so their lines keep the order the task wrote them in), its own process
//!   group, the context on stdin;
//! - `pump.rs` reads the pipe during every wait, and `output.rs` masks, streams, logs and
//!   summarises what it reads as it arrives, never holding it whole;
//! - `stop.rs` waits for the task under its deadline and the caller's stop, and stops its group
//!   and what left the group (found among our children, `group.rs`), so nothing outlives the run;
//! - `judge.rs` turns the exit status and the result file into the status and message.
//!
//! A task that misbehaves (garbage result, megabytes of output, children that outlive it, a
//! child that escaped the group and holds the pipe, never ending) still ends in an outcome.

mod error_line;
mod group;
mod judge;
mod output;
mod pump;
mod spawn;
mod stop;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::contract::Entry;
use crate::mask::Masker;
use crate::task_run::{RunOutcome, TaskSpec};
pub use group::{become_subreaper, kill_processes_of_run};
#[cfg(any(test, feature = "lambda"))]
pub(crate) use judge::format_duration;
use output::OutputSink;
use pump::OutputPump;
use spawn::Start;
use stop::GroupGuard;

/// How long a task gets between SIGTERM and SIGKILL, unless the caller says otherwise.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How much of the end of a task's output a [`RunOutcome`] keeps.
pub const TAIL_BYTES: usize = 4096;

/// The largest result file read; a bigger one fails the run.
pub const MAX_RESULT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Name of the context file inside the scratch directory (`LUMO_CONTEXT_FILE`), after the
/// [`TaskProcess::scratch_prefix`].
pub const CONTEXT_FILE_NAME: &str = "context.json";

/// Name of the result file inside the scratch directory (`LUMO_RESULT_FILE`), after the
/// [`TaskProcess::scratch_prefix`].
pub const RESULT_FILE_NAME: &str = "result.json";

/// How long the output pipe is still read once no process of the task's group is left
/// ([`OutputPump::drain`]).
const DRAIN_AFTER_GROUP_ENDS: Duration = Duration::from_millis(500);

/// One task run, as the executor needs it: the shared [`TaskSpec`] and where and how its
/// process runs.
#[derive(Clone, Debug)]
pub struct TaskProcess {
    /// What the task is told and how long it may take; `context` is written to the task's
    /// stdin (then closed) and to `<scratch_dir>/context.json`, the secrets are masked in
    /// everything the run produces.
    pub spec: TaskSpec,
    /// What to start: a program relative to the working directory, or an `sh -c` command.
    pub entry: Entry,
    /// The unpacked bundle; the task's current directory.
    pub working_directory: PathBuf,
    /// Time between SIGTERM and SIGKILL when the group is stopped ([`DEFAULT_KILL_GRACE`]).
    pub kill_grace: Duration,
    /// An existing directory outside the working directory, for the context and result files.
    pub scratch_dir: PathBuf,
    /// Put before the scratch files' names (`<prefix>context.json`, ...): empty when
    /// `scratch_dir` is the run's own, the run's id and a dot when runs share the directory.
    pub scratch_prefix: String,
    /// The context file is an in-memory file (Linux), named `/proc/<lumo's pid>/fd/<n>` for
    /// the run's processes, instead of `<scratch_dir>/<prefix>context.json`: nothing is created
    /// on disk or deleted from it, which a deploy of many tasks pays per task on some file
    /// systems. It can be read, by the task and whatever it starts, until the run ends; then it
    /// is emptied, and kept for a later run's context.
    /// Elsewhere, or if it cannot be made, the file on disk is written as without it.
    pub context_in_memory: bool,
    /// Where the full masked output is written as it arrives: created (or truncated) at the
    /// task's first output, so a run that prints nothing creates no file (its record says it
    /// printed nothing: a deploy of many quiet tasks creates no file a task).
    pub log_file: Option<PathBuf>,
    /// Becomes `true` when the run must end early (the caller was interrupted, or lost the
    /// right to run): the group is stopped as on a timeout and the run is `failed`.
    pub stop: Option<watch::Receiver<bool>>,
}

impl TaskProcess {
    /// A run of `spec` with no log file, no stop and the default grace.
    pub fn new(
        spec: TaskSpec,
        entry: Entry,
        working_directory: PathBuf,
        scratch_dir: PathBuf,
    ) -> TaskProcess {
        TaskProcess {
            spec,
            entry,
            working_directory,
            kill_grace: DEFAULT_KILL_GRACE,
            scratch_dir,
            scratch_prefix: String::new(),
            context_in_memory: false,
            log_file: None,
            stop: None,
        }
    }
}

/// Receives a task's output while it runs, for live streaming.
///
/// Called on the executor's own task between reads of the pipe: a slow observer slows the
/// reading, and a task that fills the pipe then waits for it, so keep it quick (print, send on
/// a channel).
pub trait OutputObserver: Send {
    /// A chunk of masked output, in order, as it arrives. Chunks follow the pipe's reads, not
    /// lines: a line may come in several chunks.
    fn output(&mut self, chunk: &[u8]);
}

/// An observer for callers that only want the outcome (the log file and tail still get it all).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardOutput;

impl OutputObserver for DiscardOutput {
    fn output(&mut self, _chunk: &[u8]) {}
}

/// Collects all output in memory: for tests and small outputs only.
impl OutputObserver for Vec<u8> {
    fn output(&mut self, chunk: &[u8]) {
        self.extend_from_slice(chunk);
    }
}

/// lumo's own I/O failed around a task run. A task that fails in any way is not an error but an
/// [`RunOutcome`]; these say that lumo could not do its part.
///
/// The display says what lumo was doing and with which file; the operating system's reason is
/// the error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("could not find the scratch directory `{}`", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write the task context to `{}`", path.display())]
    WriteContext {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not remove the stale result file `{}`", path.display())]
    StaleResult {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The log could not be written while the task ran. The task ran to its end regardless, and
    /// `outcome` says how; only the log is incomplete.
    #[error(
        "could not write the log file `{}` (the task ran to the end and {})",
        path.display(),
        outcome.status
    )]
    WriteLog {
        path: PathBuf,
        #[source]
        source: io::Error,
        outcome: Box<RunOutcome>,
    },
    #[error("could not create the pipe for the task's output")]
    Pipe {
        #[source]
        source: io::Error,
    },
    #[error("could not create the pipe that hands the task its context on stdin")]
    ContextPipe {
        #[source]
        source: io::Error,
    },
    #[error("lost track of the task's process {pid}")]
    Wait {
        pid: i32,
        #[source]
        source: io::Error,
    },
}

/// Runs the task to its end and returns how it went; see the module docs for the contract.
///
/// Returns only once no process of the task's group is left. If the returned future is dropped
/// before it completes, the whole group is killed.
///
/// Needs a tokio runtime with I/O and time enabled (`Builder::enable_all`). The process that
/// owns the runs should call [`become_subreaper`] once at start-up, so that what a task leaves
/// behind can be reaped.
pub async fn execute(
    process: TaskProcess,
    observer: &mut dyn OutputObserver,
) -> Result<RunOutcome, ExecError> {
    let masker = Masker::new(process.spec.secrets.values().cloned());
    let scratch = spawn::prepare_scratch(&process)?;
    let (pipe, writers) = spawn::output_pipe()?;

    let started_at = SystemTime::now();
    // Before the task starts: whatever starts after this may be the run's stray.
    let task_started = group::boot_ticks_now();
    let mut task = match spawn::start(&process, &scratch, writers).await? {
        Start::Running(task) => task,
        Start::Failed(reason) => {
            return Ok(judge::not_started(
                &process.entry,
                &reason,
                &masker,
                started_at,
            ));
        }
    };
    let started = Instant::now();
    let (pid, pgid) = (task.pid, task.pgid());
    let run_id = process.spec.run_id();
    // Should the process running us die (kill -9), whoever finds the run orphaned stops its
    // processes by their `LUMO_RUN_ID` ([`kill_processes_of_run`]); should this future be
    // dropped, the guard does.
    let mut guard = GroupGuard::new(pgid, run_id);
    tracing::debug!(pid, task = %process.spec.task(), "task started");
    let stdin_writer = task.feed_stdin();

    let mut out = OutputPump::new(
        OutputSink::new(masker.stream(), observer, process.log_file.clone()),
        pipe,
    );
    let deadline = stop::deadline(started, process.spec.timeout);
    let (waited, cut) = out
        .wait_or_cut(
            &mut task.child,
            pgid,
            deadline,
            process.stop.clone(),
            process.kill_grace,
        )
        .await;
    let exit = waited.map_err(|source| ExecError::Wait { pid, source })?;
    out.end_group(pgid, cut.is_some(), process.kill_grace).await;
    guard.disarm();
    // The group is gone; what is left of the run had left the group (`setsid`) and, its
    // parent gone, is now our child.
    drop(task.live);
    out.stop_escaped(run_id, task_started, process.kill_grace)
        .await;
    out.drain(DRAIN_AFTER_GROUP_ENDS).await;
    if let Some(writer) = stdin_writer {
        writer.abort();
    }
    let ended_at = SystemTime::now();
    let summary = out.finish().await;

    let outcome = match cut {
        Some(cut) => judge::cut_short(
            cut,
            exit,
            process.spec.timeout,
            &summary,
            started_at,
            ended_at,
        ),
        None => {
            let result = judge::read_result_file(&scratch.result_file).await;
            judge::judge(
                &process.entry,
                exit,
                result,
                &summary,
                &masker,
                started_at,
                ended_at,
            )
        }
    };
    match summary.log_error {
        Some((path, source)) => Err(ExecError::WriteLog {
            path,
            source,
            outcome: Box::new(outcome),
        }),
        None => Ok(outcome),
    }
}

#[cfg(test)]
mod tests;
