//! Runs one task process under the task contract (PRODUCT.md §4) and says how it went.
//!
//! This is the one place that knows how a task is started, fed, watched, stopped and judged, so
//! that `lumo` on a laptop (the `local` provider) and the Lambda runner record the same status
//! and message for the same task. The parts that need care:
//! - the task runs as the leader of its own process group, so a timeout stops everything it
//!   forked, and what left the group is found among our children, so nothing outlives the run
//!   (`group.rs`);
//! - stdout and stderr share one pipe, so their lines keep the order the task wrote them in;
//! - output is masked, streamed, logged and summarised as it arrives, never held whole
//!   (`output.rs`);
//! - a task that misbehaves (garbage result, megabytes of output, children that outlive it, a
//!   child that escaped the group and holds the pipe, never ending) still ends in an outcome.

mod group;
mod output;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe::Receiver;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::contract::{Entry, RunStatus, TaskContext, TaskResult, arg_env_name};
use crate::mask::Masker;
pub use group::{become_subreaper, kill_processes_of_run};
use output::{OutputSink, OutputSummary};

/// How long a task gets between SIGTERM and SIGKILL, unless the caller says otherwise.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// How much of the end of a task's output an [`ExecOutcome`] keeps.
pub const TAIL_BYTES: usize = 4096;

/// The largest result file read; a bigger one fails the run.
pub const MAX_RESULT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Name of the context file inside the scratch directory (`LUMO_CONTEXT_FILE`).
pub const CONTEXT_FILE_NAME: &str = "context.json";

/// Name of the result file inside the scratch directory (`LUMO_RESULT_FILE`).
pub const RESULT_FILE_NAME: &str = "result.json";

/// How long the output pipe is still read once no process of the task's group is left. Only a
/// process that left the group (`setsid`) can still hold it open, and it may do so forever.
const DRAIN_AFTER_GROUP_ENDS: Duration = Duration::from_millis(500);

/// How long to wait for the group to empty after SIGKILL before giving up on it. SIGKILL cannot
/// be ignored; only a process stuck in the kernel (a dead NFS mount) outlasts this.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often the group is checked for live processes while waiting for it to empty.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// How many times the processes that left a task's group are looked for and stopped: stopping
/// one can orphan its children, found the next time. Only a task that forks faster than it is
/// killed needs more, and it gets a warning.
const ESCAPED_ROUNDS: usize = 10;

const READ_CHUNK: usize = 64 * 1024;

/// One task run, as the executor needs it.
#[derive(Clone)]
pub struct TaskProcess {
    /// What to start: a program relative to the working directory, or an `sh -c` command.
    pub entry: Entry,
    /// The unpacked bundle; the task's current directory.
    pub working_directory: PathBuf,
    /// Written to the task's stdin (then closed) and to `<scratch_dir>/context.json`.
    pub context: TaskContext,
    /// The task's `env` from the config.
    pub env: BTreeMap<String, String>,
    /// Environment variable name (already upper snake case) → secret value. The values are
    /// masked in everything the run produces.
    pub secrets: BTreeMap<String, String>,
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the group is stopped ([`DEFAULT_KILL_GRACE`]).
    pub kill_grace: Duration,
    /// An existing directory outside the working directory, for the context and result files.
    pub scratch_dir: PathBuf,
    /// Where the full masked output is written (created or truncated), as it arrives.
    pub log_file: Option<PathBuf>,
    /// Becomes `true` when the run must end early (the caller was interrupted, or lost the
    /// right to run): the group is stopped as on a timeout and the run is `failed`.
    pub stop: Option<watch::Receiver<bool>>,
}

impl TaskProcess {
    /// A run with no env, no secrets, no log file, a 300 s timeout and the default grace.
    pub fn new(
        entry: Entry,
        working_directory: PathBuf,
        context: TaskContext,
        scratch_dir: PathBuf,
    ) -> TaskProcess {
        TaskProcess {
            entry,
            working_directory,
            context,
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            timeout: Duration::from_secs(300),
            kill_grace: DEFAULT_KILL_GRACE,
            scratch_dir,
            log_file: None,
            stop: None,
        }
    }
}

