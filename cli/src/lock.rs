//! One writer per environment (PRODUCT.md §6), from the commands' side: take the writer lock
//! (waiting up to `--wait`), keep its lease alive with a heartbeat while working, clean up
//! after a writer that died, and release it at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::records::{AuditEvent, EventKind, LockHolder, Timestamp, new_id};
use crate::backend::{Acquired, Backend, LockSlot};
use crate::error::{CliError, ExitKind};
use crate::output::Printer;
use crate::stop::{StopGuard, StopReason, StopSignal};

/// How long a writer's lease lasts without a heartbeat: `LUMO_LOCK_LEASE` (e.g. `30s`),
/// default 60 s. A writer that dies keeps the environment this long at most.
pub fn lease() -> Duration {
    std::env::var("LUMO_LOCK_LEASE")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .map(|d| d.max(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(60))
}

/// A new holder record for this process.
pub fn holder(actor: &str, operation: String, reason: Option<String>, leased: bool) -> LockHolder {
    let now = Timestamp::now();
    LockHolder {
        token: new_id(),
        actor: actor.to_string(),
        operation,
        reason,
        host: LockHolder::this_host(),
        pid: leased.then(std::process::id),
        since: now,
        expires_at: leased.then(|| Timestamp(now.millis() + lease().as_millis() as i64)),
    }
}

/// The exit-code-3 error for an environment someone else holds.
pub fn locked_error(env: &str, holder: &LockHolder, waited: Duration) -> CliError {
    // Under a second is no wait worth reporting (the default `--wait 0` takes a few ms).
    let waited = if waited.as_secs() == 0 {
        String::new()
    } else {
        format!(
            " (waited {})",
            humantime::format_duration(Duration::from_secs(waited.as_secs()))
        )
    };
    let hint = if holder.expires_at.is_none() {
        format!(
            "it was locked by hand; `lumo unlock --env {env}` (by `{}`, or with `--force`) releases it",
            holder.actor
        )
    } else {
        "wait for it with `--wait 10m`".to_string()
    };
    CliError::new(
        ExitKind::Locked,
        format!(
            "environment `{env}` is locked by {}{waited}",
            holder.describe()
        ),
    )
    .hint(hint)
}

/// Takes `slot` of `env` for `me`, retrying for up to `wait` while another holds it (saying
/// once on stderr whom it waits for); exit code 3 naming the holder once `wait` has passed.
/// Returns the holder it displaced, whose lease had run out or whose process was gone.
pub async fn acquire_waiting(
    backend: &Backend,
    env: &str,
    slot: LockSlot,
    me: &LockHolder,
    wait: Duration,
    printer: &Printer,
    stop: &StopSignal,
) -> Result<Option<LockHolder>, CliError> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        match backend.locks.acquire(env, slot, me).await? {
            Acquired::Taken { displaced } => return Ok(displaced),
            Acquired::Held(other) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(locked_error(env, &other, waited));
                }
                if !announced {
                    printer.status(format!(
                        "Waiting for `{env}`, locked by {}",
                        other.describe()
                    ));
                    announced = true;
                }
                let pause = (wait - waited).min(Duration::from_millis(500));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    reason = stop.stopped() => return Err(CliError::stopped(reason)),
                }
            }
        }
    }
}

/// The writer lock of one environment, held until [`WriterLock::release`].
pub struct WriterLock {
    backend: Backend,
    env: String,
    token: String,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// While the lock is held, a stop is this command's to handle (see [`StopSignal::guard`]).
    _guard: StopGuard,
}

impl WriterLock {
    /// Takes `env`'s writer lock for `operation`, waiting up to `wait` for whoever holds it.
    /// Work a dead writer left `running` is marked `abandoned` (and, locally, its processes
    /// stopped) before this returns. Should the lock be taken over later (this process stalled
    /// past its lease), `stop` is pulled with [`StopReason::LockLost`].
    #[allow(clippy::too_many_arguments)]
    pub async fn take(
        backend: &Backend,
        project: &str,
        env: &str,
        actor: &str,
        operation: String,
        wait: Duration,
        printer: &Printer,
        stop: &StopSignal,
    ) -> Result<WriterLock, CliError> {
        let me = holder(actor, operation, None, true);
        let displaced =
            acquire_waiting(backend, env, LockSlot::Writer, &me, wait, printer, stop).await?;
        let lock = WriterLock::hold(backend, env, me.token.clone(), stop);
        if let Some(dead) = displaced {
            let why = if dead.expires_at.is_some_and(|at| at <= Timestamp::now()) {
                "whose lease ran out"
            } else {
                "whose process is gone"
            };
            let message = format!("took over from {}, {why}", dead.describe());
            printer.warn(format!("`{env}`: {message}"));
            record(
                backend,
                project,
                env,
                actor,
                EventKind::LeaseExpired,
                message,
            )
            .await;
        }
        let abandoned = backend
            .audit
            .abandon_unfinished(
                env,
                "abandoned: the lumo process running it stopped before it ended",
            )
            .await?;
        if !abandoned.is_empty() {
            let message = format!("marked abandoned: {}", abandoned.join(", "));
            printer.warn(format!("`{env}`: {message}"));
            record(backend, project, env, actor, EventKind::Abandoned, message).await;
        }
        Ok(lock)
    }

    fn hold(backend: &Backend, env: &str, token: String, stop: &StopSignal) -> WriterLock {
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let backend = backend.clone();
            let env = env.to_string();
            let token = token.clone();
            let lost = Arc::clone(&lost);
            let stop = stop.clone();
            tokio::spawn(async move {
                let lease = lease();
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let until = Timestamp(Timestamp::now().millis() + lease.as_millis() as i64);
                    match backend.locks.renew(&env, &token, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Another writer owns the environment now: stop the task and write
                            // nothing more (our records are its to mark abandoned).
                            lost.store(true, Ordering::Relaxed);
                            stop.stop(StopReason::LockLost);
                            return;
                        }
                        // A blip: the next beat tries again, well within the lease.
                        Err(e) => tracing::warn!("cannot renew the lock of `{env}`: {e}"),
                    }
                }
            })
        };
        WriterLock {
            backend: backend.clone(),
            env: env.to_string(),
            token,
            lost,
            heartbeat,
            _guard: stop.guard(),
        }
    }

    /// Whether another writer took the environment over (our lease ran out unrenewed).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops the heartbeat and releases the lock (a failure only means the lease runs out).
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Err(e) = self
            .backend
            .locks
            .release(&self.env, LockSlot::Writer, Some(&self.token))
            .await
        {
            tracing::warn!(
                "cannot release the lock of `{}` (it expires with its lease): {e}",
                self.env
            );
        }
    }
}

/// Records an audit event; a failure to record is reported, never fatal.
pub async fn record(
    backend: &Backend,
    project: &str,
    env: &str,
    actor: &str,
    kind: EventKind,
    message: String,
) {
    let event = AuditEvent {
        id: new_id(),
        project: project.to_string(),
        env: env.to_string(),
        kind,
        actor: actor.to_string(),
        at: Timestamp::now(),
        message,
    };
    if let Err(e) = backend.audit.record_event(&event).await {
        tracing::warn!("cannot record the `{kind}` event of `{env}`: {e}");
    }
}
