//! The `local` provider's audit trail and environment state: one SQLite file,
//! `.lumo/lumo.db` (WAL, so `lumo history` reads while a deploy writes).
//!
//! The file outlives the lumo that wrote it, so its schema has a version (SQLite's
//! `user_version`) and every change is a numbered forward step in [`MIGRATIONS`]: opening a store
//! brings it to [`SCHEMA_VERSION`] in one transaction, and a store from a newer lumo is refused
//! rather than misread.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use lumo_runner::contract::{RunStatus, Trigger};
use lumo_runner::{BundleHash, IdError, RunId, Version};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::backend::records::{
    AuditEvent, Deployment, DeploymentStatus, EnvState, EventKind, RunKind, TaskRun, Timestamp,
};
use crate::backend::{AuditStore, BackendError, BackendErrorKind, BackendResult, LogReader};

/// Version 1: the schema of lumo 15aa6e6, the last release without a version. It is written
/// with `IF NOT EXISTS` (as that release did on every open), so a store that release made
/// (`user_version` 0, these tables) passes through this step unchanged and counts as version 1.
const V1_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    is_first_deploy INTEGER NOT NULL,
    actor TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    message TEXT,
    bundles TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_env ON deployments (project, env, id);

CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    deployment_id TEXT,
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    task TEXT NOT NULL,
    trigger TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    bundle_hash TEXT NOT NULL,
    actor TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    duration_ms INTEGER,
    exit_code INTEGER,
    message TEXT,
    data TEXT,
    data_ref TEXT,
    log_ref TEXT,
    output_tail TEXT,
    output_bytes INTEGER NOT NULL
);
-- Run ids are ULIDs, so id order is time order: both history queries are index range scans.
CREATE INDEX IF NOT EXISTS runs_by_env ON runs (project, env, id);
CREATE INDEX IF NOT EXISTS runs_by_task ON runs (project, env, task, id);

CREATE TABLE IF NOT EXISTS env_state (
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    deployment_id TEXT NOT NULL,
    deployed_at INTEGER NOT NULL,
    bundles TEXT NOT NULL,
    PRIMARY KEY (project, env)
);

CREATE INDEX IF NOT EXISTS runs_running ON runs (project, env, status) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS deployments_running ON deployments (project, env, status) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS locks (
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    slot TEXT NOT NULL,
    token TEXT NOT NULL,
    actor TEXT NOT NULL,
    operation TEXT NOT NULL,
    reason TEXT,
    host TEXT NOT NULL,
    pid INTEGER,
    since INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (project, env, slot)
);

CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_env ON events (project, env, id);

CREATE TABLE IF NOT EXISTS task_state (
    project TEXT NOT NULL,
    env TEXT NOT NULL,
    task TEXT NOT NULL,
    last_success_hash TEXT NOT NULL,
    last_success_run TEXT NOT NULL,
    PRIMARY KEY (project, env, task)
);
";

/// Version 2: what kind of run a run is (`task`; `exec` for the ad-hoc commands to come), and
/// the arguments it was given (a JSON object of masked values; NULL when none were recorded, as
/// in every run an older lumo wrote).
const V2_RUN_KIND_AND_ARGS: &str = "
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'task';
ALTER TABLE runs ADD COLUMN args TEXT;
";

/// Version 3: whether a run ran the working copy (`lumo run --from-source`) instead of the
/// deployed bundle; 0 for every run before.
const V3_RUN_FROM_SOURCE: &str = "
ALTER TABLE runs ADD COLUMN from_source INTEGER NOT NULL DEFAULT 0;
";

/// Version 4: what an `exec` run ran (a JSON array of the masked program and arguments; NULL
/// for a task run, as in every run an older lumo wrote).
const V4_RUN_COMMAND: &str = "
ALTER TABLE runs ADD COLUMN command TEXT;
";

/// The schema's forward steps: `MIGRATIONS[n]` takes a store at version `n` to version `n + 1`.
/// A released step never changes (stores out there already ran it); a change to the schema is a
/// new step at the end, with a test that opens a store of the version before it.
const MIGRATIONS: &[&str] = &[
    V1_SCHEMA,
    V2_RUN_KIND_AND_ARGS,
    V3_RUN_FROM_SOURCE,
    V4_RUN_COMMAND,
];

/// The schema version this lumo writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why a store could not be brought to [`SCHEMA_VERSION`].
#[derive(Debug, thiserror::Error)]
enum MigrationError {
    #[error("its schema version is {found}; this lumo reads versions up to {SCHEMA_VERSION}")]
    Newer { found: u32 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Brings the store to the last version of `steps` (or finds it there), all steps in one
/// transaction: a step that fails leaves the store as it was. `IMMEDIATE`, and the version read
/// again inside it, so two lumos opening an old store at once migrate it once.
fn migrate(conn: &mut Connection, steps: &[&str]) -> Result<(), MigrationError> {
    let target = steps.len() as u32;
    let version =
        |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, u32>(0));
    let found = version(conn)?;
    if found > target {
        return Err(MigrationError::Newer { found });
    }
    if found == target {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > target {
        return Err(MigrationError::Newer { found });
    }
    for step in &steps[found as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(())
}

/// Whether lumo may not write where the store lives: the file, or its directory (where SQLite
/// keeps the write-ahead log). Asked only once opening failed.
fn read_only(path: &Path, e: &rusqlite::Error) -> bool {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
        return true;
    }
    let file_writable =
        !path.exists() || std::fs::OpenOptions::new().write(true).open(path).is_ok();
    let dir_writable = path
        .parent()
        .is_none_or(|dir| tempfile::tempfile_in(dir).is_ok());
    !(file_writable && dir_writable)
}

/// How long lumo waits for another lumo's hold on the store before it gives up.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts the store in write-ahead-log mode (a no-op once it is). On a new file this rewrites
/// the header: SQLite reads it, then upgrades that read to a write, and refuses the upgrade at
/// once, without waiting through the busy timeout, while another connection reads the header
/// too ("database is locked"). Lumos started together on a fresh project all do this at
/// once, so a refusal is tried again until [`BUSY_TIMEOUT`] has passed.
fn use_write_ahead_log(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// The size the write-ahead log is cut back to after a checkpoint (it is emptied when the last
/// connection closes).
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Asks SQLite to leave the write-ahead log and its index (`lumo.db-wal`, `lumo.db-shm`) in
/// place when the last connection closes, instead of deleting them for the next lumo to create
/// again: every lumo process that opened the store created both files, synced the directory
/// and deleted both on the way out, a read-only `lumo history` included (docs/startup.md).
/// Closing still checkpoints, so `lumo.db` alone holds every record once lumo has exited, and
/// then empties the log ([`WAL_SIZE_LIMIT`]).
fn keep_wal_files(conn: &Connection) -> rusqlite::Result<()> {
    let mut keep: std::ffi::c_int = 1;
    // SAFETY: the handle is this open connection's, used only for the call; the schema name
    // is a NUL-terminated literal; SQLITE_FCNTL_PERSIST_WAL reads and writes one int through
    // the pointer, which outlives the call.
    let code = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut keep).cast(),
        )
    };
    // NOTFOUND: no file behind the connection (the `:memory:` store of a dry run).
    if code == rusqlite::ffi::SQLITE_OK || code == rusqlite::ffi::SQLITE_NOTFOUND {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("cannot keep the write-ahead log between runs".to_string()),
        ))
    }
}

