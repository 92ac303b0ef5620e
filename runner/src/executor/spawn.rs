//! Starting a task: its scratch files (the context in, the result out), the command its entry
//! names with the contract's environment, one pipe for its stdout and stderr, its own process
//! group, and the context on its stdin.
//!
//! A new kind of entry (an interpreter with a script of lumo's) is taught here: what to start
//! ([`task_command`]) and how to explain a start that failed ([`start_error_reason`]).

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe::{Receiver, Sender};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::group::{self, LiveTask};
use super::{CONTEXT_FILE_NAME, ExecError, RESULT_FILE_NAME, TaskProcess};
use crate::contract::{Entry, arg_env_name};

/// The scratch files of a run, ready before the task starts.
pub(super) struct ScratchFiles {
    /// The scratch directory, absolute.
    pub dir: PathBuf,
    pub context_file: PathBuf,
    pub result_file: PathBuf,
    /// The context as written to the file, and as the task will read it on stdin.
    pub context_json: Vec<u8>,
    /// The in-memory context file ([`TaskProcess::context_in_memory`]), open until the run
    /// ends: `context_file` names it only while it is. Also the task's stdin.
    in_memory: Option<InMemoryFile>,
}

/// Writes the context file and clears any result file an earlier run in the same scratch
/// directory left behind, so it cannot be taken for this run's.
///
/// Both are done on the calling thread: a file of a few hundred bytes is written faster than
/// tokio's `fs` hands it to a blocking thread and back, which a deploy would pay twice a task.
pub(super) fn prepare_scratch(process: &TaskProcess) -> Result<ScratchFiles, ExecError> {
    let scratch =
        std::path::absolute(&process.scratch_dir).map_err(|source| ExecError::Scratch {
            path: process.scratch_dir.clone(),
            source,
        })?;
    let prefix = &process.scratch_prefix;
    let on_disk = scratch.join(format!("{prefix}{CONTEXT_FILE_NAME}"));
    let result_file = scratch.join(format!("{prefix}{RESULT_FILE_NAME}"));
    let write_err = |source| ExecError::WriteContext {
        path: on_disk.clone(),
        source,
    };
    let mut context_json =
        serde_json::to_vec(&process.spec.context).map_err(|e| write_err(io::Error::other(e)))?;
    // A trailing newline lets a shell task `read` the context line as well as parse it.
    context_json.push(b'\n');
    let in_memory = if process.context_in_memory {
        in_memory_file(&context_json)
            .inspect_err(|e| {
                tracing::debug!(
                    "no in-memory context file ({e}); writing `{}`",
                    on_disk.display()
                );
            })
            .ok()
    } else {
        None
    };
    let (context_file, in_memory) = match in_memory {
        Some((path, fd)) => (path, Some(fd)),
        None => {
            std::fs::write(&on_disk, &context_json).map_err(write_err)?;
            (on_disk, None)
        }
    };
    match std::fs::remove_file(&result_file) {
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
        dir: scratch,
        context_file,
        result_file,
        context_json,
        in_memory,
    })
}

/// The in-memory context files of runs that have ended, emptied and kept open for the next
/// runs: making one (`memfd_create`) cost a deploy of many tasks more than rewriting one does
/// (15–27 µs a run here). A run's file is emptied when the run has ended, none of its
/// processes left to read it, and handed on.
static SPARE_IN_MEMORY_FILES: std::sync::Mutex<Vec<ContextFile>> =
    std::sync::Mutex::new(Vec::new());

/// The most spare files kept: as many as tasks can run at once (`lumo deploy --concurrency`
/// allows 64; usually one runs). A file beyond it is closed when its run ends.
const MAX_SPARE_IN_MEMORY_FILES: usize = 64;

fn spare_in_memory_files() -> std::sync::MutexGuard<'static, Vec<ContextFile>> {
    // A list of open files is consistent whatever panicked while holding it.
    SPARE_IN_MEMORY_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A run's in-memory context file, emptied and handed on to a later run when dropped (closed
/// when it cannot be emptied).
pub(super) struct InMemoryFile(Option<ContextFile>);

