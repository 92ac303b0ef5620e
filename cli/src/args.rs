//! The command line, as clap types only. Behaviour lives in `commands/`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backend::aws::settings::AwsFlags;
use crate::config::Provider;
use crate::flag_values;

#[derive(Debug, Parser)]
#[command(
    name = "lumo",
    version,
    about = "Deployment-lifecycle tasks: bundled, run on every deploy, audited.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path of the config file [default: `lumo.config.js` here or in a parent directory].
    #[arg(long, global = true, env = "LUMO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Run on this provider, whatever the config says.
    #[arg(long, global = true, env = "LUMO_PROVIDER", value_enum)]
    pub provider: Option<Provider>,

    /// Print one JSON document on stdout and nothing else there.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only results and errors.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more: ignored config keys, backend calls, timings.
    #[arg(long, short, global = true)]
    pub verbose: bool,

    /// When to colour the output: `auto` (on a terminal; `NO_COLOR` turns it off,
    /// `FORCE_COLOR`/`CLICOLOR_FORCE` on), `always`, `never`.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: crate::color::ColorChoice,

    /// Who is acting, for the audit trail [default: CI user, AWS caller, git user, OS user].
    #[arg(long, global = true, env = "LUMO_ACTOR")]
    pub actor: Option<String>,

    /// The `aws` provider's own flags, declared with it.
    #[command(flatten)]
    pub aws: AwsFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bundle every task, upload, and run the tasks this deployment calls for.
    Deploy(DeployArgs),
    /// Run one task by hand against an environment, from its deployed bundle.
    Run(RunArgs),
    /// Run one command in an environment as its tasks run (its runner, secrets, lock), recorded.
    #[command(
        after_help = "Examples:\n  lumo exec --env prod -- psql -c 'select count(*) from users'\n  lumo exec --env prod --in migrate -- ./bin/migrate status"
    )]
    Exec(ExecArgs),
    /// List the project's tasks: runOn, timeout, permission.
    Tasks(TasksArgs),
    /// Build the bundles only and show their names, sizes and hashes.
    Build(BuildArgs),
    /// Show the latest runs of an environment or one task.
    History(HistoryArgs),
    /// Print the full output of a run.
    Logs(LogsArgs),
    /// Show an environment's version, lock and latest runs.
    Status(EnvArgs),
    /// Take an environment's lock by hand.
    Lock(LockArgs),
    /// Release an environment's lock.
    Unlock(UnlockArgs),
    /// Scaffold `lumo.config.js` and an example task in the current directory.
    Init(InitArgs),
    /// Print the shell completion script (`source <(lumo completions bash)`).
    Completions(CompletionsArgs),
    /// Remove old logs and unused bundles from `.lumo/`, as `retention` says.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment [default: the config's `environment`].
    #[arg(long, short)]
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Version to record [default: git short SHA (`-dirty` with changes), else a bundle hash].
    #[arg(long, value_name = "V")]
    pub deploy_version: Option<String>,

    /// Only consider these tasks (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "T,..")]
    pub only: Vec<String>,

    /// Show what would run and why, without uploading or running anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Run up to N independent tasks side by side.
    #[arg(long, default_value_t = 1, value_parser = flag_values::concurrency, allow_negative_numbers = true)]
    pub concurrency: u16,

    /// Wait up to this long for the environment's lock (e.g. `30s`, `5m`).
    #[arg(long, value_parser = flag_values::duration, allow_negative_numbers = true, default_value = "0s", value_name = "D")]
    pub wait: Duration,

    /// Also write the task runs as a JUnit XML report to PATH (GitLab, Jenkins).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task to run.
    pub task: String,

    #[command(flatten)]
    pub env: EnvArgs,

    /// An argument for the task, `NAME=VALUE` (repeatable).
    #[arg(long = "arg", value_name = "K=V")]
    pub args: Vec<String>,

    /// Skip the task's confirmation prompt.
    #[arg(long, short)]
    pub yes: bool,

    /// Bundle the task from the working tree and run that instead of the deployed bundle
    /// (recorded with its hash, as not deployed).
    #[arg(long)]
    pub from_source: bool,

    /// Show whether the run would be allowed (and the error if not), its bundle and args,
    /// without running or recording anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Wait up to this long for the environment's lock.
    #[arg(long, value_parser = flag_values::duration, allow_negative_numbers = true, default_value = "0s", value_name = "D")]
    pub wait: Duration,

    /// Also write the task runs as a JUnit XML report to PATH (GitLab, Jenkins).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Run in this task's deployed bundle (its files and assets, its `env`) instead of an
    /// empty directory.
    #[arg(long = "in", value_name = "TASK")]
    pub in_task: Option<String>,

    /// Stop the command after this long (1s to 15m) [default: 5m, a task's default].
    #[arg(long, value_parser = flag_values::duration, allow_negative_numbers = true, value_name = "D")]
    pub timeout: Option<Duration>,

    /// Skip the confirmation prompt.
    #[arg(long, short)]
    pub yes: bool,

    /// Wait up to this long for the environment's lock.
    #[arg(long, value_parser = flag_values::duration, allow_negative_numbers = true, default_value = "0s", value_name = "D")]
    pub wait: Duration,

    /// Also write the command's run as a JUnit XML report to PATH (GitLab, Jenkins).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,

    /// The program and its arguments, after `--` (run without a shell; `sh -c '…'` for one).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Show the tasks as they exist in this environment.
    #[arg(long, short)]
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Also copy each bundle to `DIR/<task>.zip`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Only runs of this task.
    #[arg(long)]
    pub task: Option<String>,

    /// How many runs, newest first.
    #[arg(long, default_value_t = 20, value_parser = flag_values::run_limit, allow_negative_numbers = true)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id (from `lumo history`), or any start of it that only one run has.
    pub run_id: String,

    /// Look the run up in this environment only (on `aws`, how a shortened id finds a run of
    /// an environment the config does not name).
    #[arg(long, short)]
    pub env: Option<String>,

    /// Only the last N lines of the output.
    #[arg(long, value_name = "N", value_parser = flag_values::lines, allow_negative_numbers = true)]
    pub tail: Option<usize>,

    /// Keep showing the output of a run still going, until it ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Why the environment is locked (shown to whoever is kept waiting).
    #[arg(long)]
    pub reason: String,

    /// Wait up to this long for the lock.
    #[arg(long, value_parser = flag_values::duration, allow_negative_numbers = true, default_value = "0s", value_name = "D")]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// Release a lock someone else holds (recorded).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Project name [default: the directory's name].
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `lumo completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}
