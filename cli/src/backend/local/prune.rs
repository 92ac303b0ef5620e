//! Retention on `local` (`lumo prune`): `.lumo/` gains a log per run and a bundle per changed
//! task, for ever, unless something removes what is no longer needed. What is kept, and why:
//!
//! - the log of each of the newest `retention.runs` runs of an environment that is younger
//!   than `retention.days`, and of every run still `running`, whatever its age;
//! - every bundle the current deployment of any environment uses (`lumo run` runs it), every
//!   bundle a kept run ran, each task's last successful bundle, and every bundle written in the
//!   last hour (a deploy may have built it and not recorded it yet); while a deployment is
//!   running no bundle is removed at all;
//! - history rows: all of them. A pruned run's record stays, and `lumo logs` says its log is
//!   not stored; the table grows by a few hundred bytes per run, the logs by their output.
//!
//! Planning reads the store and the directories and changes nothing, so `--dry-run` is the
//! plan alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rusqlite::OpenFlags;
use serde::Serialize;

use super::LocalLayout;
use crate::backend::{BackendError, BackendErrorKind, BackendResult};
use crate::config::retention::Retention;

/// A bundle younger than this is never removed: a deploy may have built it and not yet
/// recorded its deployment.
const FRESH_BUNDLE: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// One file to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// Relative to `.lumo/` (`logs/01J….log`, `bundles/<sha256>.zip`).
    pub path: String,
    pub bytes: u64,
}

/// What `lumo prune` removes and keeps.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunePlan {
    pub logs: Vec<Removal>,
    pub bundles: Vec<Removal>,
    pub kept_logs: usize,
    pub kept_bundles: usize,
    /// Why bundles were left alone altogether, when they were.
    pub bundles_left_alone: Option<String>,
}

/// A run as retention sees it.
#[derive(Debug, Clone)]
struct RunRow {
    id: String,
    /// `project/env`: runs are counted per environment.
    scope: String,
    running: bool,
    started_at_ms: i64,
    bundle_hash: String,
}

/// What the store says must stay.
#[derive(Debug, Default)]
struct StoreView {
    runs: Vec<RunRow>,
    /// Bundles of current deployments, of running deployments and each task's last success.
    referenced: BTreeSet<String>,
    deployment_running: bool,
}