impl fmt::Debug for TaskProcess {
    // Secret values must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskProcess")
            .field("entry", &self.entry)
            .field("working_directory", &self.working_directory)
            .field("context", &self.context)
            .field("env", &self.env)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("scratch_dir", &self.scratch_dir)
            .field("log_file", &self.log_file)
            .finish()
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

/// How a task run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// `Succeeded`, `Failed` or `TimedOut`.
    pub status: RunStatus,
    /// The task's exit code; `None` when it was killed by a signal or could not be started.
    pub exit_code: Option<i32>,
    /// The signal that ended the task's main process, if one did.
    pub signal: Option<i32>,
    /// One line for the record (masked): the result's message, else the last output line, else
    /// the exit code; prefixed with why the run failed where that is not the task's own word.
    pub message: String,
    /// The result's `data` (masked), only from a valid result file.
    pub data: Option<Value>,
    /// The last [`TAIL_BYTES`] bytes of masked output, cut at a character boundary.
    pub output_tail: String,
    /// Size of the whole masked output.
    pub output_bytes: u64,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
}

/// lumo's own I/O failed around a task run. A task that fails in any way is not an error but an
/// [`ExecOutcome`]; these say that lumo could not do its part.
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
    #[error("could not create the log file `{}`", path.display())]
    CreateLog {
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
        outcome: Box<ExecOutcome>,
    },
    #[error("could not create the pipe for the task's output")]
    Pipe {
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
) -> Result<ExecOutcome, ExecError> {
    let masker = Masker::new(process.secrets.values().cloned());
    let ScratchFiles {
        context_file,
        result_file,
        context_json,
    } = prepare_scratch(&process).await?;
    let log = match &process.log_file {
        Some(path) => {
            let file =
                tokio::fs::File::create(path)
                    .await
                    .map_err(|source| ExecError::CreateLog {
                        path: path.clone(),
                        source,
                    })?;
            Some((path.clone(), file))
        }
        None => None,
    };

    // One pipe for both stdout and stderr: two pipes read separately cannot tell which of two
    // writes came first, one pipe keeps the order the task wrote in.
    let (reader, writer) = io::pipe().map_err(|source| ExecError::Pipe { source })?;
    let stderr_writer = writer
        .try_clone()
        .map_err(|source| ExecError::Pipe { source })?;
    let pipe = Receiver::from_owned_fd(OwnedFd::from(reader))
        .map_err(|source| ExecError::Pipe { source })?;

    let started_at = SystemTime::now();
    let mut command = match task_command(&process, &context_file, &result_file) {
        Ok(command) => command,
        Err(reason) => return Ok(not_started(&process.entry, &reason, &masker, started_at)),
    };
    command
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(stderr_writer)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = spawn_retrying_busy(&mut command).await;
    // The command keeps our copies of the pipe's write end; closing them now means the pipe
    // reaches EOF as soon as the task's processes have closed theirs.
    drop(command);
    let (mut child, live) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            let reason = start_error_reason(&process, &e);
            return Ok(not_started(&process.entry, &reason, &masker, started_at));
        }
    };
    let started = Instant::now();
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        // Only a child already reaped has no id, and nothing has waited for it yet.
        return Err(ExecError::Wait {
            pid: 0,
            source: io::Error::other("the task process has no process id"),
        });
    };
    let pgid = Pid::from_raw(pid);
    let mut guard = GroupGuard {
        pgid,
        run_id: &process.context.run_id,
        armed: true,
    };
    tracing::debug!(pid, task = %process.context.task, "task started");
    // Should the process running us die (kill -9), whoever finds the run orphaned stops its
    // processes by their `LUMO_RUN_ID` ([`kill_processes_of_run`]).

    // A task that never reads stdin must not block us: the write happens on its own task, and
    // EPIPE (the task exited without reading) is expected, not an error.
    let stdin_writer = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            let _ = stdin.write_all(&context_json).await;
            let _ = stdin.shutdown().await;
        })
    });

    let mut out = OutputPump {
        sink: OutputSink::new(masker.stream(), observer, log),
        pipe: Some(pipe),
        buf: vec![0; READ_CHUNK],
    };
    // A timeout too large to add is as good as none (a century is past any deadline that matters).
    let deadline = started
        .checked_add(process.timeout)
        .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 24 * 3600));
    let cut_short = cut_short(deadline, process.stop.clone());
    let (waited, cut) = match out
        .pump(async {
            tokio::select! {
                waited = child.wait() => Ok(waited),
                cut = cut_short => Err(cut),
            }
        })
        .await
    {
        Ok(waited) => (waited, None),
        Err(cut) => {
            tracing::debug!(pid, ?cut, "task cut short");
            out.stop_group(pgid, process.kill_grace, Some(&mut child))
                .await;
            (out.pump(child.wait()).await, Some(cut))
        }
    };
    let exit = waited.map_err(|source| ExecError::Wait { pid, source })?;
    // Tokio has reaped the leader, so waiting on the whole group cannot take its status now.
    group::reap_dead_members(pgid);
    if cut.is_none() {
        // Background children the task left behind are part of the run and end with it.
        out.stop_group(pgid, process.kill_grace, None).await;
        group::reap_dead_members(pgid);
    }
    guard.armed = false;
    // The group is gone; what is left of the run had left the group (`setsid`) and, its
    // parent gone, is now our child.
    drop(live);
    out.stop_escaped(&process.context.run_id, process.kill_grace)
        .await;
    out.drain(DRAIN_AFTER_GROUP_ENDS).await;
    if let Some(writer) = stdin_writer {
        writer.abort();
    }
    let ended_at = SystemTime::now();
    let summary = out.sink.finish().await;

    let outcome = if let Some(cut) = cut {
        let (status, message) = match cut {
            Cut::TimedOut => (
                RunStatus::TimedOut,
                format!("timed out after {}", format_duration(process.timeout)),
            ),
            Cut::Stopped => (RunStatus::Failed, "stopped before it ended".to_string()),
        };
        ExecOutcome {
            status,
            exit_code: exit.code(),
            signal: exit.signal(),
            message,
            data: None,
            output_tail: summary.tail,
            output_bytes: summary.bytes,
            started_at,
            ended_at,
        }
    } else {
        let result = read_result_file(&result_file).await;
        judge(exit, result, &summary, &masker, started_at, ended_at)
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

/// Why a task was stopped before it ended by itself.
#[derive(Debug, Clone, Copy)]
enum Cut {
    TimedOut,
    Stopped,
}

/// Completes when the run must be cut short: its deadline passed, or `stop` turned `true`.
async fn cut_short(deadline: Instant, stop: Option<watch::Receiver<bool>>) -> Cut {
    let stopped = async {
        let asked = match stop {
            Some(mut stop) => stop.wait_for(|s| *s).await.is_ok(),
            None => false,
        };
        if !asked {
            // No stop to watch, or its sender is gone and can no longer ask for one.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => Cut::TimedOut,
        () = stopped => Cut::Stopped,
    }
}

/// The scratch files of a run, ready before the task starts.
struct ScratchFiles {
    context_file: PathBuf,
    result_file: PathBuf,
    /// The context as written to the file, and as the task will read it on stdin.
    context_json: Vec<u8>,
}

/// Writes the context file and clears any result file an earlier run in the same scratch
/// directory left behind, so it cannot be taken for this run's.
async fn prepare_scratch(process: &TaskProcess) -> Result<ScratchFiles, ExecError> {
    let scratch =
        std::path::absolute(&process.scratch_dir).map_err(|source| ExecError::Scratch {
            path: process.scratch_dir.clone(),
            source,
        })?;
    let context_file = scratch.join(CONTEXT_FILE_NAME);
    let result_file = scratch.join(RESULT_FILE_NAME);
    let write_err = |source| ExecError::WriteContext {
        path: context_file.clone(),
        source,
    };
    let mut context_json =
        serde_json::to_vec(&process.context).map_err(|e| write_err(io::Error::other(e)))?;
    // A trailing newline lets a shell task `read` the context line as well as parse it.
    context_json.push(b'\n');
    tokio::fs::write(&context_file, &context_json)
        .await
        .map_err(write_err)?;
    match tokio::fs::remove_file(&result_file).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ExecError::StaleResult {
                path: result_file,
                source,
            });
        }
    }
    Ok(ScratchFiles {
        context_file,
        result_file,
        context_json,
    })
}

