//! The `local` provider's environment locks: rows of the embedded store, checked and taken in
//! one `BEGIN IMMEDIATE` transaction, so two `lumo` processes racing for an environment are
//! serialised by SQLite and exactly one wins. A holder on this machine whose process is gone
//! is not live, whatever its lease says: a `kill -9`ed deploy never blocks the next one.

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::SqliteStore;
use crate::backend::records::{LockHolder, Timestamp};
use crate::backend::{Acquired, BackendResult, EnvLocks, LockSlot, LockState};

fn slot_name(slot: LockSlot) -> &'static str {
    match slot {
        LockSlot::Writer => "writer",
        LockSlot::Manual => "manual",
    }
}

fn read(
    tx: &Transaction<'_>,
    project: &str,
    env: &str,
    slot: LockSlot,
) -> rusqlite::Result<Option<LockHolder>> {
    tx.query_row(
        "SELECT token, actor, operation, reason, host, pid, since, expires_at FROM locks
         WHERE project = ?1 AND env = ?2 AND slot = ?3",
        params![project, env, slot_name(slot)],
        |row| {
            Ok(LockHolder {
                token: row.get(0)?,
                actor: row.get(1)?,
                operation: row.get(2)?,
                reason: row.get(3)?,
                host: row.get(4)?,
                pid: row.get(5)?,
                since: Timestamp(row.get(6)?),
                expires_at: row.get::<_, Option<i64>>(7)?.map(Timestamp),
            })
        },
    )
    .optional()
}

fn write(
    tx: &Transaction<'_>,
    project: &str,
    env: &str,
    slot: LockSlot,
    h: &LockHolder,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO locks (project, env, slot, token, actor, operation, reason, host, pid, since, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            project,
            env,
            slot_name(slot),
            h.token,
            h.actor,
            h.operation,
            h.reason,
            h.host,
            h.pid,
            h.since.millis(),
            h.expires_at.map(Timestamp::millis)
        ],
    )?;
    Ok(())
}

/// A writer is live while its lease lasts and, when it runs on this machine, its process too.
fn live(holder: &LockHolder, now: Timestamp, this_host: &str) -> bool {
    if holder.expired(now) {
        return false;
    }
    match holder.pid {
        Some(pid) if holder.host == this_host => process_alive(pid),
        _ => true,
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // EPERM: it exists, as someone else.
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[async_trait]
impl EnvLocks for SqliteStore {
    async fn acquire(
        &self,
        env: &str,
        slot: LockSlot,
        holder: &LockHolder,
    ) -> BackendResult<Acquired> {
        let project = self.project.clone();
        let this_host = LockHolder::this_host();
        self.with("take the environment's lock", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = Timestamp::now();
            let writer = read(&tx, &project, env, LockSlot::Writer)?;
            let manual = read(&tx, &project, env, LockSlot::Manual)?;
            if let Some(m) = &manual
                && m.actor != holder.actor
            {
                return Ok(Acquired::Held(m.clone()));
            }
            let mut displaced = None;
            if let Some(w) = writer {
                if live(&w, now, &this_host) {
                    return Ok(Acquired::Held(w));
                }
                // A dead writer is only displaced by a new writer; a manual lock leaves it for
                // the next writer to find (and abandon its work).
                if slot == LockSlot::Writer {
                    displaced = Some(w);
                }
            }
            write(&tx, &project, env, slot, holder)?;
            tx.commit()?;
            Ok(Acquired::Taken { displaced })
        })
    }

    async fn renew(&self, env: &str, token: &str, expires_at: Timestamp) -> BackendResult<bool> {
        let project = self.project.clone();
        self.with("renew the environment's lock", |conn| {
            let changed = conn.execute(
                "UPDATE locks SET expires_at = ?4 WHERE project = ?1 AND env = ?2 AND slot = 'writer' AND token = ?3",
                params![project, env, token, expires_at.millis()],
            )?;
            Ok(changed == 1)
        })
    }

    async fn release(
        &self,
        env: &str,
        slot: LockSlot,
        token: Option<&str>,
    ) -> BackendResult<Option<LockHolder>> {
        let project = self.project.clone();
        self.with("release the environment's lock", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(current) = read(&tx, &project, env, slot)? else {
                return Ok(None);
            };
            if token.is_some_and(|t| t != current.token) {
                return Ok(None);
            }
            tx.execute(
                "DELETE FROM locks WHERE project = ?1 AND env = ?2 AND slot = ?3",
                params![project, env, slot_name(slot)],
            )?;
            tx.commit()?;
            Ok(Some(current))
        })
    }

    async fn current(&self, env: &str) -> BackendResult<LockState> {
        let project = self.project.clone();
        let this_host = LockHolder::this_host();
        self.with("read the environment's lock", |conn| {
            let tx = conn.transaction()?;
            let now = Timestamp::now();
            let writer =
                read(&tx, &project, env, LockSlot::Writer)?.filter(|w| live(w, now, &this_host));
            let manual = read(&tx, &project, env, LockSlot::Manual)?;
            Ok(LockState { writer, manual })
        })
    }
}
