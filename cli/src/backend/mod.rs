//! The boundary between lumo's deploy logic and where things happen (PRODUCT.md §1: two
//! providers, one behaviour). The traits are narrow, shaped by what a deploy needs: store a
//! bundle, run a task, record and query the audit trail, hold an environment's lock. `local`
//! implements them on the embedded store and local processes, `aws` on S3, Lambda and DynamoDB.
//! One conformance suite (`conformance.rs`) runs against each.

pub mod aws;
pub mod local;
pub mod records;
mod task_run;

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use lumo_runner::RunId;
use lumo_runner::executor::OutputObserver;
use serde::Serialize;

use crate::bundle::BuiltBundle;
use crate::config::{ConfigError, ConfigProblem, Provider};
use crate::project::Project;
use records::{AuditEvent, Deployment, EnvState, LockHolder, TaskRun, Timestamp};
pub use task_run::{RunReport, RunRequest};

/// What kind of trouble a [`BackendError`] is, so callers and tests can tell "not there" from
/// "not allowed" from "cannot get there" without reading messages. Every kind but
/// [`Invalid`](Self::Invalid) is exit code 4; a task that fails is not a `BackendError` at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendErrorKind {
    /// What the backend needs is not there: a table, a bucket, a bundle, the runner function.
    NotFound,
    /// The provider refused: missing permissions, bad or expired credentials, a read-only path.
    Denied,
    /// The provider could not be reached (network, endpoint, timeout).
    Unreachable,
    /// Another writer changed the same thing first.
    Conflict,
    /// What is stored cannot be read back: a record of an unexpected shape, a broken store.
    Corrupt,
    /// The project's settings cannot open this backend (a missing `aws.bucket`, no region): the
    /// same class of error as an invalid config, exit code 2.
    Invalid,
    /// Anything else.
    Other,
}