/// Kills the task's whole group if [`execute`] is abandoned half-way (its future dropped, or
/// an error return), so a cancelled run leaves nothing behind: the group, and (best effort,
/// there is no waiting here) what left it and is already our child.
struct GroupGuard<'a> {
    pgid: Pid,
    run_id: &'a str,
    armed: bool,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            group::signal(self.pgid, Signal::SIGKILL);
            group::Escaped::new(self.run_id).signal(Signal::SIGKILL);
        }
    }
}

/// The read side of the output pipe and where its bytes go. Every wait in [`execute`] goes
/// through [`OutputPump::pump`], so output keeps flowing (and a task blocked on a full pipe
/// keeps running) whatever the executor is waiting for.
struct OutputPump<'a> {
    sink: OutputSink<'a>,
    /// `None` once the pipe reached EOF or was given up on.
    pipe: Option<Receiver>,
    buf: Vec<u8>,
}

impl OutputPump<'_> {
    /// Awaits `fut` while forwarding output.
    async fn pump<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            let Some(pipe) = self.pipe.as_mut() else {
                return fut.await;
            };
            tokio::select! {
                biased;
                done = &mut fut => return done,
                read = pipe.read(&mut self.buf) => self.take(read).await,
            }
        }
    }

    /// Forwards output until the pipe reaches EOF or `limit` has passed, whichever comes first.
    async fn drain(&mut self, limit: Duration) {
        let deadline = tokio::time::sleep(limit);
        let mut deadline = std::pin::pin!(deadline);
        while let Some(pipe) = self.pipe.as_mut() {
            tokio::select! {
                read = pipe.read(&mut self.buf) => self.take(read).await,
                () = &mut deadline => {
                    tracing::debug!("a process outside the task's group still holds its output pipe");
                    self.pipe = None;
                }
            }
        }
    }

    async fn take(&mut self, read: io::Result<usize>) {
        match read {
            Ok(0) => self.pipe = None,
            Ok(n) => self.sink.push(&self.buf[..n]).await,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("could not read the task's output: {e}");
                self.pipe = None;
            }
        }
    }

    /// Stops and reaps the processes of run `run_id` that left its group ([`group::Escaped`]):
    /// SIGTERM, up to `grace` for them to exit, then SIGKILL; again while stopping them
    /// orphans more.
    async fn stop_escaped(&mut self, run_id: &str, grace: Duration) {
        let mut escaped = group::Escaped::new(run_id);
        for _ in 0..ESCAPED_ROUNDS {
            if escaped.signal(Signal::SIGTERM) == 0 {
                return;
            }
            if self
                .pump(tokio::time::timeout(grace, all_reaped(&mut escaped)))
                .await
                .is_ok()
            {
                continue;
            }
            tracing::debug!(
                "processes that left the task's group outlived SIGTERM; sending SIGKILL"
            );
            escaped.signal(Signal::SIGKILL);
            if self
                .pump(tokio::time::timeout(KILL_WAIT, all_reaped(&mut escaped)))
                .await
                .is_err()
            {
                break;
            }
        }
        // Out of rounds, or SIGKILL did not end them: a last look, then give up on them.
        if escaped.signal(Signal::SIGKILL) > 0 {
            tracing::warn!("processes of run {run_id} that left its process group are still alive");
        }
    }

    /// Stops every process left in the group: SIGTERM, up to `grace` for them to exit, then
    /// SIGKILL. Returns once the group is empty (zombies aside) and `leader`, if given, has
    /// exited.
    ///
    /// The leader is signalled on its own as well: it is normally in the group, but a task may
    /// move it to another one, and waiting for a leader that never got the signal would hang.
    async fn stop_group(&mut self, pgid: Pid, grace: Duration, mut leader: Option<&mut Child>) {
        if !group::has_live_members(pgid) && !leader_running(&mut leader) {
            return;
        }
        group::signal(pgid, Signal::SIGTERM);
        // A stopped process would only act on SIGTERM once continued.
        group::signal(pgid, Signal::SIGCONT);
        if leader_running(&mut leader)
            && let Some(id) = leader.as_deref().and_then(Child::id)
            && let Ok(id) = i32::try_from(id)
        {
            // `id` is only known while the leader is unreaped, so it cannot name another process.
            let _ = nix::sys::signal::kill(Pid::from_raw(id), Signal::SIGTERM);
        }
        if self
            .pump(tokio::time::timeout(
                grace,
                all_gone(pgid, leader.as_deref_mut()),
            ))
            .await
            .is_ok()
        {
            return;
        }
        tracing::debug!(%pgid, "task processes outlived SIGTERM; sending SIGKILL");
        group::signal(pgid, Signal::SIGKILL);
        if let Some(child) = leader.as_deref_mut() {
            let _ = child.start_kill();
        }
        if self
            .pump(tokio::time::timeout(KILL_WAIT, all_gone(pgid, leader)))
            .await
            .is_err()
        {
            tracing::warn!(
                "processes of group {pgid} are still alive {}s after SIGKILL",
                KILL_WAIT.as_secs()
            );
        }
    }
}