/// How many pages the write-ahead log may hold before a commit checkpoints it into the
/// database (SQLite's default, stated with its reason); see [`SqliteStore::open`].
const WAL_AUTOCHECKPOINT_PAGES: u32 = 1_000;

/// The SQLite store. One connection behind a mutex: every statement is microseconds, and
/// SQLite serialises writers anyway.
pub struct SqliteStore {
    path: PathBuf,
    pub(super) project: String,
    conn: Mutex<Connection>,
    logs_dir: PathBuf,
}

impl SqliteStore {
    pub fn open(path: &Path, project: &str, logs_dir: &Path) -> BackendResult<SqliteStore> {
        let fail = |e: rusqlite::Error| {
            if read_only(path, &e) {
                return BackendError::with_source(
                    format!(
                        "the local store `{}` is read-only: lumo cannot write to it or beside it",
                        path.display()
                    ),
                    e,
                )
                .of_kind(BackendErrorKind::Denied)
                .hint("lumo writes to `.lumo/` even to read it (SQLite keeps its write-ahead log beside `lumo.db`): make it writable for this user, or work on a writable copy");
            }
            let kind = super::sqlite_kind(&e);
            BackendError::with_source(
                format!("cannot open the local store `{}`", path.display()),
                e,
            )
            .of_kind(kind)
            .hint("it may be corrupt; move it away to start a fresh history")
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        keep_wal_files(&conn).map_err(fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        use_write_ahead_log(&conn).map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        // With the log kept, a limit makes the last close empty it after its checkpoint: the
        // first process to open the store rebuilds the log's index by reading back all it holds,
        // and a checkpointed log's frames stay valid. It also caps the log between checkpoints.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(fail)?;
        // A checkpoint waits for three fsyncs, and lets the log start over in the pages it
        // already has. A deploy writes five pages a run boundary, so at 1,000 pages one comes
        // every 200 tasks. A log allowed 10,000 pages (when a boundary wrote ten) grew over a
        // whole deploy of 1,000 tasks: every page went into new blocks, and 20 MB were synced
        // and truncated when lumo closed the store; figure 4 was 0.02 ms a task slower
        // (docs/speed.md). Commits are as durable either way: `NORMAL` never waits for the
        // disk at a commit.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .map_err(fail)?;
        match migrate(&mut conn, MIGRATIONS) {
            Ok(()) => {}
            Err(MigrationError::Sqlite(e)) => return Err(fail(e)),
            Err(newer @ MigrationError::Newer { .. }) => {
                return Err(BackendError::new(format!(
                    "the local store `{}` was written by a newer lumo; {newer}",
                    path.display()
                ))
                .hint("use that lumo (or a newer one) here; moving `.lumo/` away starts a fresh history"));
            }
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            project: project.to_string(),
            conn: Mutex::new(conn),
            logs_dir: logs_dir.to_path_buf(),
        })
    }

    /// Runs `f` on the connection. Transactions that write start `IMMEDIATE`: a deferred one
    /// that reads first and then writes cannot wait for another writer (SQLite answers BUSY at
    /// once rather than deadlock), which racing `lumo` processes would hit.
    pub(super) fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> BackendResult<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| {
            // A store that opened read-only (it was already at this version) fails on its
            // first write.
            let read_only = e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly);
            let kind = super::sqlite_kind(&e);
            let error = BackendError::with_source(
                format!("local store `{}`: cannot {what}", self.path.display()),
                e,
            )
            .of_kind(kind);
            if read_only {
                error.hint("the store is read-only: make `.lumo/` writable for this user")
            } else {
                error
            }
        })
    }
}