impl InMemoryFile {
    /// The task's stdin: the file's read-only open, rewound (the task before read it to its
    /// end). `None` if it cannot be handed out (no descriptor left); the context then goes
    /// through a pipe.
    fn stdin(&self) -> Option<std::fs::File> {
        use std::io::Seek;
        let reader = &self.0.as_ref()?.reader;
        let rewound = (&*reader).seek(io::SeekFrom::Start(0));
        let stdin = rewound.and_then(|_| reader.try_clone());
        stdin
            .inspect_err(|e| tracing::debug!("context file as stdin: {e}; using a pipe"))
            .ok()
    }
}

impl Drop for InMemoryFile {
    fn drop(&mut self) {
        let Some(mut file) = self.0.take() else {
            return;
        };
        if file.empty().is_ok() {
            let mut spare = spare_in_memory_files();
            if spare.len() < MAX_SPARE_IN_MEMORY_FILES {
                spare.push(file);
            }
        }
    }
}

/// An in-memory context file: ours to write, and opened once more read-only for the tasks'
/// stdin (its own offset; a task cannot write to its context through stdin).
struct ContextFile {
    file: std::fs::File,
    reader: std::fs::File,
    /// The file's length as we last left it.
    len: u64,
}

impl ContextFile {
    /// Writes `content` over the file from its start, cut to its length.
    fn hold(&mut self, content: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // At offset 0 whatever the file's offset: whoever opens the path reads from the start.
        self.file.write_all_at(content, 0)?;
        let len = content.len() as u64;
        if self.len != len {
            self.file.set_len(len)?;
            self.len = len;
        }
        Ok(())
    }

    /// Leaves nothing of the context in the file: zeros over it when the file is as we left
    /// it, keeping its memory for the next run (cutting it to nothing freed its page, which
    /// the next run allocated again: 8 µs against 3 for the overwrite, measured here); cut to
    /// nothing when a task changed its length.
    fn empty(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.file.metadata()?.len() == self.len {
            let len = usize::try_from(self.len).map_err(io::Error::other)?;
            self.file.write_all_at(&vec![0; len], 0)
        } else {
            self.len = 0;
            self.file.set_len(0)
        }
    }
}

/// An in-memory file holding `content` (Linux `memfd_create`, closed on exec; one an ended run
/// used, emptied, when there is one) and the path every process of ours can open it by while
/// it is open: `/proc/<our pid>/fd/<fd>`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn in_memory_file(content: &[u8]) -> io::Result<(PathBuf, InMemoryFile)> {
    use std::os::fd::AsRawFd;

    use nix::sys::memfd::{MFdFlags, memfd_create};
    let path_of = |file: &std::fs::File| {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ))
    };
    let mut spare = match spare_in_memory_files().pop() {
        Some(spare) => spare,
        None => {
            let file = std::fs::File::from(
                memfd_create(c"lumo-context", MFdFlags::MFD_CLOEXEC).map_err(io::Error::from)?,
            );
            // Opened by its path as a task opens it: where `/proc` does not allow that, there
            // is no in-memory file (and the context is written on disk).
            let path = path_of(&file);
            let reader = std::fs::File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("`{}`: {e}", path.display())))?;
            ContextFile {
                file,
                reader,
                len: 0,
            }
        }
    };
    spare.hold(content)?;
    Ok((path_of(&spare.file), InMemoryFile(Some(spare))))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn in_memory_file(_content: &[u8]) -> io::Result<(PathBuf, InMemoryFile)> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The write ends of the output pipe, one for the task's stdout and one for its stderr.
pub(super) struct PipeWriters {
    stdout: io::PipeWriter,
    stderr: io::PipeWriter,
}

/// One pipe for both stdout and stderr: two pipes read separately cannot tell which of two
/// writes came first, one pipe keeps the order the task wrote in.
pub(super) fn output_pipe() -> Result<(Receiver, PipeWriters), ExecError> {
    let (reader, stdout) = io::pipe().map_err(|source| ExecError::Pipe { source })?;
    let stderr = stdout
        .try_clone()
        .map_err(|source| ExecError::Pipe { source })?;
    // Non-blocking for tokio, set here with one call: `Receiver::from_owned_fd` checks what we
    // know (a pipe's read end) with two more a run.
    nix::fcntl::fcntl(
        &reader,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| ExecError::Pipe { source: e.into() })?;
    let pipe = Receiver::from_owned_fd_unchecked(OwnedFd::from(reader))
        .map_err(|source| ExecError::Pipe { source })?;
    Ok((pipe, PipeWriters { stdout, stderr }))
}