/// Anything that went wrong in the backend itself (unreachable, denied, missing table, a
/// corrupt store): exit code 4, or 2 for settings that cannot open the backend. A task that
/// fails is not a `BackendError`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// With [`BackendErrorKind::Invalid`] from the config: each problem with its key path.
    pub problems: Vec<ConfigProblem>,
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BackendError {
    /// An error of kind [`Other`](BackendErrorKind::Other); see [`of_kind`](Self::of_kind).
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Other,
            message: message.into(),
            hint: None,
            problems: Vec::new(),
            source: None,
        }
    }

    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        BackendError {
            source: Some(Box::new(source)),
            ..BackendError::new(message)
        }
    }

    /// A filesystem error, of the kind its `io::ErrorKind` says.
    pub fn from_io(message: impl Into<String>, source: std::io::Error) -> Self {
        let kind = match source.kind() {
            std::io::ErrorKind::NotFound => BackendErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                BackendErrorKind::Denied
            }
            _ => BackendErrorKind::Other,
        };
        BackendError::with_source(message, source).of_kind(kind)
    }

    /// Settings that cannot open the backend (exit code 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        BackendError::new(message).of_kind(BackendErrorKind::Invalid)
    }

    pub fn of_kind(mut self, kind: BackendErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A config that cannot open the backend: its message and problems as they are, so the user
/// reads the same `lumo.config.js` error whether the config load or the backend found it.
impl From<ConfigError> for BackendError {
    fn from(e: ConfigError) -> Self {
        let problems = match &e {
            ConfigError::Invalid { problems, .. } => problems.clone(),
            _ => Vec::new(),
        };
        BackendError {
            problems,
            ..BackendError::invalid(e.to_string())
        }
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// A run's stored output, read as it is copied out.
pub type LogReader = Box<dyn std::io::Read + Send>;

/// Where bundles live so the executor can fetch them.
///
/// # Contract
/// - `put` is idempotent: a bundle already stored under its sha256 is left alone and `put`
///   returns `false`; bundles are never overwritten or deleted.
#[async_trait]
pub trait BundleStore: Send + Sync {
    /// Stores the bundle unless its hash is already there; returns whether it was uploaded.
    async fn put(&self, bundle: &BuiltBundle) -> BackendResult<bool>;
}

/// What [`TaskExecutor::prepare`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// A deployment: create or update the environment's runner as needed.
    Deploy,
    /// A manual run: use the runner as deployed.
    Run,
}

/// Runs task bundles.
///
/// # Contract
/// - `prepare` makes the environment ready to run tasks and is cheap when nothing changed;
///   call it before `run`. With [`Prepare::Deploy`] it may create or update what runs tasks
///   (the runner function on `aws`); with [`Prepare::Run`] it only checks it is there, so a
///   manual run needs no permission to change infrastructure.
/// - `run` runs one task to its end under PRODUCT.md §4 and streams its (masked) output to
///   `output`. When `request.stop` is pulled it stops the task and returns promptly with a
///   `failed` report saying so ([`RunReport::stopped`]). A task that fails, times out or cannot start is an `Ok` report; `Err` means the
///   backend could not run it at all.
#[async_trait]
pub trait TaskExecutor: Send + Sync {
    async fn prepare(&self, env: &str, mode: Prepare) -> BackendResult<()>;
    async fn run(
        &self,
        request: RunRequest,
        output: &mut dyn OutputObserver,
    ) -> BackendResult<RunReport>;
}

/// The audit trail and each environment's state.
///
/// # Contract
/// - Records are written before the thing they record starts (`running`) and updated when it
///   ends; an update replaces the whole record, unless another writer has marked it
///   `abandoned` meanwhile ([`abandon_unfinished`](Self::abandon_unfinished)): then the finish
///   writes nothing at all (no state moves either) and returns `false`. A writer that lost its
///   lock cannot overwrite the verdict of the one that took over.
/// - `finish_deployment` of a `succeeded` deployment moves the environment's version and
///   bundles in the same atomic write; any other status leaves the environment as it was.
/// - `finish_run` of a `succeeded` run records its bundle as the task's last success in the
///   same atomic write.
/// - Queries return newest first and never scan the whole store.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn env_state(&self, env: &str) -> BackendResult<EnvState>;
    async fn start_deployment(&self, deployment: &Deployment) -> BackendResult<()>;
    async fn finish_deployment(&self, deployment: &Deployment) -> BackendResult<bool>;
    async fn start_run(&self, run: &TaskRun) -> BackendResult<()>;
    async fn finish_run(&self, run: &TaskRun) -> BackendResult<bool>;
    /// [`finish_run`](Self::finish_run) of `finished`, then [`start_run`](Self::start_run) of
    /// `next`, which is started whatever became of `finished`'s record: where a deploy's next
    /// run follows at once, a store that can writes both at once (the local store: one
    /// transaction). Returns what `finish_run` returns. On an error `next` is not recorded as
    /// started (the local store then wrote neither).
    async fn finish_run_and_start(
        &self,
        finished: &TaskRun,
        next: &TaskRun,
    ) -> BackendResult<bool> {
        let written = self.finish_run(finished).await?;
        self.start_run(next).await?;
        Ok(written)
    }
    /// The latest `limit` runs of `env`, `exec`s included; with `task`, that task's own runs
    /// only (not the `exec`s run in its bundle, which are no run of the task).
    async fn runs(&self, env: &str, task: Option<&str>, limit: u32) -> BackendResult<Vec<TaskRun>>;
    async fn run(&self, id: &RunId) -> BackendResult<Option<TaskRun>>;
    /// The runs of this project whose id starts with `prefix`, in id order, at most `limit`:
    /// how a user's shortened run id (`lumo logs 01KBQZ6N`) is found.
    ///
    /// # Contract
    /// - `prefix` is upper-case Crockford base32 (a run id's alphabet), shorter than a run id;
    ///   only this project's runs match.
    /// - With `env`, only that environment's runs match, on every provider.
    /// - Looked up through an index, never by scanning the store. Without `env`: on `local` the
    ///   runs of every environment; on `aws`, whose table is keyed by environment, the runs of
    ///   the environments the config names (one Query each), and an
    ///   [`Invalid`](BackendErrorKind::Invalid) error saying to give the whole run id when it
    ///   names none. [`run`](Self::run) finds a whole id in any environment on both.
    async fn runs_by_id_prefix(
        &self,
        prefix: &str,
        env: Option<&str>,
        limit: u32,
    ) -> BackendResult<Vec<TaskRun>>;
    async fn deployments(&self, env: &str, limit: u32) -> BackendResult<Vec<Deployment>>;
    /// The full output of a run, if it was stored.
    async fn read_log(&self, run: &TaskRun) -> BackendResult<Option<Vec<u8>>>;
    /// [`AuditStore::read_log`] as a reader, for output too large to hold (`lumo logs` of a
    /// run that printed gigabytes). Reads the whole log first unless the store overrides it.
    async fn open_log(&self, run: &TaskRun) -> BackendResult<Option<LogReader>> {
        Ok(self
            .read_log(run)
            .await?
            .map(|bytes| Box::new(std::io::Cursor::new(bytes)) as LogReader))
    }
    /// Marks every run and deployment of `env` still `running` as `abandoned` (ended now, with
    /// `message`), returning their ids. Only called by the lock's holder, for whom any such
    /// record is an orphan of a writer that died; it only writes records: stopping what such
    /// a run left going is [`Orphans::stop`], and [`Backend::abandon_unfinished`] does both.
    async fn abandon_unfinished(&self, env: &str, message: &str) -> BackendResult<Vec<String>>;
    async fn record_event(&self, event: &AuditEvent) -> BackendResult<()>;
    /// The latest `limit` events of `env`, newest first.
    async fn events(&self, env: &str, limit: u32) -> BackendResult<Vec<AuditEvent>>;
}

/// The two locks of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockSlot {
    /// Held by every deploy and manual run while it works, with a lease kept alive by a
    /// heartbeat: one writer per environment.
    Writer,
    /// Taken by hand (`lumo lock`): keeps everyone but its holder out until `lumo unlock`.
    Manual,
}