impl SqliteStore {
    /// Writes a deployment (and, when it succeeded, the environment's state) in one
    /// transaction. With `unless_abandoned`, a record another writer marked `abandoned` is left
    /// as it is and nothing is written: `Ok(false)`.
    async fn write_deployment(
        &self,
        d: &Deployment,
        unless_abandoned: bool,
    ) -> BackendResult<bool> {
        let bundles = serde_json::to_string(&d.bundles).unwrap_or_else(|_| "{}".into());
        let previous_version = d.previous_version.as_ref().map(Version::as_str);
        self.with("record the deployment", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if unless_abandoned && is_abandoned(&tx, "deployments", &d.id)? {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR REPLACE INTO deployments (id, project, env, version, previous_version, is_first_deploy,
                    actor, status, started_at, ended_at, message, bundles)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    d.id, d.project, d.env, d.version.as_str(), previous_version, d.is_first_deploy, d.actor,
                    d.status.as_str(), d.started_at.millis(), d.ended_at.map(Timestamp::millis),
                    d.message, bundles
                ],
            )?;
            if d.status == DeploymentStatus::Succeeded {
                tx.execute(
                    "INSERT OR REPLACE INTO env_state (project, env, version, previous_version, deployment_id,
                        deployed_at, bundles)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        d.project, d.env, d.version.as_str(), previous_version, d.id,
                        d.ended_at.unwrap_or(d.started_at).millis(), bundles
                    ],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    /// Writes a run (and, when it succeeded, its task's last success); `unless_abandoned` as
    /// for [`write_deployment`](Self::write_deployment). With `then`, also writes that run (a
    /// start) in the same transaction, whatever became of the first.
    async fn write_run(
        &self,
        run: &TaskRun,
        unless_abandoned: bool,
        then: Option<&TaskRun>,
    ) -> BackendResult<bool> {
        self.with("record the run", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let written = write_run_row(&tx, run, unless_abandoned)?;
            if let Some(next) = then {
                write_run_row(&tx, next, false)?;
            }
            tx.commit()?;
            Ok(written)
        })
    }
}

/// Writes `run`'s row (and, when it succeeded, its task's last success) in transaction `tx`;
/// with `unless_abandoned`, nothing when its record is marked `abandoned`. Whether it wrote.
fn write_run_row(tx: &Connection, run: &TaskRun, unless_abandoned: bool) -> rusqlite::Result<bool> {
    // Cached statements: a deploy writes every run twice, and parsing these each time cost
    // more than executing them.
    let sql = if unless_abandoned {
        FINISH_RUN
    } else {
        WRITE_RUN
    };
    let changed = tx
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(run_params(run)))?;
    if changed == 0 {
        return Ok(false);
    }
    // Only a task run is the task's success: an `exec` in its bundle is not.
    // (A task run always ran a bundle; only an `exec` may have none.)
    if run.status == RunStatus::Succeeded
        && run.kind == RunKind::Task
        && let Some(hash) = &run.bundle_hash
    {
        // Changed in place (not `INSERT OR REPLACE`, a delete and an insert), and only when the
        // task succeeds with another bundle than the last time: a task that succeeds again with
        // the same bundle, every deploy of most tasks, leaves the row and its page alone, one
        // page of the six a run boundary writes. `last_success_run` is the run that made
        // `last_success_hash` the task's last success (its latest success is in `runs`).
        tx.prepare_cached(
            "INSERT INTO task_state (project, env, task, last_success_hash, last_success_run)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, env, task) DO UPDATE SET
                last_success_hash = excluded.last_success_hash, last_success_run = excluded.last_success_run
             WHERE last_success_hash IS NOT excluded.last_success_hash",
        )?
        .execute(params![run.project, run.env, run.task, hash.as_str(), run.id.as_str()])?;
    }
    Ok(true)
}

/// Whether the record `id` of `table` (`runs` or `deployments`) is marked `abandoned`.
fn is_abandoned(conn: &Connection, table: &str, id: &str) -> rusqlite::Result<bool> {
    let status: Option<String> = conn
        .prepare_cached(&format!("SELECT status FROM {table} WHERE id = ?1"))?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    Ok(status.as_deref() == Some("abandoned"))
}

/// Writes a run whole: a new one, or over the record of the same id. An update of the record
/// changes it in place (an upsert, not `INSERT OR REPLACE`, which deletes the row and inserts it
/// anew with every index entry) and leaves `project`, `env` and `task`, which a run id never
/// changes, alone: ending a run then touches the row and the index of running runs only, a
/// third of the pages a deploy wrote per run before.
macro_rules! write_run_sql {
    () => {
        "INSERT INTO runs (id, deployment_id, project, env, task, trigger, version,
    previous_version, bundle_hash, actor, status, attempt, started_at, ended_at, duration_ms, exit_code,
    message, data, data_ref, log_ref, output_tail, output_bytes, kind, args, from_source, command)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
        ?23, ?24, ?25, ?26)
    ON CONFLICT (id) DO UPDATE SET deployment_id = excluded.deployment_id, trigger = excluded.trigger,
        version = excluded.version, previous_version = excluded.previous_version,
        bundle_hash = excluded.bundle_hash, actor = excluded.actor, status = excluded.status,
        attempt = excluded.attempt, started_at = excluded.started_at, ended_at = excluded.ended_at,
        duration_ms = excluded.duration_ms, exit_code = excluded.exit_code, message = excluded.message,
        data = excluded.data, data_ref = excluded.data_ref, log_ref = excluded.log_ref,
        output_tail = excluded.output_tail, output_bytes = excluded.output_bytes, kind = excluded.kind,
        args = excluded.args, from_source = excluded.from_source, command = excluded.command"
    };
}
const WRITE_RUN: &str = write_run_sql!();
/// [`WRITE_RUN`] of a run's end, which leaves a record another writer marked `abandoned` as
/// it is: then no row changes, and no separate read was needed to tell.
const FINISH_RUN: &str = concat!(write_run_sql!(), " WHERE runs.status <> 'abandoned'");

const RUN_COLUMNS: &str = "id, deployment_id, project, env, task, trigger, version, previous_version,
    bundle_hash, actor, status, attempt, started_at, ended_at, duration_ms, exit_code, message, data,
    data_ref, log_ref, output_tail, output_bytes, kind, args, from_source, command";

