//! Why a deploy or a manual run must end before its tasks do: the user interrupted lumo
//! (Ctrl-C, or a CI job cancelled with SIGTERM), or this writer lost its environment's lock to
//! another one. Whoever notices pulls the [`StopSignal`]; the running task is stopped (SIGTERM,
//! a grace, SIGKILL: the same path as a timeout), nothing new starts, every record says what
//! happened, and the command ends with the matching exit code.
//!
//! Installing a signal handler replaces the default "die at once", so the handler must still
//! end lumo promptly when nothing would notice the stop: only a command holding an
//! environment's writer lock ([`StopSignal::guard`]) winds down by itself; anything else is
//! cut short by `main` ([`StopSignal::unguarded`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

/// What asked for the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT (Ctrl-C), SIGTERM or SIGHUP reached lumo.
    Interrupted(Interrupt),
    /// The environment's writer lock was taken over by another writer: this one's lease ran
    /// out unrenewed (a paused or starved process), and it must not write any more.
    LockLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Sigint,
    Sigterm,
    /// The terminal closed (a dropped SSH session): stopped as on SIGTERM, so the task does
    /// not run on unsupervised past its timeout.
    Sighup,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interrupt::Sigint => "SIGINT",
            Interrupt::Sigterm => "SIGTERM",
            Interrupt::Sighup => "SIGHUP",
        })
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Interrupted(signal) => write!(f, "interrupted by {signal}"),
            StopReason::LockLost => f.write_str("the environment's lock was taken over"),
        }
    }
}

/// A one-shot, shared "stop now" with its reason. Cheap to clone; the first reason wins.
#[derive(Clone)]
pub struct StopSignal {
    sender: Arc<watch::Sender<Option<StopReason>>>,
    /// The same, as the plain flag the runner's executor watches.
    flag: Arc<watch::Sender<bool>>,
    guards: Arc<AtomicUsize>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::new()
    }
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal {
            sender: Arc::new(watch::channel(None).0),
            flag: Arc::new(watch::channel(false).0),
            guards: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Asks everything watching to stop. Later calls keep the first reason.
    pub fn stop(&self, reason: StopReason) {
        self.sender.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
        self.flag.send_replace(true);
    }

    /// A receiver that turns `true` on a stop, for [`lumo_runner::executor::TaskProcess::stop`].
    pub fn flag(&self) -> watch::Receiver<bool> {
        self.flag.subscribe()
    }

    /// The reason, once a stop was asked for.
    pub fn reason(&self) -> Option<StopReason> {
        *self.sender.borrow()
    }

    /// Completes when a stop is asked for (at once if it already was).
    pub async fn stopped(&self) -> StopReason {
        let mut receiver = self.sender.subscribe();
        loop {
            if let Some(reason) = *receiver.borrow_and_update() {
                return reason;
            }
            if receiver.changed().await.is_err() {
                // The sender lives as long as `self`: unreachable, but never a busy loop.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Marks a stretch of work that handles a stop itself (it holds a writer lock, stops its
    /// task and records the outcome), until the guard is dropped.
    pub fn guard(&self) -> StopGuard {
        self.guards.fetch_add(1, Ordering::SeqCst);
        StopGuard {
            guards: Arc::clone(&self.guards),
        }
    }

    /// Completes with the reason of a stop that arrives while no [`guard`](Self::guard) is
    /// held: nothing else will act on it, so the caller should end the command. A stop that
    /// arrives under a guard is left to the guarded work, and this never completes.
    pub async fn unguarded(&self) -> StopReason {
        let reason = self.stopped().await;
        if self.guards.load(Ordering::SeqCst) == 0 {
            reason
        } else {
            std::future::pending().await
        }
    }

    /// Turns SIGINT, SIGTERM and SIGHUP into stops. Call once, inside the runtime. Signals that arrive
    /// after the first only say that lumo is already stopping.
    pub fn listen_for_signals(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::warn!(
                    "cannot listen for SIGINT/SIGTERM/SIGHUP; an interrupt ends lumo at once"
                );
                return;
            };
            let stop = self.clone();
            tokio::spawn(async move {
                loop {
                    let signal = tokio::select! {
                        Some(()) = int.recv() => Interrupt::Sigint,
                        Some(()) = term.recv() => Interrupt::Sigterm,
                        Some(()) = hup.recv() => Interrupt::Sighup,
                        else => return,
                    };
                    if stop.reason().is_some() {
                        tracing::warn!("already stopping: the running task gets its grace period");
                    }
                    stop.stop(StopReason::Interrupted(signal));
                }
            });
        }
    }
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSignal")
            .field("reason", &self.reason())
            .finish_non_exhaustive()
    }
}

/// See [`StopSignal::guard`].
pub struct StopGuard {
    guards: Arc<AtomicUsize>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.guards.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_late_watchers_see_it() {
        let stop = StopSignal::new();
        assert_eq!(stop.reason(), None);
        stop.stop(StopReason::LockLost);
        stop.stop(StopReason::Interrupted(Interrupt::Sigint));
        assert_eq!(stop.stopped().await, StopReason::LockLost);
    }

    #[tokio::test]
    async fn an_unguarded_stop_ends_the_command_a_guarded_one_does_not() {
        let stop = StopSignal::new();
        let guard = stop.guard();
        stop.stop(StopReason::Interrupted(Interrupt::Sigterm));
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), stop.unguarded()).await;
        assert!(
            waited.is_err(),
            "a guarded stop is left to the guarded work"
        );
        drop(guard);
        assert_eq!(
            stop.unguarded().await,
            StopReason::Interrupted(Interrupt::Sigterm)
        );
    }
}