/// A task whose process has started.
pub(super) struct Started {
    pub child: Child,
    /// The pipe to the task's stdin and the part of the context it did not take before the
    /// task started ([`context_stdin`]).
    stdin_rest: Option<StdinRest>,
    /// Keeps the task among the live ones until the run has ended ([`group::LiveTask`]).
    pub live: LiveTask,
    pub pid: i32,
}

impl Started {
    /// The task's process group: its leader's pid.
    pub fn pgid(&self) -> Pid {
        Pid::from_raw(self.pid)
    }

    /// Hands the task the rest of its context on stdin, then closes it, on a task of its own:
    /// a task that never reads stdin must not block us, and EPIPE (the task exited without
    /// reading) is expected, not an error. `None` when the pipe took the whole context before
    /// the task started ([`context_stdin`]), which is the rule: a context is far smaller than
    /// a pipe's buffer.
    pub fn feed_stdin(&mut self) -> Option<JoinHandle<()>> {
        let (mut stdin, rest) = self.stdin_rest.take()?;
        Some(tokio::spawn(async move {
            let _ = stdin.write_all(&rest).await;
            let _ = stdin.shutdown().await;
        }))
    }
}

/// The write end of the task's stdin and what is left to write there.
type StdinRest = (Sender, Vec<u8>);

/// The task's stdin: a pipe holding as much of `context` as its buffer takes, written before
/// the task starts, so that a run needs no task of tokio's (and no wake-ups) to feed it. What
/// did not fit comes back with the pipe's write end, for [`Started::feed_stdin`]; when all of
/// it fitted, the write end is closed here and the task reads the context, then end of file.
fn context_stdin(context: &[u8]) -> io::Result<(Stdio, Option<StdinRest>)> {
    use std::io::Write;
    let (reader, mut writer) = io::pipe()?;
    let flags = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &writer,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    let mut written = 0;
    while written < context.len() {
        match writer.write(&context[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let rest = if written < context.len() {
        let sender = Sender::from_owned_fd(OwnedFd::from(writer))?;
        Some((sender, context[written..].to_vec()))
    } else {
        None
    };
    Ok((Stdio::from(reader), rest))
}

/// What became of the attempt to start the task.
pub(super) enum Start {
    Running(Box<Started>),
    /// The task could not be started, and why; recorded like any failed run.
    Failed(String),
}

/// Starts the task as the leader of a new process group, its stdout and stderr on `writers`.
pub(super) async fn start(
    process: &TaskProcess,
    scratch: &ScratchFiles,
    writers: PipeWriters,
) -> Result<Start, ExecError> {
    let mut command = match task_command(process, scratch) {
        Ok(command) => command,
        Err(reason) => return Ok(Start::Failed(reason)),
    };
    // A task reads its context on stdin: its in-memory context file, read-only, where there
    // is one (no pipe to make and fill a run), else a pipe. A command of the user's (`lumo
    // exec`) gets an empty one, so a `psql` or a `sh` does not take the context for its input.
    let in_memory_stdin = || scratch.in_memory.as_ref().and_then(InMemoryFile::stdin);
    let (stdin, stdin_rest) = match process.entry {
        Entry::Argv(_) => (Stdio::null(), None),
        _ => match in_memory_stdin() {
            Some(stdin) => (Stdio::from(stdin), None),
            None => match context_stdin(&scratch.context_json) {
                Ok(stdin) => stdin,
                Err(source) => return Err(ExecError::ContextPipe { source }),
            },
        },
    };
    command
        .stdin(stdin)
        .stdout(writers.stdout)
        .stderr(writers.stderr)
        .process_group(0)
        .kill_on_drop(true);
    let spawned = spawn_retrying_busy(&mut command).await;
    // The command keeps our copies of the pipe's write end; closing them now means the pipe
    // reaches EOF as soon as the task's processes have closed theirs.
    drop(command);
    let (child, live) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => return Ok(Start::Failed(start_error_reason(process, &e))),
    };
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        // Only a child already reaped has no id, and nothing has waited for it yet.
        return Err(ExecError::Wait {
            pid: 0,
            source: io::Error::other("the task process has no process id"),
        });
    };
    Ok(Start::Running(Box::new(Started {
        child,
        stdin_rest,
        live,
        pid,
    })))
}

/// The command that starts the task, with the contract's environment; `Err` with a reason when
/// the entry cannot name something to start.
fn task_command(process: &TaskProcess, scratch: &ScratchFiles) -> Result<Command, String> {
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
            let entry = scratch.dir.join(format!(
                "{}{}",
                process.scratch_prefix,
                crate::node::ENTRY_FILE_NAME
            ));
            crate::node::task_command(module, &process.working_directory, &entry)?
        }
        Entry::Argv(argv) => {
            let Some((program, args)) = argv.split_first().filter(|(p, _)| !p.is_empty()) else {
                return Err("the command is empty".to_owned());
            };
            // A program named by a path (`./bin/migrate`) is the one in the working directory,
            // as whoever typed it means; a bare name (`psql`) is looked up on `PATH`.
            let mut command = if program.contains('/') {
                Command::new(
                    std::path::absolute(process.working_directory.join(program))
                        .map_err(|e| e.to_string())?,
                )
            } else {
                Command::new(program)
            };
            command.args(args);
            command
        }
    };
    command.current_dir(&process.working_directory);

    // Arguments of an enclosing lumo run must not leak into this one's.
    for name in inherited_arg_names() {
        command.env_remove(name);
    }
    let ctx = &process.spec.context;
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
        .env("LUMO_RESULT_FILE", &scratch.result_file)
        .env("LUMO_CONTEXT_FILE", &scratch.context_file);
    for (name, value) in &ctx.args {
        command.env(arg_env_name(name), value);
    }
    // Later settings win: the task's env over lumo's, secrets over both.
    command.envs(&process.spec.env);
    command.envs(&process.spec.secrets);
    Ok(command)
}