fn run_params(run: &TaskRun) -> Vec<Box<dyn rusqlite::ToSql + '_>> {
    vec![
        Box::new(run.id.as_str()),
        Box::new(&run.deployment_id),
        Box::new(&run.project),
        Box::new(&run.env),
        Box::new(&run.task),
        Box::new(run.trigger.as_str()),
        Box::new(run.version.as_ref().map_or("", Version::as_str)),
        Box::new(run.previous_version.as_ref().map(Version::as_str)),
        Box::new(hash_text(&run.bundle_hash)),
        Box::new(&run.actor),
        Box::new(run.status.as_str()),
        Box::new(run.attempt),
        Box::new(run.started_at.millis()),
        Box::new(run.ended_at.map(Timestamp::millis)),
        Box::new(run.duration_ms.map(|d| d as i64)),
        Box::new(run.exit_code),
        Box::new(&run.message),
        Box::new(run.data.as_ref().map(|d| d.to_string())),
        Box::new(&run.data_ref),
        Box::new(&run.log_ref),
        Box::new(&run.output_tail),
        Box::new(run.output_bytes as i64),
        Box::new(run.kind.as_str()),
        // No arguments is NULL, as in the runs an older lumo recorded.
        Box::new(
            (!run.args.is_empty()).then(|| serde_json::to_string(&run.args).unwrap_or_default()),
        ),
        Box::new(run.from_source),
        Box::new(
            run.command
                .as_ref()
                .map(|argv| serde_json::to_string(argv).unwrap_or_default()),
        ),
    ]
}

/// A run's bundle hash as the store keeps it: `""` for none (an `exec` without a bundle).
fn hash_text(hash: &Option<BundleHash>) -> &str {
    hash.as_ref().map_or("", BundleHash::as_str)
}

