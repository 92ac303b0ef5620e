//! The `local` provider: everything under `.lumo/` in the project, tasks run as local processes
//! by the same runner code that runs them on Lambda. No account, no network.
//!
//! ```text
//! .lumo/lumo.db                 audit trail and environment state (SQLite)
//! .lumo/bundles/<sha256>.zip    content-addressed bundles
//! .lumo/logs/<run-id>.log       full (masked) output of each run, created at its first output (none: it printed nothing)
//! .lumo/work/<run-id>.*         a run's scratch files (in <run-id>/ with its unpacked bundle when not kept), removed when it ends
//! .lumo/unpacked/<sha256>/      unpacked bundles kept between runs, reused only when untouched
//! .lumo/bundle-cache.json       which bundle each task's unchanged inputs built (stat cache)
//! ```

mod locks;
pub mod prune;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use lumo_runner::executor::{DEFAULT_KILL_GRACE, ExecError, OutputObserver};
use lumo_runner::unpacked::UnpackCache;
use lumo_runner::{BundleFile, BundleRun, RunnerError};

pub use store::SqliteStore;

use super::{
    Backend, BackendError, BackendErrorKind, BackendResult, BundleStore, Orphans, Prepare,
    RunReport, RunRequest, TaskExecutor,
};
use crate::bundle::BuiltBundle;
use crate::project::Project;

/// The directories of a project's `.lumo/`.
#[derive(Debug, Clone)]
pub struct LocalLayout {
    pub root: PathBuf,
}