/// Whether the leader (if any) has not exited yet. Reaps it when it has; tokio keeps its status
/// for the `wait` that follows.
fn leader_running(leader: &mut Option<&mut Child>) -> bool {
    leader
        .as_deref_mut()
        .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
}

/// Completes once every process `escaped` has signalled is reaped.
async fn all_reaped(escaped: &mut group::Escaped) {
    while !escaped.reap() {
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Completes once no live process is left in the group and the leader, if given, has exited.
async fn all_gone(pgid: Pid, mut leader: Option<&mut Child>) {
    while leader_running(&mut leader) || group::has_live_members(pgid) {
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// The command that starts the task, with the contract's environment; `Err` with a reason when
/// the entry cannot name something to start.
fn task_command(
    process: &TaskProcess,
    context_file: &Path,
    result_file: &Path,
) -> Result<Command, String> {
    let mut command = match &process.entry {
        Entry::Program(path) => {
            let relative = Path::new(path);
            if path.is_empty()
                || !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err("the entry must be a relative path inside the bundle".to_owned());
            }
            // An absolute program path: a bare name would be looked up on PATH, and a relative
            // path is resolved differently across platforms once the current directory changes.
            let program = std::path::absolute(process.working_directory.join(relative))
                .map_err(|e| e.to_string())?;
            Command::new(program)
        }
        Entry::Command(line) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(line);
            command
        }
        Entry::Node(module) => {
            // The context file lives in the scratch directory, beside which the entry goes.
            let scratch = context_file.parent().unwrap_or(&process.scratch_dir);
            crate::node::task_command(module, &process.working_directory, scratch)?
        }
    };
    command.current_dir(&process.working_directory);

    // Arguments of an enclosing lumo run must not leak into this one's.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LUMO_ARG_") {
            command.env_remove(name);
        }
    }
    let ctx = &process.context;
    let deployment = &ctx.deployment;
    command
        .env("LUMO_ENVIRONMENT", &deployment.environment)
        .env("LUMO_TASK", &ctx.task)
        .env("LUMO_RUN_ID", &ctx.run_id)
        .env("LUMO_TRIGGER", ctx.trigger.as_str())
        .env("LUMO_VERSION", &deployment.version)
        .env(
            "LUMO_PREVIOUS_VERSION",
            deployment.previous_version.as_deref().unwrap_or(""),
        )
        .env(
            "LUMO_IS_FIRST_DEPLOY",
            if deployment.is_first_deploy {
                "true"
            } else {
                "false"
            },
        )
        .env("LUMO_RESULT_FILE", result_file)
        .env("LUMO_CONTEXT_FILE", context_file);
    for (name, value) in &ctx.args {
        command.env(arg_env_name(name), value);
    }
    // Later settings win: the task's env over lumo's, secrets over both.
    command.envs(&process.env);
    command.envs(&process.secrets);
    Ok(command)
}