/// Column `column` of the record `item` (`run 01…`) as an id, hash or version: text that is
/// not one makes the record corrupt, and the error names the record.
fn parsed<T>(row: &Row<'_>, column: usize, item: &dyn Fn() -> String) -> rusqlite::Result<T>
where
    T: TryFrom<String, Error = IdError>,
{
    parsed_text(row.get(column)?, column, item)
}

/// As [`parsed`], for a column that may be empty: `NULL` and `""` are `None`, as every lumo
/// wrote "none".
fn parsed_opt<T>(
    row: &Row<'_>,
    column: usize,
    item: &dyn Fn() -> String,
) -> rusqlite::Result<Option<T>>
where
    T: TryFrom<String, Error = IdError>,
{
    match row.get::<_, Option<String>>(column)? {
        Some(text) if !text.is_empty() => parsed_text(text, column, item).map(Some),
        _ => Ok(None),
    }
}

fn parsed_text<T>(text: String, column: usize, item: &dyn Fn() -> String) -> rusqlite::Result<T>
where
    T: TryFrom<String, Error = IdError>,
{
    T::try_from(text).map_err(|e| unreadable_text(column, format!("{}: {e}", item())))
}

/// A JSON map of task → bundle hash (a deployment's or the environment's `bundles`); a hash
/// that is not one makes the record corrupt, and the error names the record.
fn parsed_bundles(
    text: &str,
    column: usize,
    item: &dyn Fn() -> String,
) -> rusqlite::Result<BTreeMap<String, BundleHash>> {
    serde_json::from_str(text).map_err(|e| unreadable_text(column, format!("{}: {e}", item())))
}

fn bad_value(column: usize, what: &str, value: &str) -> rusqlite::Error {
    unreadable_text(column, format!("unknown {what} `{value}`"))
}

/// A text column whose value does not read as what it holds: the record is corrupt
/// (`sqlite_kind` says so), and `why` says how.
fn unreadable_text(
    column: usize,
    why: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, why.into())
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRun> {
    let trigger: String = row.get(5)?;
    let status: String = row.get(10)?;
    let data: Option<String> = row.get(17)?;
    let kind: String = row.get(22)?;
    let args: Option<String> = row.get(23)?;
    let command: Option<String> = row.get(25)?;
    let raw_id: String = row.get(0)?;
    let item = || format!("run `{raw_id}`");
    Ok(TaskRun {
        id: parsed_text(raw_id.clone(), 0, &item)?,
        deployment_id: row.get(1)?,
        project: row.get(2)?,
        env: row.get(3)?,
        task: row.get(4)?,
        trigger: match trigger.as_str() {
            "deploy" => Trigger::Deploy,
            "update" => Trigger::Update,
            "manual" => Trigger::Manual,
            other => return Err(bad_value(5, "trigger", other)),
        },
        version: parsed_opt(row, 6, &item)?,
        previous_version: parsed_opt(row, 7, &item)?,
        bundle_hash: parsed_opt(row, 8, &item)?,
        actor: row.get(9)?,
        status: RunStatus::parse(&status).ok_or_else(|| bad_value(10, "status", &status))?,
        attempt: row.get(11)?,
        started_at: Timestamp(row.get(12)?),
        ended_at: row.get::<_, Option<i64>>(13)?.map(Timestamp),
        duration_ms: row.get::<_, Option<i64>>(14)?.map(|d| d.max(0) as u64),
        exit_code: row.get(15)?,
        message: row.get(16)?,
        data: data.and_then(|d| serde_json::from_str(&d).ok()),
        data_ref: row.get(18)?,
        log_ref: row.get(19)?,
        output_tail: row.get(20)?,
        output_bytes: row.get::<_, i64>(21)?.max(0) as u64,
        kind: RunKind::parse(&kind).ok_or_else(|| bad_value(22, "run kind", &kind))?,
        args: match args {
            Some(text) => serde_json::from_str(&text).map_err(|e| unreadable_text(23, e))?,
            None => BTreeMap::new(),
        },
        from_source: row.get(24)?,
        command: command
            .map(|text| serde_json::from_str(&text).map_err(|e| unreadable_text(25, e)))
            .transpose()?,
    })
}

fn deployment_from_row(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let status: String = row.get(7)?;
    let bundles: String = row.get(11)?;
    let id: String = row.get(0)?;
    let item = || format!("deployment `{id}`");
    Ok(Deployment {
        version: parsed(row, 3, &item)?,
        previous_version: parsed_opt(row, 4, &item)?,
        bundles: parsed_bundles(&bundles, 11, &item)?,
        id,
        project: row.get(1)?,
        env: row.get(2)?,
        is_first_deploy: row.get(5)?,
        actor: row.get(6)?,
        status: DeploymentStatus::parse(&status).ok_or_else(|| bad_value(7, "status", &status))?,
        started_at: Timestamp(row.get(8)?),
        ended_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        message: row.get(10)?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn env_state(&self, env: &str) -> BackendResult<EnvState> {
        let project = self.project.clone();
        self.with("read the environment state", |conn| {
            let mut state = conn
                .query_row(
                    "SELECT version, previous_version, deployment_id, deployed_at, bundles FROM env_state
                     WHERE project = ?1 AND env = ?2",
                    params![project, env],
                    |row| {
                        let bundles: String = row.get(4)?;
                        let item = || format!("the state of `{env}`");
                        Ok(EnvState {
                            version: Some(parsed(row, 0, &item)?),
                            previous_version: parsed_opt(row, 1, &item)?,
                            deployment_id: Some(row.get(2)?),
                            deployed_at: Some(Timestamp(row.get(3)?)),
                            bundles: parsed_bundles(&bundles, 4, &item)?,
                            last_success: BTreeMap::new(),
                        })
                    },
                )
                .optional()?
                .unwrap_or_default();
            let mut stmt = conn.prepare_cached(
                "SELECT task, last_success_hash FROM task_state WHERE project = ?1 AND env = ?2",
            )?;
            let rows = stmt.query_map(params![project, env], |r| {
                let task: String = r.get(0)?;
                let hash = parsed(r, 1, &|| format!("the last success of `{task}` in `{env}`"))?;
                Ok((task, hash))
            })?;
            for row in rows {
                let (task, hash) = row?;
                state.last_success.insert(task, hash);
            }
            Ok(state)
        })
    }

    async fn start_deployment(&self, d: &Deployment) -> BackendResult<()> {
        self.write_deployment(d, false).await.map(|_| ())
    }

    async fn finish_deployment(&self, d: &Deployment) -> BackendResult<bool> {
        self.write_deployment(d, true).await
    }

    async fn start_run(&self, run: &TaskRun) -> BackendResult<()> {
        self.write_run(run, false, None).await.map(|_| ())
    }

    async fn finish_run(&self, run: &TaskRun) -> BackendResult<bool> {
        self.write_run(run, true, None).await
    }

    /// One transaction: a deploy of many tasks commits once a run boundary, not twice.
    async fn finish_run_and_start(
        &self,
        finished: &TaskRun,
        next: &TaskRun,
    ) -> BackendResult<bool> {
        self.write_run(finished, true, Some(next)).await
    }

    async fn runs(&self, env: &str, task: Option<&str>, limit: u32) -> BackendResult<Vec<TaskRun>> {
        let project = self.project.clone();
        self.with("read the history", |conn| {
            let rows = match task {
                Some(task) => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1 AND env = ?2 AND task = ?3 AND kind = 'task' ORDER BY id DESC LIMIT ?4"
                    ))?;
                    stmt.query_map(params![project, env, task, limit], run_from_row)?.collect::<Result<Vec<_>, _>>()?
                }
                None => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1 AND env = ?2 ORDER BY id DESC LIMIT ?3"
                    ))?;
                    stmt.query_map(params![project, env, limit], run_from_row)?.collect::<Result<Vec<_>, _>>()?
                }
            };
            Ok(rows)
        })
    }

    async fn run(&self, id: &RunId) -> BackendResult<Option<TaskRun>> {
        self.with("read the run", |conn| {
            conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                params![id.as_str()],
                run_from_row,
            )
            .optional()
        })
    }

    async fn runs_by_id_prefix(
        &self,
        prefix: &str,
        env: Option<&str>,
        limit: u32,
    ) -> BackendResult<Vec<TaskRun>> {
        let project = self.project.clone();
        // Run ids are upper-case letters and digits, all of which sort before `~`: the ids
        // starting with `prefix` are the range [prefix, prefix~), which the primary key finds.
        let end = format!("{prefix}~");
        self.with("look up a run by a prefix of its id", |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1 AND id >= ?2 AND id < ?3 AND (?5 IS NULL OR env = ?5) ORDER BY id LIMIT ?4"
            ))?;
            stmt.query_map(params![project, prefix, end, limit, env], run_from_row)?
                .collect()
        })
    }

    async fn deployments(&self, env: &str, limit: u32) -> BackendResult<Vec<Deployment>> {
        let project = self.project.clone();
        self.with("read the deployments", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, project, env, version, previous_version, is_first_deploy, actor, status, started_at,
                    ended_at, message, bundles
                 FROM deployments WHERE project = ?1 AND env = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            stmt.query_map(params![project, env, limit], deployment_from_row)?.collect()
        })
    }

    async fn read_log(&self, run: &TaskRun) -> BackendResult<Option<Vec<u8>>> {
        let Some(mut log) = self.open_log(run).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(|e| {
            BackendError::from_io(format!("cannot read the log of run `{}`", run.id), e)
        })?;
        Ok(Some(bytes))
    }

    async fn open_log(&self, run: &TaskRun) -> BackendResult<Option<LogReader>> {
        // A run still going, abandoned, or cut off by a backend error has no ref, but its log
        // was written as the output arrived.
        let own_log = super::log_file_name(run.id.as_str());
        let log_ref = run.log_ref.as_deref().unwrap_or(&own_log);
        // Local log refs are paths relative to `.lumo/`; only file names under logs/ are read.
        let Some(name) = Path::new(log_ref).file_name() else {
            return Ok(None);
        };
        let path = self.logs_dir.join(name);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Some(Box::new(LogFile { path, file }))),
            // A run that printed nothing has no log file (the runner creates it at the first
            // output): its whole output is empty, not lost.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && run.status != RunStatus::Running
                    && run.output_bytes == 0
                    && run.log_ref.is_some() =>
            {
                Ok(Some(Box::new(std::io::empty())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackendError::from_io(
                format!("cannot read the log `{}`", path.display()),
                e,
            )),
        }
    }

    async fn abandon_unfinished(&self, env: &str, message: &str) -> BackendResult<Vec<String>> {
        let project = self.project.clone();
        let now = Timestamp::now().millis();
        self.with("abandon unfinished runs", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut ids: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM runs WHERE project = ?1 AND env = ?2 AND status = 'running'",
                )?;
                stmt.query_map(params![project, env], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            tx.execute(
                "UPDATE runs SET status = 'abandoned', ended_at = ?3, message = ?4,
                    duration_ms = MAX(0, ?3 - started_at)
                 WHERE project = ?1 AND env = ?2 AND status = 'running'",
                params![project, env, now, message],
            )?;
            let deployments: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM deployments WHERE project = ?1 AND env = ?2 AND status = 'running'",
                )?;
                stmt.query_map(params![project, env], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            tx.execute(
                "UPDATE deployments SET status = 'abandoned', ended_at = ?3, message = ?4
                 WHERE project = ?1 AND env = ?2 AND status = 'running'",
                params![project, env, now, message],
            )?;
            tx.commit()?;
            ids.extend(deployments);
            Ok(ids)
        })
    }

    async fn record_event(&self, event: &AuditEvent) -> BackendResult<()> {
        self.with("record an event", |conn| {
            conn.execute(
                "INSERT INTO events (id, project, env, kind, actor, at, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    event.id,
                    event.project,
                    event.env,
                    event.kind.as_str(),
                    event.actor,
                    event.at.millis(),
                    event.message
                ],
            )?;
            Ok(())
        })
    }

    async fn events(&self, env: &str, limit: u32) -> BackendResult<Vec<AuditEvent>> {
        let project = self.project.clone();
        self.with("read the events", |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, project, env, kind, actor, at, message FROM events
                 WHERE project = ?1 AND env = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            stmt.query_map(params![project, env, limit], |row| {
                let kind: String = row.get(3)?;
                Ok(AuditEvent {
                    id: row.get(0)?,
                    project: row.get(1)?,
                    env: row.get(2)?,
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| bad_value(3, "event kind", &kind))?,
                    actor: row.get(4)?,
                    at: Timestamp(row.get(5)?),
                    message: row.get(6)?,
                })
            })?
            .collect()
        })
    }
}