impl LocalLayout {
    pub fn new(lumo_dir: &Path) -> Self {
        LocalLayout {
            root: lumo_dir.to_path_buf(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("lumo.db")
    }
    pub fn bundles(&self) -> PathBuf {
        self.root.join("bundles")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn unpacked(&self) -> PathBuf {
        self.root.join("unpacked")
    }
}

pub fn open(project: &Project, read_only: bool) -> BackendResult<Backend> {
    let layout = LocalLayout::new(&project.lumo_dir());
    let db = if read_only && !layout.db().exists() {
        // Nothing recorded yet reads the same as an empty store, without creating `.lumo/`.
        PathBuf::from(":memory:")
    } else {
        for dir in [
            layout.root.clone(),
            layout.bundles(),
            layout.logs(),
            layout.work(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                BackendError::from_io(format!("cannot create `{}`", dir.display()), e)
            })?;
        }
        layout.db()
    };
    let store = Arc::new(SqliteStore::open(
        &db,
        &project.config.project_name,
        &layout.logs(),
    )?);
    let executor = Arc::new(LocalExecutor {
        unpack_cache: UnpackCache::new(layout.unpacked()),
        layout,
    });
    Ok(Backend {
        bundles: Arc::new(LocalBundles {
            dir: executor.layout.bundles(),
        }),
        executor: executor.clone(),
        audit: store.clone(),
        locks: store,
        orphans: executor,
        caller: None,
    })
}

/// Bundles are built straight into `.lumo/bundles/`, so storing one is checking it is there.
pub struct LocalBundles {
    dir: PathBuf,
}

#[async_trait]
impl BundleStore for LocalBundles {
    async fn put(&self, bundle: &BuiltBundle) -> BackendResult<bool> {
        let path = self.dir.join(format!("{}.zip", bundle.sha256));
        // A deploy builds into this very store: the bundle is where it belongs already.
        if bundle.path == path || path.is_file() {
            return Ok(false);
        }
        std::fs::copy(&bundle.path, &path).map_err(|e| {
            BackendError::from_io(format!("cannot store bundle `{}`", path.display()), e)
        })?;
        Ok(true)
    }
}

/// Runs a task bundle as a local process group.
pub struct LocalExecutor {
    layout: LocalLayout,
    /// One for all of this process's runs, so that a deploy evicts kept trees now and then,
    /// not after every task.
    unpack_cache: UnpackCache,
}

#[async_trait]
impl TaskExecutor for LocalExecutor {
    async fn prepare(&self, _env: &str, _mode: Prepare) -> BackendResult<()> {
        Ok(())
    }

    async fn run(
        &self,
        request: RunRequest,
        output: &mut dyn OutputObserver,
    ) -> BackendResult<RunReport> {
        let RunRequest { bundle, spec, stop } = request;
        let bundle = match bundle {
            Some(hash) => {
                let zip = self.layout.bundles().join(format!("{hash}.zip"));
                let stat = std::fs::metadata(&zip).ok().filter(|m| m.is_file());
                if stat.is_none() {
                    return Err(BackendError::new(format!(
                        "the bundle {hash} of task `{}` is missing from `{}`",
                        spec.task(),
                        self.layout.bundles().display()
                    ))
                    .of_kind(BackendErrorKind::NotFound)
                    .hint(format!(
                        "deploy again (`lumo deploy --env {}`) to rebuild it",
                        spec.environment()
                    )));
                }
                Some(BundleFile { zip, hash, stat })
            }
            None => None,
        };
        let task = spec.task().to_owned();
        let log_name = log_file_name(spec.run_id());
        let started_at = SystemTime::now();
        let run = BundleRun {
            spec,
            bundle,
            work_root: self.layout.work(),
            kill_grace: DEFAULT_KILL_GRACE,
            log_file: Some(self.layout.logs().join(&log_name)),
            // On a stop the executor stops the task's group as on a timeout (SIGTERM, grace,
            // SIGKILL), keeping its output.
            stop: Some(stop.flag()),
            unpack_cache: Some(self.unpack_cache.clone()),
        };
        match lumo_runner::run_bundle(run, output).await {
            Ok(outcome) => Ok(RunReport {
                outcome,
                data_ref: None,
                log_ref: Some(format!("logs/{log_name}")),
            }
            .after_stop(
                stop.reason(),
                &format!(
                    "the task got SIGTERM (then SIGKILL after {})",
                    humantime::format_duration(DEFAULT_KILL_GRACE)
                ),
            )),
            // A bundle that does not match its hash never runs; that is the run's failure,
            // recorded like any other, not a broken backend.
            // The task ran to its end and only its log is incomplete (a full disk): the run's
            // truth is its outcome, recorded as it was with the storage failure named, as the
            // `aws` runner does when its log cannot be kept.
            Err(RunnerError::Exec(ExecError::WriteLog {
                path,
                source,
                outcome,
            })) => {
                tracing::warn!(
                    "task `{task}`: could not write the log `{}`: {source}",
                    path.display()
                );
                // What was written is the log's start without its end (where the error is), and
                // nothing would tell a reader it stops short. Without the file, `lumo logs` says
                // the full output is not stored and shows the tail the record keeps, as on
                // `aws` when the upload fails; and the space goes back to the full disk.
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::debug!("could not remove the partial log `{}`: {e}", path.display());
                }
                Ok(RunReport {
                    outcome: *outcome,
                    data_ref: None,
                    log_ref: Some(format!("logs/{log_name}")),
                }
                .after_stop(
                    stop.reason(),
                    &format!(
                        "the task got SIGTERM (then SIGKILL after {})",
                        humantime::format_duration(DEFAULT_KILL_GRACE)
                    ),
                )
                .with_storage_failure(&format!("the log could not be stored: {source}")))
            }
            Err(e @ RunnerError::HashMismatch { .. }) => {
                Ok(RunReport::not_started(e.to_string(), started_at))
            }
            Err(e) => Err(BackendError::with_source(
                format!("cannot run task `{task}`"),
                e,
            )),
        }
    }
}

/// The kind of a SQLite failure: a file that is not a database (or a damaged one) or a row
/// that does not read back is corrupt; a store the user may not write is denied.
pub(super) fn sqlite_kind(e: &rusqlite::Error) -> BackendErrorKind {
    use rusqlite::ErrorCode;
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => BackendErrorKind::Corrupt,
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => BackendErrorKind::Denied,
            _ => BackendErrorKind::Other,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => BackendErrorKind::Corrupt,
        _ => BackendErrorKind::Other,
    }
}

/// The file under `.lumo/logs/` a run's output is written to as it arrives.
pub(super) fn log_file_name(run_id: &str) -> String {
    format!("{run_id}.log")
}

/// A run's processes outlive a `lumo` killed with SIGKILL (they are in their own process
/// group); only the run id in their environment still ties them to it.
#[async_trait]
impl Orphans for LocalExecutor {
    async fn stop(&self, _env: &str, run_ids: &[String], _reason: &str) -> BackendResult<()> {
        for run_id in run_ids {
            lumo_runner::executor::kill_processes_of_run(run_id);
            // Its run directory or scratch files, whichever it had.
            let _ = lumo_runner::remove_run_files(&self.layout.work(), run_id);
        }
        Ok(())
    }
}