/// Spawns `command` as a live task ([`group::spawn_leader`]), retrying briefly on ETXTBSY. A
/// bundle unpacked moments ago can make exec fail with "text file busy" when another thread of
/// this process forked (to start another task) while the entry's file was still open for
/// writing; the fork's copy of that descriptor is closed as soon as it execs, so the condition
/// passes by itself.
async fn spawn_retrying_busy(command: &mut Command) -> io::Result<(Child, group::LiveTask)> {
    const ETXTBSY: i32 = nix::errno::Errno::ETXTBSY as i32;
    let mut attempt = 0;
    loop {
        match group::spawn_leader(command) {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            spawned => return spawned,
        }
    }
}

/// Why the task could not be started, with a hint where the OS error alone misleads.
fn start_error_reason(process: &TaskProcess, error: &io::Error) -> String {
    if let Entry::Program(path) = &process.entry
        && error.raw_os_error() == Some(nix::errno::Errno::ENOEXEC as i32)
    {
        return format!(
            "{error}; {}",
            not_executable_hint(path, &process.working_directory.join(path))
        );
    }
    let hint = match (&process.entry, error.kind()) {
        (Entry::Program(path), io::ErrorKind::NotFound)
            if process.working_directory.join(path).is_file() =>
        {
            // execve reports a missing `#!` interpreter as the program itself being missing.
            "; the file exists, so the interpreter on its `#!` line was not found"
        }
        (Entry::Program(_), io::ErrorKind::PermissionDenied) => {
            "; is the file executable (`chmod +x`)?"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

/// Why the kernel refused to run `file` ("Exec format error"): a script without a `#!` line
/// (which a shell would run with `sh`, but `execve` does not), or a binary for another system.
fn not_executable_hint(path: &str, file: &Path) -> String {
    let mut start = [0u8; 4];
    let read = std::fs::File::open(file).and_then(|mut f| io::Read::read(&mut f, &mut start));
    match read {
        Ok(n) if start[..n].starts_with(b"\x7fELF") => format!(
            "`{path}` is a program built for another system or processor; build it for this one"
        ),
        _ => format!(
            "`{path}` is not a program and does not start with a `#!` line naming its \
             interpreter; if it is a script, add one as its first line, such as `#!/bin/sh`"
        ),
    }
}

/// The outcome of a task that never ran: recorded like any failed run.
fn not_started(entry: &Entry, reason: &str, masker: &Masker, at: SystemTime) -> ExecOutcome {
    ExecOutcome {
        status: RunStatus::Failed,
        exit_code: None,
        signal: None,
        message: masker.mask_str(&format!("could not start `{}`: {reason}", entry.label())),
        data: None,
        output_tail: String::new(),
        output_bytes: 0,
        started_at: at,
        ended_at: at,
    }
}

/// Reads the task's result file: `Ok(None)` when the task wrote none, `Err(reason)` when what it
/// wrote is not a valid `TaskResult`.
async fn read_result_file(path: &Path) -> Result<Option<TaskResult>, String> {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("could not read it: {e}")),
    };
    // Opening a FIFO would block until someone writes to it, and nobody will.
    if !metadata.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    if metadata.len() > MAX_RESULT_FILE_BYTES {
        return Err(format!(
            "it is larger than {} MiB",
            MAX_RESULT_FILE_BYTES / (1024 * 1024)
        ));
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("could not read it: {e}"))?;
    let mut bytes = Vec::new();
    // The length checked above may have grown since; never read more than the limit.
    file.take(MAX_RESULT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("could not read it: {e}"))?;
    if bytes.len() as u64 > MAX_RESULT_FILE_BYTES {
        return Err(format!(
            "it is larger than {} MiB",
            MAX_RESULT_FILE_BYTES / (1024 * 1024)
        ));
    }
    if bytes.trim_ascii().is_empty() {
        return Err("the file is empty".to_owned());
    }
    let result: TaskResult = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    match &result.data {
        None | Some(Value::Object(_)) => Ok(Some(result)),
        Some(other) => Err(format!(
            "`data` must be an object, not {}",
            json_kind(other)
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns how the task ended into a status and a message (PRODUCT.md §4 "Outcome").
fn judge(
    exit: ExitStatus,
    result: Result<Option<TaskResult>, String>,
    output: &OutputSummary,
    masker: &Masker,
    started_at: SystemTime,
    ended_at: SystemTime,
) -> ExecOutcome {
    let (result, invalid_result) = match result {
        Ok(result) => (result, None),
        Err(reason) => (None, Some(reason)),
    };
    let task_message = match (&invalid_result, &result) {
        (Some(reason), _) => format!(
            "result file is not a valid TaskResult: {reason}; a task writes \
             {{\"success\": bool, \"message\": string, \"data\"?: object}} to LUMO_RESULT_FILE"
        ),
        (None, Some(result)) => result.message.clone(),
        (None, None) => output.last_line.clone().unwrap_or_default(),
    };
    let (status, cause) = match (exit.code(), exit.signal()) {
        (Some(0), _) => {
            let succeeded = invalid_result.is_none() && result.as_ref().is_none_or(|r| r.success);
            let status = if succeeded {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            };
            (status, None)
        }
        (Some(code), _) => (RunStatus::Failed, Some(format!("exit code {code}"))),
        (None, Some(signal)) => (
            RunStatus::Failed,
            Some(format!("killed by signal {}", signal_name(signal))),
        ),
        (None, None) => (
            RunStatus::Failed,
            Some("ended without an exit status".to_owned()),
        ),
    };
    let message = match (cause, task_message.is_empty()) {
        (Some(cause), true) => cause,
        (Some(cause), false) => format!("{cause}: {task_message}"),
        (None, false) => task_message,
        (None, true) => format!("exit code {}", exit.code().unwrap_or(0)),
    };
    ExecOutcome {
        status,
        exit_code: exit.code(),
        signal: exit.signal(),
        message: masker.mask_str(&message),
        data: result
            .and_then(|r| r.data)
            .map(|data| masker.mask_json(&data)),
        output_tail: output.tail.clone(),
        output_bytes: output.bytes,
        started_at,
        ended_at,
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("{signal}"), |s| s.as_str().to_owned())
}

/// `120s`, `1.5s`, or `300ms` for timeouts under a second.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        // Tenths are plenty for a human, and `1.9889999999999999s` is not one.
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
