//! One module per subcommand. Each takes its parsed arguments and the shared [`Context`],
//! calls the core (the deployment's lifecycle, the manual run, the stores), and returns an
//! [`Outcome`]: what to print, printed once by `main`, and how lumo exits. Progress goes to the
//! Printer as it happens; every failure is a [`CliError`] carrying its own exit code.

pub mod build;
pub mod completions;
pub mod deploy;
pub mod exec;
pub mod history;
pub mod init;
pub mod lock;
pub mod logs;
pub mod prune;
pub mod run;
pub mod status;
pub mod tasks;

use std::fmt::Display;
use std::sync::Arc;

use serde::Serialize;

use crate::args::{Command, GlobalArgs};
use crate::backend::{self, Backend, ConnectOptions};
use crate::bundle::{Build, BuildTarget};
use crate::config::Provider;
use crate::error::CliError;
use crate::operation::Operation;
use crate::output::{Printer, Report};
use crate::project::Project;
use crate::stop::{StopReason, StopSignal};

pub type CommandResult = Result<Outcome, CliError>;

/// Whether `command` gets tokio's two worker threads, so that a task's output is pumped and
/// its timeout and the environment's lock watched while the command's own future hashes,
/// zips or writes to the store. Every other command runs on the main thread alone and starts
/// no threads (docs/startup.md: a tenth of a millisecond or more of every such start).
///
/// `deploy` runs on one thread too: its long blocking work (bundling) goes to a thread of
/// its own ([`blocking`]), and what is left between its runs (a record written, a kept tree
/// checked) takes microseconds, less than handing each run between threads cost a deploy of
/// many tasks (docs/speed.md).
pub fn needs_worker_threads(command: &Command) -> bool {
    match command {
        Command::Run(_) | Command::Exec(_) | Command::Build(_) => true,
        Command::Deploy(_)
        | Command::Tasks(_)
        | Command::History(_)
        | Command::Logs(_)
        | Command::Status(_)
        | Command::Lock(_)
        | Command::Unlock(_)
        | Command::Init(_)
        | Command::Completions(_)
        | Command::Prune(_) => false,
    }
}

/// Runs `work` (bundling: seconds of blocking work) on a thread of tokio's blocking pool and
/// waits for it without holding up the runtime, which meanwhile notices Ctrl-C/SIGTERM.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CliError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        CliError::new(
            crate::error::ExitKind::Backend,
            format!("a thread of lumo's failed: {e}"),
        )
    })
}

/// What a command that did its work hands back to `main`.
pub struct Outcome {
    pub output: Output,
    pub status: ExitStatus,
}

/// What a command prints on stdout, once, when it is done.
pub enum Output {
    /// Text for a person, or one JSON document with `--json`.
    Report(Box<dyn Report>),
    /// Bytes as they are (a run's log, which need not be UTF-8).
    Raw(Vec<u8>),
    /// Bytes as they are read: a run's log can be larger than lumo should hold in memory.
    Stream(crate::backend::LogReader),
    Nothing,
}

/// How lumo exits after a command that did its work (uv's `ExitStatus`). Anything else is a
/// [`CliError`] with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// A task failed, timed out or was abandoned: exit code 1.
    TaskFailed,
    /// Cut short; the report is printed, then the stop as an error with its exit code.
    Stopped(StopReason),
}

impl Outcome {
    /// A report, on success.
    pub fn report(report: impl Serialize + Display + 'static) -> Outcome {
        Outcome {
            output: Output::Report(Box::new(report)),
            status: ExitStatus::Success,
        }
    }

    pub fn raw(bytes: Vec<u8>) -> Outcome {
        Outcome {
            output: Output::Raw(bytes),
            status: ExitStatus::Success,
        }
    }

    pub fn stream(reader: crate::backend::LogReader) -> Outcome {
        Outcome {
            output: Output::Stream(reader),
            status: ExitStatus::Success,
        }
    }

    /// Nothing on stdout (what there was to say went to stderr), on success.
    pub fn nothing() -> Outcome {
        Outcome {
            output: Output::Nothing,
            status: ExitStatus::Success,
        }
    }

    /// This outcome for work that `succeeded` or not, or was stopped before it ended.
    pub fn ended(mut self, succeeded: bool, stopped: Option<StopReason>) -> Outcome {
        self.status = match (stopped, succeeded) {
            (Some(reason), _) => ExitStatus::Stopped(reason),
            (None, true) => ExitStatus::Success,
            (None, false) => ExitStatus::TaskFailed,
        };
        self
    }
}