/// Spawns `command` as a live task ([`group::spawn_leader`]), retrying briefly on ETXTBSY. A
/// bundle unpacked moments ago can make exec fail with "text file busy" when another thread of
/// this process forked (to start another task) while the entry's file was still open for
/// writing; the fork's copy of that descriptor is closed as soon as it execs, so the condition
/// passes by itself.
async fn spawn_retrying_busy(command: &mut Command) -> io::Result<(Child, LiveTask)> {
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

/// The `LUMO_ARG_*` variables this process was started with (it sets none itself), looked
/// for once rather than in the whole environment at every task's start.
fn inherited_arg_names() -> &'static [std::ffi::OsString] {
    static NAMES: std::sync::OnceLock<Vec<std::ffi::OsString>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("LUMO_ARG_"))
            .collect()
    })
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
        (Entry::Argv(argv), io::ErrorKind::NotFound)
            if argv.first().is_some_and(|p| !p.contains('/')) =>
        {
            "; the program is not on the runner's `PATH`"
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

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// An ended run's in-memory context file is handed to the next run emptied: a shorter
    /// context leaves nothing of the longer one before it, read by path as a task reads it or
    /// on stdin; and a task cannot write to its context through stdin.
    #[test]
    fn a_context_file_handed_on_holds_only_the_new_context() {
        use std::io::{Read, Write};
        let long = vec![b'x'; 10_000];
        let short = br#"{"run":"second"}"#;
        let on_stdin = |file: &InMemoryFile| {
            let mut stdin = file.stdin().unwrap();
            let mut read = Vec::new();
            stdin.read_to_end(&mut read).unwrap();
            assert!(stdin.write_all(b"changed").is_err(), "stdin is writable");
            read
        };
        // Other tests may take the spare file first: then try again.
        for _ in 0..20 {
            let (first_path, first) = in_memory_file(&long).unwrap();
            let inode = std::fs::metadata(&first_path).unwrap().ino();
            assert_eq!(std::fs::read(&first_path).unwrap(), long);
            assert_eq!(on_stdin(&first), long);
            drop(first);
            // Spare, it holds nothing of the context (to whoever opens it by path).
            if let Ok(left) = std::fs::read(&first_path) {
                assert!(!left.contains(&b'x'), "the ended run's context is left");
            }
            let (path, second) = in_memory_file(short).unwrap();
            if std::fs::metadata(&path).unwrap().ino() != inode {
                continue;
            }
            assert_eq!(std::fs::read(&path).unwrap(), short);
            // Its stdin starts at the start again, though the run before read it to its end.
            assert_eq!(on_stdin(&second), short);
            assert_eq!(on_stdin(&second), short);
            drop(second);
            return;
        }
        panic!("the ended run's file was never handed on");
    }
}
