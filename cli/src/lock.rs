//! One writer per environment (PRODUCT.md §6), from the commands' side: take the writer lock
//! (waiting up to `--wait`), keep its lease alive with a heartbeat while working, clean up
//! after a writer that died, and release it at the end. [`with_writer_lock`] is the one
//! "take the lock, work, release" every writing command goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::records::{EventKind, LockHolder, Timestamp, new_id};
use crate::backend::{Acquired, Backend, LockSlot};
use crate::error::{CliError, ExitKind};
use crate::operation::Operation;
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

/// Takes `slot` of the operation's environment for `me`, retrying for up to `wait` while
/// another holds it (saying once whom it waits for); exit code 3 naming the holder once `wait`
/// has passed. Returns the holder it displaced, whose lease had run out or whose process was
/// gone.
pub async fn acquire_waiting(
    op: &Operation,
    slot: LockSlot,
    me: &LockHolder,
    wait: Duration,
) -> Result<Option<LockHolder>, CliError> {
    let env = op.env.as_str();
    let started = Instant::now();
    let mut announced = false;
    loop {
        match op.backend.locks.acquire(env, slot, me).await? {
            Acquired::Taken { displaced } => return Ok(displaced),
            Acquired::Held(other) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(locked_error(env, &other, waited));
                }
                if !announced {
                    op.progress.waiting_for_lock(env, &other);
                    announced = true;
                }
                let pause = (wait - waited).min(Duration::from_millis(500));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    reason = op.stop.stopped() => return Err(CliError::stopped(reason)),
                }
            }
        }
    }
}