pub struct Context {
    pub global: GlobalArgs,
    pub printer: Arc<Printer>,
    /// Pulled on SIGINT/SIGTERM, or when a writer loses its lock.
    pub stop: StopSignal,
}

impl Context {
    /// Loads the project and says which config keys were accepted only for Lumo compatibility.
    pub fn project(&self) -> Result<Project, CliError> {
        let project = Project::load(self.global.config.as_deref(), self.global.provider)?;
        for key in &project.config.ignored_keys {
            self.printer.note(format!(
                "`{key}` is a Lumo Framework setting lumo does not use; ignored"
            ));
        }
        for file in &project.not_tasks {
            self.printer.note(file.note());
        }
        Ok(project)
    }

    /// Opens the project's provider with the global flags.
    pub async fn connect(&self, project: &Project) -> Result<Backend, CliError> {
        self.connect_with(project, false).await
    }

    /// Opens the project's provider for a command that only reads: nothing is created.
    pub async fn connect_read_only(&self, project: &Project) -> Result<Backend, CliError> {
        self.connect_with(project, true).await
    }

    /// Whether the project's provider can be opened with the global flags: what its config
    /// needs, and on `aws` a named profile that exists. Before a build, so a bad input wastes
    /// none and leaves nothing behind.
    pub async fn backend_ready(&self, project: &Project) -> Result<(), CliError> {
        project.backend_ready()?;
        if let (Provider::Aws, Some(profile)) = (project.config.provider, &self.global.aws.profile)
        {
            backend::aws::check_named_profile(profile).await?;
        }
        Ok(())
    }

    async fn connect_with(&self, project: &Project, read_only: bool) -> Result<Backend, CliError> {
        self.backend_ready(project).await?;
        if !read_only {
            self.warn_of_an_empty_store_in_ci(project);
        }
        let options = ConnectOptions {
            read_only,
            aws: self.global.aws.clone(),
            needs_identity: crate::actor::from_flag_or_ci(self.global.actor.as_deref()).is_none(),
        };
        Ok(backend::connect(project, &options).await?)
    }

    /// A CI job starts from a fresh checkout, so on `local` its `.lumo/` is new every time
    /// unless it is cached: each deploy is silently a first deploy (every `runOn: deploy` task
    /// runs again) and the history is lost with the job. Said once, where the store is opened.
    fn warn_of_an_empty_store_in_ci(&self, project: &Project) {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        let layout = backend::local::LocalLayout::new(&project.lumo_dir());
        if !in_ci || project.config.provider != Provider::Local || layout.db().exists() {
            return;
        }
        self.printer.warn(format!(
            "CI=true and `{}` holds no history yet: on the `local` provider each CI job starts \
             from an empty `.lumo/` unless it is kept, so every deploy is a first deploy (tasks \
             that run on `deploy` run again) and the audit trail ends with the job; use the `aws` \
             provider (`provider: 'aws'`, or `--provider aws`/`LUMO_PROVIDER=aws`), or cache \
             `.lumo/` between jobs",
            project.lumo_dir().display()
        ));
    }

    /// The operation of this command's actor on `env` of `project`, through the project's
    /// provider opened for writing.
    pub async fn operation(
        &self,
        project: &Arc<Project>,
        env: &str,
    ) -> Result<Operation, CliError> {
        let backend = self.connect(project).await?;
        let actor = self.actor(project, &backend);
        Ok(Operation {
            project: Arc::clone(project),
            env: env.to_string(),
            actor,
            backend,
            progress: Arc::clone(&self.printer) as _,
            stop: self.stop.clone(),
        })
    }

    /// How the project's Rust crate tasks are built: for its provider, cargo quiet with
    /// `--quiet`.
    pub fn build(&self, project: &Project) -> Build {
        Build {
            target: build_target(project),
            quiet: self.global.quiet,
        }
    }

    /// Who is acting, for the audit trail: flag or CI, else the backend's caller identity, else
    /// the git or OS user.
    pub fn actor(&self, project: &Project, backend: &Backend) -> String {
        crate::actor::from_flag_or_ci(self.global.actor.as_deref())
            .or_else(|| backend.caller.clone())
            .unwrap_or_else(|| crate::actor::from_machine(project.root()))
    }
}

/// What Rust crate tasks are compiled for on the project's provider.
fn build_target(project: &Project) -> BuildTarget {
    match project.config.provider {
        Provider::Local => BuildTarget::Host,
        Provider::Aws => BuildTarget::Lambda(
            project
                .config
                .aws
                .architecture
                .unwrap_or(crate::config::Architecture::Arm64),
        ),
    }
}