/// The outcome of [`EnvLocks::acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum Acquired {
    /// Taken; `displaced` is a previous holder whose lease had run out (or whose process is
    /// gone), whose unfinished work is now orphaned.
    Taken { displaced: Option<LockHolder> },
    /// Someone else holds it.
    Held(LockHolder),
}

/// Both locks of an environment as they stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LockState {
    pub writer: Option<LockHolder>,
    pub manual: Option<LockHolder>,
}

/// One writer per environment (PRODUCT.md §6).
///
/// # Contract
/// - `acquire(Writer)` succeeds only when no live writer holds the environment and no manual
///   lock of another actor does; `acquire(Manual)` only when no live writer holds it and no
///   manual lock of another actor does (the same actor re-locking updates the reason). Each
///   check-and-take is one atomic, conditional write: two racing writers never both win.
/// - A writer whose lease passed is not live; on `local` neither is one whose process is gone.
/// - `renew` extends a writer lease only for the token that holds it (`false` = lost).
/// - `release` with a token releases only that holder's lock; with `None` (forced) releases
///   whoever holds the slot and returns them.
#[async_trait]
pub trait EnvLocks: Send + Sync {
    async fn acquire(
        &self,
        env: &str,
        slot: LockSlot,
        holder: &LockHolder,
    ) -> BackendResult<Acquired>;
    async fn renew(&self, env: &str, token: &str, expires_at: Timestamp) -> BackendResult<bool>;
    async fn release(
        &self,
        env: &str,
        slot: LockSlot,
        token: Option<&str>,
    ) -> BackendResult<Option<LockHolder>>;
    async fn current(&self, env: &str) -> BackendResult<LockState>;
}