/// Takes the operation's environment's writer lock for `what` (`deploy v1`, `run migrate`),
/// waiting up to `wait`; runs `work` holding it; releases it, whatever `work` returned.
pub async fn with_writer_lock<T>(
    op: &Operation,
    what: String,
    wait: Duration,
    work: impl AsyncFnOnce() -> Result<T, CliError>,
) -> Result<T, CliError> {
    let lock = WriterLock::take(op, what, wait).await?;
    let result = work().await;
    lock.release().await;
    result
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
    /// Takes the operation's environment's writer lock for `what`, waiting up to `wait` for
    /// whoever holds it. Work a dead writer left `running` is marked `abandoned` (and, locally,
    /// its processes stopped) before this returns. Should the lock be taken over later (this
    /// process stalled past its lease), the operation's stop is pulled with
    /// [`StopReason::LockLost`].
    pub async fn take(
        op: &Operation,
        what: String,
        wait: Duration,
    ) -> Result<WriterLock, CliError> {
        let env = op.env.as_str();
        let me = holder(&op.actor, what, None, true);
        let displaced = acquire_waiting(op, LockSlot::Writer, &me, wait).await?;
        let lock = WriterLock::hold(&op.backend, env, me.token.clone(), &op.stop);
        if let Some(dead) = displaced {
            let why = if dead.expires_at.is_some_and(|at| at <= Timestamp::now()) {
                "whose lease ran out"
            } else {
                "whose process is gone"
            };
            let message = format!("took over from {}, {why}", dead.describe());
            op.progress.environment_cleaned_up(env, &message);
            op.record_event(EventKind::LeaseExpired, message).await;
        }
        let abandoned = op
            .backend
            .abandon_unfinished(
                env,
                "abandoned: the lumo process running it stopped before it ended",
            )
            .await?;
        if !abandoned.is_empty() {
            let message = format!("marked abandoned: {}", abandoned.join(", "));
            op.progress.environment_cleaned_up(env, &message);
            op.record_event(EventKind::Abandoned, message).await;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lumo_runner::executor::{DiscardOutput, OutputObserver};

    use super::*;
    use crate::backend::records::{Deployment, TaskRun};
    use crate::config::{ProjectConfig, Provider};
    use crate::progress::{Progress, Step};
    use crate::project::Project;

    /// Keeps what the core reported, as the terminal would show it in words.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);

    struct NoStep;
    impl Step for NoStep {
        fn finish(self: Box<Self>) {}
    }

    impl Progress for Recorded {
        fn step(&self, _: String) -> Box<dyn Step> {
            Box::new(NoStep)
        }
        fn detail(&self, _: String) {}
        fn waiting_for_lock(&self, env: &str, holder: &LockHolder) {
            self.0
                .lock()
                .unwrap()
                .push(format!("waiting for {env} held by {}", holder.actor));
        }
        fn environment_cleaned_up(&self, env: &str, message: &str) {
            self.0.lock().unwrap().push(format!("{env}: {message}"));
        }
        fn deployment_started(&self, _: &Deployment) {}
        fn run_started(&self, _: &TaskRun) {}
        fn run_output(&self, _: &str) -> Box<dyn OutputObserver> {
            Box::new(DiscardOutput)
        }
        fn run_finished(&self, _: &TaskRun) {}
        fn run_retrying(&self, _: &TaskRun, _: u32, _: Duration) {}
    }

    fn operation(root: &std::path::Path, actor: &str, progress: Arc<Recorded>) -> Operation {
        let config = ProjectConfig {
            path: root.join("lumo.config.js"),
            root: root.to_path_buf(),
            project_name: "p".into(),
            provider: Provider::Local,
            environment: None,
            environments: None,
            region: None,
            aws: Default::default(),
            secrets: Default::default(),
            tasks: Default::default(),
            access: Default::default(),
            retention: Default::default(),
            ignored_keys: Vec::new(),
            backend_problems: Vec::new(),
        };
        let project = Project {
            config,
            tasks: Vec::new(),
            not_tasks: Vec::new(),
        };
        let backend = crate::backend::local::open(&project, false).unwrap();
        Operation {
            project: Arc::new(project),
            env: "dev".into(),
            actor: actor.into(),
            backend,
            progress,
            stop: StopSignal::new(),
        }
    }

    /// A deploy that fails part-way must not leave the environment locked.
    #[tokio::test]
    async fn the_lock_is_released_whatever_the_work_returns() {
        let dir = tempfile::tempdir().unwrap();
        let op = operation(dir.path(), "alice", Arc::default());
        let failed: Result<(), CliError> =
            with_writer_lock(&op, "deploy v1".into(), Duration::ZERO, async || {
                let held = op.backend.locks.current(&op.env).await?.writer;
                assert_eq!(held.map(|h| h.operation).as_deref(), Some("deploy v1"));
                Err(CliError::invalid("the work failed"))
            })
            .await;
        assert_eq!(failed.unwrap_err().to_string(), "the work failed");
        assert!(
            op.backend
                .locks
                .current(&op.env)
                .await
                .unwrap()
                .writer
                .is_none()
        );
        let again = with_writer_lock(&op, "deploy v2".into(), Duration::ZERO, async || Ok(2)).await;
        assert_eq!(again.unwrap(), 2);
    }

    /// Someone else's lock: the wait is reported once, through the operation's observer, and
    /// ends in exit code 3 naming the holder; the work never runs.
    #[tokio::test]
    async fn a_held_environment_is_waited_for_then_refused() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(Recorded::default());
        let op = operation(dir.path(), "alice", Arc::clone(&progress));
        let bob = holder("bob", "lock".into(), Some("release day".into()), false);
        op.backend
            .locks
            .acquire(&op.env, LockSlot::Manual, &bob)
            .await
            .unwrap();
        let work = async || -> Result<(), CliError> {
            unreachable!("the work runs only with the lock held")
        };
        let refused = with_writer_lock(&op, "deploy v1".into(), Duration::from_millis(1200), work)
            .await
            .unwrap_err();
        assert_eq!(refused.kind, ExitKind::Locked);
        assert!(refused.to_string().contains("`bob`"), "{refused}");
        assert_eq!(
            *progress.0.lock().unwrap(),
            ["waiting for dev held by bob"],
            "said once, however long the wait"
        );
    }
}
