//! One module per subcommand. Each `run` takes its parsed arguments and the shared
//! [`Context`], prints its result through the Printer, and returns the exit code (0, or 1 when
//! a task failed); every other failure is a [`CliError`] carrying its own exit code.

pub mod build;
pub mod deploy;
pub mod history;
pub mod init;
pub mod lock;
pub mod logs;
pub mod run;
pub mod status;
pub mod tasks;

use std::sync::Arc;

use crate::args::GlobalArgs;
use crate::backend::{self, Backend, ConnectOptions};
use crate::bundle::{Build, BuildTarget};
use crate::config::Provider;
use crate::error::CliError;
use crate::output::Printer;
use crate::project::Project;
use crate::stop::StopSignal;

pub type CommandResult = Result<i32, CliError>;

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

    async fn connect_with(&self, project: &Project, read_only: bool) -> Result<Backend, CliError> {
        project.backend_ready()?;
        let options = ConnectOptions {
            read_only,
            profile: self.global.profile.clone(),
            region: self.global.region.clone(),
            runner: self.global.runner.clone(),
            needs_identity: crate::actor::from_flag_or_ci(self.global.actor.as_deref()).is_none(),
        };
        backend::connect(project, &options).await
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