/// What a writer that died left running.
///
/// # Contract
/// - `stop` is called by the holder of the environment's writer lock, for runs it has just
///   marked `abandoned` (their writer's lease is gone, so nobody else will end them). It asks
///   whatever may still be running each task to stop, and removes what a run keeps only while
///   it runs; records are not touched.
/// - It is best effort and idempotent: a run that already ended, or an id with nothing left
///   behind, is no error; `Err` means the provider could not be asked at all.
/// - `local`: every process carrying the run's `LUMO_RUN_ID` is killed with its process group
///   (the writer that would have stopped them is dead), and `.lumo/work/<run-id>/` is removed.
/// - `aws`: the run's cancel object (`<project>/logs/<run-id>.cancel`, the one a Ctrl-C writes)
///   is written; a runner still going finds it within a second and stops its task as on a stop
///   (SIGTERM, grace, SIGKILL), keeping its log.
#[async_trait]
pub trait Orphans: Send + Sync {
    async fn stop(&self, env: &str, run_ids: &[String], reason: &str) -> BackendResult<()>;
}

/// One provider's implementations of every trait.
#[derive(Clone)]
pub struct Backend {
    pub bundles: Arc<dyn BundleStore>,
    pub executor: Arc<dyn TaskExecutor>,
    pub audit: Arc<dyn AuditStore>,
    pub locks: Arc<dyn EnvLocks>,
    pub orphans: Arc<dyn Orphans>,
    /// Who the backend says we are (the AWS caller's ARN), when asked for.
    pub caller: Option<String>,
}

impl Backend {
    /// Cleans up after a writer that died, for the new holder of `env`'s writer lock: marks
    /// its unfinished runs and deployments `abandoned` ([`AuditStore::abandon_unfinished`],
    /// returning their ids), then stops what those runs left going ([`Orphans::stop`]).
    ///
    /// # Contract
    /// - Only the writer lock's holder calls it; every record of `env` still `running` is an
    ///   orphan then.
    /// - The records are the verdict: once they are written, a failure to stop an orphan is
    ///   logged, not returned (the orphan still ends at its own timeout).
    pub async fn abandon_unfinished(&self, env: &str, message: &str) -> BackendResult<Vec<String>> {
        let abandoned = self.audit.abandon_unfinished(env, message).await?;
        let mut runs = Vec::new();
        for id in &abandoned {
            // Deployments run nothing themselves; only runs are stopped. When the record
            // cannot be read, stopping is the safe guess.
            // Every run id parses; what does not is no run of ours to stop.
            let Ok(run_id) = RunId::parse(id) else {
                continue;
            };
            if !matches!(self.audit.run(&run_id).await, Ok(None)) {
                runs.push(id.clone());
            }
        }
        if !runs.is_empty()
            && let Err(e) = self.orphans.stop(env, &runs, message).await
        {
            tracing::warn!(
                "`{env}`: cannot stop the abandoned runs {}: {e}",
                runs.join(", ")
            );
        }
        Ok(abandoned)
    }
}

/// What opening a provider may need beyond the project.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The `aws` provider's flags (`--profile`, `--region`, `--runner`).
    pub aws: aws::settings::AwsFlags,
    /// Look up the caller's identity for the audit trail (when no actor was given).
    pub needs_identity: bool,
    /// The command only reads (`history`, `status`, `deploy --dry-run`): a `local` project
    /// with no store yet reads an empty one, and nothing is created on disk.
    pub read_only: bool,
}

/// Whether the provider can say who is calling ([`Backend::caller`]: the AWS caller's ARN), so
/// opening it is worth it just to name the actor.
pub fn identifies_caller(provider: Provider) -> bool {
    match provider {
        Provider::Local => false,
        Provider::Aws => true,
    }
}

/// Opens the project's provider.
pub async fn connect(project: &Project, options: &ConnectOptions) -> BackendResult<Backend> {
    match project.config.provider {
        Provider::Local => local::open(project, options.read_only),
        Provider::Aws => aws::open(project, options).await,
    }
}