/// The plan for `.lumo/` at `layout` under `retention`, as of `now`. Changes nothing.
pub fn plan(
    layout: &LocalLayout,
    retention: Retention,
    now: SystemTime,
) -> BackendResult<PrunePlan> {
    let view = if layout.db().is_file() {
        read_store(&layout.db())?
    } else {
        StoreView::default()
    };
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let kept = kept_runs(&view.runs, retention, now_ms);
    let known: BTreeMap<&str, &RunRow> = view.runs.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut plan = PrunePlan::default();
    let too_old = now
        .checked_sub(Duration::from_secs(u64::from(retention.days) * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);

    for file in list(&layout.logs())? {
        // `<run-id>.log`; the run id is everything before the first dot.
        let run_id = file.name.split('.').next().unwrap_or_default();
        let remove = if kept.contains(run_id) {
            false
        } else if known.contains_key(run_id) {
            true
        } else {
            // A log without a record (a store moved away): by its age alone.
            file.modified < too_old
        };
        if remove {
            plan.logs.push(file.removal("logs"));
        } else {
            plan.kept_logs += 1;
        }
    }

    let mut needed = view.referenced.clone();
    needed.extend(
        view.runs
            .iter()
            .filter(|r| kept.contains(r.id.as_str()))
            .map(|r| r.bundle_hash.clone()),
    );
    let fresh_since = now
        .checked_sub(FRESH_BUNDLE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if view.deployment_running {
        plan.bundles_left_alone = Some(
            "a deployment is running, and may use any bundle; run `lumo prune` again once it ends"
                .into(),
        );
    }
    for file in list(&layout.bundles())? {
        // Only finished bundles (`<sha256>.zip`); `.building-*` files belong to a build.
        let Some(hash) = file.name.strip_suffix(".zip") else {
            continue;
        };
        if hash.starts_with('.') {
            continue;
        }
        let remove = plan.bundles_left_alone.is_none()
            && !needed.contains(hash)
            && file.modified < fresh_since;
        if remove {
            plan.bundles.push(file.removal("bundles"));
        } else {
            plan.kept_bundles += 1;
        }
    }
    Ok(plan)
}

/// Removes what `plan` lists. A file already gone is not an error (another prune).
pub fn apply(layout: &LocalLayout, plan: &PrunePlan) -> BackendResult<()> {
    for removal in plan.logs.iter().chain(&plan.bundles) {
        let path = layout.root.join(&removal.path);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BackendError::from_io(
                    format!("cannot remove `{}`", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// The ids of the runs whose logs stay: per environment the newest `runs` that are younger
/// than `days`, and every running one.
fn kept_runs(runs: &[RunRow], retention: Retention, now_ms: i64) -> BTreeSet<&str> {
    let oldest_ms = now_ms - i64::from(retention.days) * DAY_MS;
    let mut by_scope: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
    for run in runs {
        by_scope.entry(&run.scope).or_default().push(run);
    }
    let mut kept = BTreeSet::new();
    for mut scoped in by_scope.into_values() {
        // Run ids are ULIDs: their order is the order the runs started in.
        scoped.sort_by(|a, b| b.id.cmp(&a.id));
        for (newest, run) in scoped.into_iter().enumerate() {
            let within = newest < retention.runs as usize && run.started_at_ms >= oldest_ms;
            if within || run.running {
                kept.insert(run.id.as_str());
            }
        }
    }
    kept
}

fn read_store(db: &Path) -> BackendResult<StoreView> {
    let fail = |e: rusqlite::Error| {
        let kind = super::sqlite_kind(&e);
        BackendError::with_source(
            format!("cannot read the local store `{}` to prune it", db.display()),
            e,
        )
        .of_kind(kind)
    };
    // Read-only: planning must not change anything, `--dry-run` least of all.
    let conn = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    conn.busy_timeout(super::store::BUSY_TIMEOUT)
        .map_err(fail)?;
    let mut view = StoreView::default();
    let mut stmt = conn
        .prepare("SELECT id, project, env, status, started_at, bundle_hash FROM runs")
        .map_err(fail)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                scope: format!("{}/{}", r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                running: r.get::<_, String>(3)? == "running",
                started_at_ms: r.get(4)?,
                bundle_hash: r.get(5)?,
            })
        })
        .map_err(fail)?;
    for row in rows {
        view.runs.push(row.map_err(fail)?);
    }
    let mut bundle_maps = |sql: &str| -> BackendResult<usize> {
        let mut stmt = conn.prepare(sql).map_err(fail)?;
        let maps = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(fail)?;
        let mut count = 0;
        for json in maps {
            let json = json.map_err(fail)?;
            // A map the store cannot read back keeps nothing it names; refuse to guess.
            let map: BTreeMap<String, String> = serde_json::from_str(&json).map_err(|e| {
                BackendError::with_source("a deployment's bundle list does not read back", e)
                    .of_kind(BackendErrorKind::Corrupt)
            })?;
            view.referenced.extend(map.into_values());
            count += 1;
        }
        Ok(count)
    };
    bundle_maps("SELECT bundles FROM env_state")?;
    let running = bundle_maps("SELECT bundles FROM deployments WHERE status = 'running'")?;
    view.deployment_running = running > 0;
    let mut stmt = conn
        .prepare("SELECT last_success_hash FROM task_state")
        .map_err(fail)?;
    let hashes = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(fail)?;
    for hash in hashes {
        view.referenced.insert(hash.map_err(fail)?);
    }
    Ok(view)
}

/// A regular file in one of `.lumo/`'s directories.
struct ListedFile {
    name: String,
    bytes: u64,
    modified: SystemTime,
}

impl ListedFile {
    fn removal(&self, dir: &str) -> Removal {
        Removal {
            path: format!("{dir}/{}", self.name),
            bytes: self.bytes,
        }
    }
}

fn list(dir: &Path) -> BackendResult<Vec<ListedFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(BackendError::from_io(
                format!("cannot read `{}`", dir.display()),
                e,
            ));
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if meta.is_file() {
            files.push(ListedFile {
                name,
                bytes: meta.len(),
                modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, scope: &str, age_days: i64, running: bool) -> RunRow {
        RunRow {
            id: id.into(),
            scope: scope.into(),
            running,
            started_at_ms: 1_000 * DAY_MS - age_days * DAY_MS,
            bundle_hash: format!("h{id}"),
        }
    }

    #[test]
    fn keeps_the_newest_runs_of_each_environment_within_the_days_and_every_running_one() {
        let runs = [
            run("01", "p/dev", 1, false),
            run("02", "p/dev", 1, false),
            run("03", "p/dev", 1, false),
            run("04", "p/prod", 200, false),
            run("05", "p/prod", 1, false),
            run("00", "p/dev", 400, true),
        ];
        let retention = Retention { runs: 2, days: 90 };
        let kept = kept_runs(&runs, retention, 1_000 * DAY_MS);
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            ["00", "02", "03", "05"],
            "dev: the newest two; prod: not the one past 90 days; a running one always"
        );
    }
}
