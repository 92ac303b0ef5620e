//! The `local` provider: everything under `.lumo/` in the project, tasks run as local processes
//! by the same runner code that runs them on Lambda. No account, no network.
//!
//! ```text
//! .lumo/lumo.db                 audit trail and environment state (SQLite)
//! .lumo/bundles/<sha256>.zip    content-addressed bundles
//! .lumo/logs/<run-id>.log       full (masked) output of each run
//! .lumo/work/<run-id>/          a run's unpacked bundle, removed when it ends
//! ```

mod locks;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use lumo_runner::executor::{DEFAULT_KILL_GRACE, OutputObserver};
use lumo_runner::{BundleRun, RunnerError};

pub use store::SqliteStore;

use super::records::Timestamp;
use super::{
    Backend, BackendError, BackendResult, BundleStore, Prepare, RunReport, RunRequest, TaskExecutor,
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
}

pub fn open(project: &Project) -> BackendResult<Backend> {
    let layout = LocalLayout::new(&project.lumo_dir());
    for dir in [
        layout.root.clone(),
        layout.bundles(),
        layout.logs(),
        layout.work(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| {
            BackendError::with_source(format!("cannot create `{}`", dir.display()), e)
        })?;
    }
    let store = Arc::new(SqliteStore::open(
        &layout.db(),
        &project.config.project_name,
        &layout.logs(),
        &layout.work(),
    )?);
    Ok(Backend {
        bundles: Arc::new(LocalBundles {
            dir: layout.bundles(),
        }),
        executor: Arc::new(LocalExecutor { layout }),
        audit: store.clone(),
        locks: store,
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
        if path.is_file() {
            return Ok(false);
        }
        std::fs::copy(&bundle.path, &path).map_err(|e| {
            BackendError::with_source(format!("cannot store bundle `{}`", path.display()), e)
        })?;
        Ok(true)
    }
}

/// Runs a task bundle as a local process group.
pub struct LocalExecutor {
    layout: LocalLayout,
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
        let bundle_zip = self
            .layout
            .bundles()
            .join(format!("{}.zip", request.bundle));
        if !bundle_zip.is_file() {
            return Err(BackendError::new(format!(
                "the bundle {} of task `{}` is missing from `{}`",
                request.bundle,
                request.task,
                self.layout.bundles().display()
            ))
            .hint(format!(
                "deploy again (`lumo deploy --env {}`) to rebuild it",
                request.env
            )));
        }
        let log_name = format!("{}.log", request.context.run_id);
        let started_at = Timestamp::now();
        let run = BundleRun {
            bundle_zip,
            sha256: request.bundle.clone(),
            work_root: self.layout.work(),
            context: request.context,
            env: request.env_vars,
            secrets: request.secrets,
            timeout: request.timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            log_file: Some(self.layout.logs().join(&log_name)),
        };
        match lumo_runner::run_bundle(run, output).await {
            Ok(outcome) => Ok(RunReport {
                status: outcome.status,
                exit_code: outcome.exit_code,
                message: outcome.message,
                data: outcome.data,
                data_ref: None,
                output_tail: outcome.output_tail,
                output_bytes: outcome.output_bytes,
                log_ref: Some(format!("logs/{log_name}")),
                started_at: Timestamp::from(outcome.started_at),
                ended_at: Timestamp::from(outcome.ended_at),
            }),
            // A bundle that does not match its hash never runs; that is the run's failure,
            // recorded like any other, not a broken backend.
            Err(e @ RunnerError::HashMismatch { .. }) => {
                Ok(RunReport::not_started(e.to_string(), started_at))
            }
            Err(e) => Err(BackendError::with_source(
                format!("cannot run task `{}`", request.task),
                e,
            )),
        }
    }
}

/// Stops what is left of a run whose `lumo` died: the task's process group (from the pgid file
/// the executor writes; only processes that carry this run's `LUMO_RUN_ID` in their
/// environment, so a recycled pgid never hits a stranger) and its unpacked bundle.
fn stop_orphan(work_dir: &Path, run_id: &str) {
    let run_dir = work_dir.join(run_id);
    let pgid_file = run_dir
        .join("scratch")
        .join(lumo_runner::executor::PGID_FILE_NAME);
    if let Some(pgid) = std::fs::read_to_string(&pgid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        && group_runs(pgid, run_id)
    {
        tracing::info!("stopping process group {pgid} left by abandoned run {run_id}");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if run_dir.is_dir() {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
}

/// Whether some process of group `pgid` was started for run `run_id`.
fn group_runs(pgid: i32, run_id: &str) -> bool {
    let marker = format!("LUMO_RUN_ID={run_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let dir = entry.path();
        let in_group = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) state ppid pgrp ...`: comm may hold spaces, so split after its `)`.
                let rest = &stat[stat.rfind(')')? + 1..];
                rest.split_whitespace().nth(2)?.parse::<i32>().ok()
            })
            == Some(pgid);
        in_group
            && std::fs::read(dir.join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()))
    })
}