/// A log file being read: a read error names the file, as opening it would.
struct LogFile {
    path: PathBuf,
    file: std::fs::File,
}

impl std::io::Read for LogFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot read the log `{}`: {e}", self.path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store lumo 15aa6e6 wrote (`tests/fixtures/store-v1-15aa6e6/`): unversioned, v1 tables.
    fn old_store_in(dir: &Path) -> PathBuf {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/store-v1-15aa6e6/lumo-dir/lumo.db");
        let db = dir.join("lumo.db");
        std::fs::copy(fixture, &db).unwrap();
        db
    }

    fn open_at(db: &Path) -> BackendResult<SqliteStore> {
        let dir = db.parent().unwrap();
        SqliteStore::open(db, "store-v1", &dir.join("logs"))
    }

    fn user_version(db: &Path) -> u32 {
        Connection::open(db)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn run_columns(db: &Path) -> Vec<String> {
        let conn = Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info('runs')")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn a_run() -> TaskRun {
        TaskRun {
            id: crate::backend::records::new_run_id(),
            deployment_id: None,
            project: "store-v1".into(),
            env: "dev".into(),
            task: "purge".into(),
            trigger: Trigger::Manual,
            version: Some(Version::parse("v3").unwrap()),
            previous_version: Some(Version::parse("v2").unwrap()),
            bundle_hash: Some(BundleHash::parse(&"ab".repeat(32)).unwrap()),
            actor: "alice".into(),
            status: RunStatus::Succeeded,
            attempt: 1,
            started_at: Timestamp(1_765_000_000_000),
            ended_at: Some(Timestamp(1_765_000_000_005)),
            duration_ms: Some(5),
            exit_code: Some(0),
            message: Some("purged".into()),
            data: None,
            data_ref: None,
            log_ref: None,
            output_tail: Some(String::new()),
            output_bytes: 0,
            kind: RunKind::Task,
            args: BTreeMap::from([("target".into(), "users".into())]),
            from_source: false,
            command: None,
        }
    }

    /// Every lumo process created `lumo.db-wal` and `lumo.db-shm` and deleted them again on exit
    /// (a directory sync and two inodes each time); they now stay, and the store file itself is
    /// still complete after lumo closes it (a copy of `lumo.db` alone has every record).
    #[tokio::test]
    async fn the_write_ahead_log_stays_between_runs_and_the_store_file_alone_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        let run = a_run();
        let store = open_at(&db).unwrap();
        store.start_run(&run).await.unwrap();
        drop(store);
        let wal = dir.path().join("lumo.db-wal");
        let shm = dir.path().join("lumo.db-shm");
        assert!(
            wal.exists() && shm.exists(),
            "the log and its index are kept"
        );
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "the log is emptied: the next lumo has nothing to read back from it"
        );
        let wal_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&wal).unwrap());

        let copy = tempfile::tempdir().unwrap();
        let copied = copy.path().join("lumo.db");
        std::fs::copy(&db, &copied).unwrap();
        let alone = open_at(&copied).unwrap();
        assert_eq!(alone.run(&run.id).await.unwrap(), Some(run.clone()));

        let store = open_at(&db).unwrap();
        let mut second = a_run();
        second.id = crate::backend::records::new_run_id();
        store.start_run(&second).await.unwrap();
        drop(store);
        let reopened = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&wal).unwrap());
        assert_eq!(reopened, wal_inode, "the next lumo reuses the log file");
        let store = open_at(&db).unwrap();
        assert_eq!(store.run(&run.id).await.unwrap(), Some(run));
        assert_eq!(store.run(&second.id).await.unwrap(), Some(second));
    }

    /// A task that succeeds again with the bundle it last succeeded with leaves its state row
    /// (and the page holding it) as it was: one page less to write at most run boundaries of a
    /// deploy. A success with another bundle moves it; a failure never does.
    #[tokio::test]
    async fn a_success_with_the_same_bundle_leaves_the_task_state_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_at(&dir.path().join("lumo.db")).unwrap();
        let state = |store: &SqliteStore| {
            store
                .with("read the task state", |c| {
                    c.query_row(
                        "SELECT last_success_hash, last_success_run FROM task_state WHERE task = 'purge'",
                        [],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                })
                .unwrap()
        };
        let run_with = |hash: &str, status: RunStatus| TaskRun {
            id: crate::backend::records::new_run_id(),
            bundle_hash: Some(BundleHash::parse(&hash.repeat(32)).unwrap()),
            status,
            ..a_run()
        };
        let first = run_with("ab", RunStatus::Succeeded);
        store.start_run(&first).await.unwrap();
        assert!(store.finish_run(&first).await.unwrap());
        let first_state = ("ab".repeat(32), first.id.to_string());
        assert_eq!(state(&store), first_state);

        let again = run_with("ab", RunStatus::Succeeded);
        store.start_run(&again).await.unwrap();
        let changes = store.with("count", |c| Ok(c.total_changes())).unwrap();
        assert!(store.finish_run(&again).await.unwrap());
        assert_eq!(
            store.with("count", |c| Ok(c.total_changes())).unwrap() - changes,
            1,
            "only the run's row changed"
        );
        assert_eq!(state(&store), first_state, "the same bundle: the row stays");
        assert_eq!(store.run(&again.id).await.unwrap(), Some(again));

        let other = run_with("cd", RunStatus::Succeeded);
        store.start_run(&other).await.unwrap();
        assert!(store.finish_run(&other).await.unwrap());
        let other_state = ("cd".repeat(32), other.id.to_string());
        assert_eq!(
            state(&store),
            other_state,
            "another bundle's success moves it"
        );

        let failed = run_with("ef", RunStatus::Failed);
        store.start_run(&failed).await.unwrap();
        assert!(store.finish_run(&failed).await.unwrap());
        assert_eq!(state(&store), other_state, "a failure never moves it");
        let env = store.env_state("dev").await.unwrap();
        assert_eq!(
            env.last_success.get("purge").map(BundleHash::as_str),
            Some("cd".repeat(32).as_str())
        );
    }

    #[tokio::test]
    async fn a_new_store_is_at_the_latest_version_and_keeps_kind_args_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        let store = open_at(&db).unwrap();
        let mut run = a_run();
        run.kind = RunKind::Exec;
        run.from_source = true;
        run.command = Some(vec!["psql".into(), "-c".into(), "select 1".into()]);
        store.start_run(&run).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap(), Some(run.clone()));
        run.args.clear();
        run.command = None;
        run.id = crate::backend::records::new_run_id();
        store.start_run(&run).await.unwrap();
        assert_eq!(store.run(&run.id).await.unwrap(), Some(run));
        drop(store);
        assert_eq!(user_version(&db), SCHEMA_VERSION);
    }

    /// A store lumo 6dd7867 wrote (version 2: kinds and args, no command) opens at the latest
    /// version, its runs read with no command, and an `exec` run is recorded beside them.
    #[tokio::test]
    async fn a_store_from_6dd7867_is_version_2_and_migrates_to_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/store-v2-6dd7867/lumo-dir/lumo.db"),
            &db,
        )
        .unwrap();
        assert_eq!(user_version(&db), 2);
        assert!(!run_columns(&db).contains(&"command".to_string()));
        let store = SqliteStore::open(&db, "store-v2", &dir.path().join("logs")).unwrap();
        let runs = store.runs("dev", None, 100).await.unwrap();
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|r| r.command.is_none()));
        assert_eq!(runs[0].args["mode"], "hard");
        let mut exec = a_run();
        exec.project = "store-v2".into();
        exec.kind = RunKind::Exec;
        exec.command = Some(vec!["true".into()]);
        store.start_run(&exec).await.unwrap();
        assert_eq!(store.run(&exec.id).await.unwrap(), Some(exec));
        drop(store);
        assert_eq!(user_version(&db), SCHEMA_VERSION);
        assert!(run_columns(&db).ends_with(&["from_source".to_string(), "command".to_string()]));
    }

    #[tokio::test]
    async fn a_store_from_15aa6e6_is_version_1_and_migrates_to_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let db = old_store_in(dir.path());
        assert_eq!(user_version(&db), 0, "15aa6e6 set no version");
        assert!(!run_columns(&db).contains(&"kind".to_string()));

        let store = open_at(&db).unwrap();
        let runs = store.runs("dev", None, 100).await.unwrap();
        assert_eq!(runs.len(), 7);
        assert!(
            runs.iter()
                .all(|r| r.kind == RunKind::Task && r.args.is_empty() && !r.from_source)
        );
        let purge = runs.iter().find(|r| r.task == "purge").unwrap();
        assert_eq!(store.run(&purge.id).await.unwrap().as_ref(), Some(purge));
        assert_eq!(store.env_state("dev").await.unwrap().version.unwrap(), "v2");
        let mut new = a_run();
        new.status = RunStatus::Running;
        store.start_run(&new).await.unwrap();
        assert_eq!(store.run(&new.id).await.unwrap(), Some(new));
        drop(store);
        assert_eq!(user_version(&db), SCHEMA_VERSION);
        assert!(run_columns(&db).ends_with(&[
            "kind".to_string(),
            "args".to_string(),
            "from_source".to_string(),
            "command".to_string()
        ]));

        // Opening again finds it migrated and changes nothing.
        let again = open_at(&db).unwrap();
        assert_eq!(again.runs("dev", None, 100).await.unwrap().len(), 8);
    }

    /// A store the previous release wrote (version 2: runs with `kind` and `args`, no
    /// `from_source`) opens, its runs read as runs of the deployed bundle, and it is at the
    /// latest version afterwards.
    #[tokio::test]
    async fn a_version_2_store_migrates_and_its_runs_ran_the_deployed_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        let mut conn = Connection::open(&db).unwrap();
        migrate(&mut conn, &MIGRATIONS[..2]).unwrap();
        let run = a_run();
        conn.execute(
            "INSERT INTO runs (id, project, env, task, trigger, version, bundle_hash, actor, status,
                attempt, started_at, output_bytes, kind, args)
             VALUES (?1, 'store-v1', 'dev', 'purge', 'manual', 'v2', '', 'alice', 'succeeded',
                1, 1765000000000, 0, 'task', '{\"target\":\"users\"}')",
            params![run.id.as_str()],
        )
        .unwrap();
        drop(conn);
        assert_eq!(user_version(&db), 2);

        let store = open_at(&db).unwrap();
        let read = store.run(&run.id).await.unwrap().unwrap();
        assert!(!read.from_source);
        assert_eq!(read.args["target"], "users");
        drop(store);
        assert_eq!(user_version(&db), SCHEMA_VERSION);
    }

    /// A record whose id, hash or version is not one (edited by hand, written by something
    /// else) is a corrupt store naming the record, never a panic nor a path built from it.
    #[tokio::test]
    async fn a_run_whose_bundle_hash_is_not_one_is_a_corrupt_record_named_by_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        let store = open_at(&db).unwrap();
        let run = a_run();
        store.start_run(&run).await.unwrap();
        store
            .with("break the record", |conn| {
                conn.execute("UPDATE runs SET bundle_hash = '../../x'", [])
            })
            .unwrap();
        let err = store.runs("dev", None, 10).await.unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::Corrupt);
        let chain = format!("{err}: {}", err.source.as_ref().unwrap());
        assert!(
            chain.contains(&format!("run `{}`: invalid bundle hash `../../x`", run.id)),
            "{chain}"
        );
        store
            .with("break the state", |conn| {
                conn.execute(
                    "INSERT INTO env_state (project, env, version, previous_version, deployment_id,
                        deployed_at, bundles) VALUES ('store-v1', 'dev', 'v 1', NULL, 'd', 0, '{}')",
                    [],
                )
            })
            .unwrap();
        let err = store.env_state("dev").await.unwrap_err();
        assert_eq!(err.kind, BackendErrorKind::Corrupt);
        assert!(
            err.source
                .unwrap()
                .to_string()
                .contains("the state of `dev`: invalid version `v 1`")
        );
    }

    #[test]
    fn a_store_from_a_newer_lumo_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lumo.db");
        drop(open_at(&db).unwrap());
        Connection::open(&db)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let Err(e) = open_at(&db) else {
            panic!("a store of version {} opened", SCHEMA_VERSION + 1)
        };
        assert!(
            e.message.contains("was written by a newer lumo;"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&format!(
                "its schema version is {}; this lumo reads versions up to {SCHEMA_VERSION}",
                SCHEMA_VERSION + 1
            )),
            "{}",
            e.message
        );
        assert_eq!(user_version(&db), SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_failing_migration_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let db = old_store_in(dir.path());
        let before = run_columns(&db);
        let mut conn = Connection::open(&db).unwrap();
        let broken = [
            V1_SCHEMA,
            V2_RUN_KIND_AND_ARGS,
            V3_RUN_FROM_SOURCE,
            V4_RUN_COMMAND,
            "ALTER TABLE nowhere ADD COLUMN x TEXT;",
        ];
        assert!(matches!(
            migrate(&mut conn, &broken),
            Err(MigrationError::Sqlite(_))
        ));
        drop(conn);
        assert_eq!(user_version(&db), 0);
        assert_eq!(
            run_columns(&db),
            before,
            "steps 2 to 4 were rolled back with step 5"
        );
        // And the real steps still take it all the way.
        let mut conn = Connection::open(&db).unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        drop(conn);
        assert_eq!(user_version(&db), SCHEMA_VERSION);
    }

    #[test]
    fn lumos_opening_a_new_store_at_once_all_open_it() {
        // Ten lumos started at once on a fresh project (CI jobs sharing a checkout, a script's
        // `&`): each opens the store as the first one creates it. Turning a new file's log on
        // upgrades a read of its header to a write, which SQLite refuses at once, busy
        // timeout or not ("database is locked"), when another lumo reads the header too.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("lumo.db");
            let start = std::sync::Barrier::new(10);
            std::thread::scope(|s| {
                let opening: Vec<_> = (0..10)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            open_at(&db).map(drop)
                        })
                    })
                    .collect();
                for lumo in opening {
                    if let Err(e) = lumo.join().unwrap() {
                        panic!("round {round}: {e}");
                    }
                }
            });
            assert_eq!(user_version(&db), SCHEMA_VERSION);
        }
    }

    #[test]
    fn a_read_only_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = old_store_in(dir.path());
        // SQLite's read-only mode stands in for a file this user may not write (root, who runs
        // these tests in CI, may write any file whatever its mode).
        let read_only = PathBuf::from(format!("file:{}?mode=ro", db.display()));
        let Err(e) = open_at(&read_only) else {
            panic!("a read-only store that needs migrating opened")
        };
        assert!(e.message.contains("is read-only"), "{}", e.message);
        assert!(!e.hint.unwrap_or_default().contains("newer lumo"));
        assert_eq!(user_version(&db), 0);
    }
}
