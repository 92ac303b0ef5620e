//! Ending a run: waiting for the task while its deadline and the caller's stop are watched,
//! and stopping what is left of it — its process group (SIGTERM, a grace, SIGKILL) and the
//! processes that left the group — so that nothing outlives the run.
//!
//! Every wait here goes through [`OutputPump::pump`]: a task blocked on a full pipe keeps
//! running (and can act on its SIGTERM) only while its output is read.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::Instant;

use super::group;
use super::pump::OutputPump;

/// How long to wait for the group to empty after SIGKILL before giving up on it. SIGKILL cannot
/// be ignored; only a process stuck in the kernel (a dead NFS mount) outlasts this.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often the group is checked for live processes while waiting for it to empty.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// How many times the processes that left a task's group are looked for and stopped: stopping
/// one can orphan its children, found the next time. Only a task that forks faster than it is
/// killed needs more, and it gets a warning.
const ESCAPED_ROUNDS: usize = 10;

/// Why a task was stopped before it ended by itself.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cut {
    TimedOut,
    Stopped,
}

/// The moment a run that started at `started` and may take `timeout` is out of time. A timeout
/// too large to add is as good as none (a century is past any deadline that matters).
pub(super) fn deadline(started: Instant, timeout: Duration) -> Instant {
    started
        .checked_add(timeout)
        .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Completes when the run must be cut short: its deadline passed, or `stop` turned `true`.
async fn cut_short(deadline: Instant, stop: Option<watch::Receiver<bool>>) -> Cut {
    let stopped = async {
        let asked = match stop {
            Some(mut stop) => stop.wait_for(|s| *s).await.is_ok(),
            None => false,
        };
        if !asked {
            // No stop to watch, or its sender is gone and can no longer ask for one.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => Cut::TimedOut,
        () = stopped => Cut::Stopped,
    }
}

/// Kills the task's whole group if the run is abandoned half-way (the executor's future
/// dropped, or an error return), so a cancelled run leaves nothing behind: the group, and (best
/// effort, there is no waiting here) what left it and is already our child.
pub(super) struct GroupGuard<'a> {
    pgid: Pid,
    run_id: &'a str,
    armed: bool,
}

impl GroupGuard<'_> {
    pub fn new(pgid: Pid, run_id: &str) -> GroupGuard<'_> {
        GroupGuard {
            pgid,
            run_id,
            armed: true,
        }
    }

    /// The group has been stopped and waited for: nothing is left to kill.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            group::signal(self.pgid, Signal::SIGKILL);
            group::Escaped::new(self.run_id).signal(Signal::SIGKILL);
        }
    }
}

impl OutputPump<'_> {
    /// Waits for the task's leader (`child`, leading group `pgid`) to exit, or, once the run
    /// must be cut short (`deadline`, `stop`), stops the whole group and then waits for the
    /// leader. Returns how the leader
    /// ended and why it was cut short, if it was.
    pub(super) async fn wait_or_cut(
        &mut self,
        child: &mut Child,
        pgid: Pid,
        deadline: Instant,
        stop: Option<watch::Receiver<bool>>,
        grace: Duration,
    ) -> (io::Result<ExitStatus>, Option<Cut>) {
        let cut_short = cut_short(deadline, stop);
        let waited = self
            .pump(async {
                tokio::select! {
                    waited = child.wait() => Ok(waited),
                    cut = cut_short => Err(cut),
                }
            })
            .await;
        match waited {
            Ok(waited) => (waited, None),
            Err(cut) => {
                tracing::debug!(%pgid, ?cut, "task cut short");
                self.stop_group(pgid, grace, Some(child)).await;
                (self.pump(child.wait()).await, Some(cut))
            }
        }
    }

    /// Once the leader has exited (and been reaped by tokio): reaps the group's dead members
    /// and, unless the run was cut short (then the group was stopped already), stops the
    /// background children the task left behind, which are part of the run and end with it.
    pub(super) async fn end_group(&mut self, pgid: Pid, was_cut: bool, grace: Duration) {
        // Tokio has reaped the leader, so waiting on the whole group cannot take its status now.
        group::reap_dead_members(pgid);
        if !was_cut {
            self.stop_group(pgid, grace, None).await;
            group::reap_dead_members(pgid);
        }
    }

    /// Stops and reaps the processes of run `run_id` that left its group ([`group::Escaped`]):
    /// SIGTERM, up to `grace` for them to exit, then SIGKILL; again while stopping them
    /// orphans more.
    pub(super) async fn stop_escaped(
        &mut self,
        run_id: &str,
        task_started: Option<u64>,
        grace: Duration,
    ) {
        let mut escaped = group::Escaped::new(run_id).with_strays_since(task_started);
        for _ in 0..ESCAPED_ROUNDS {
            if escaped.signal(Signal::SIGTERM) == 0 {
                return;
            }
            if self
                .pump(tokio::time::timeout(grace, all_reaped(&mut escaped)))
                .await
                .is_ok()
            {
                continue;
            }
            tracing::debug!(
                "processes that left the task's group outlived SIGTERM; sending SIGKILL"
            );
            escaped.signal(Signal::SIGKILL);
            if self
                .pump(tokio::time::timeout(KILL_WAIT, all_reaped(&mut escaped)))
                .await
                .is_err()
            {
                break;
            }
        }
        // Out of rounds, or SIGKILL did not end them: a last look, then give up on them.
        if escaped.signal(Signal::SIGKILL) > 0 {
            tracing::warn!("processes of run {run_id} that left its process group are still alive");
        }
    }

    /// Stops every process left in the group: SIGTERM, up to `grace` for them to exit, then
    /// SIGKILL. Returns once the group is empty (zombies aside) and `leader`, if given, has
    /// exited.
    ///
    /// The leader is signalled on its own as well: it is normally in the group, but a task may
    /// move it to another one, and waiting for a leader that never got the signal would hang.
    async fn stop_group(&mut self, pgid: Pid, grace: Duration, mut leader: Option<&mut Child>) {
        if !group::has_live_members(pgid) && !leader_running(&mut leader) {
            return;
        }
        group::signal(pgid, Signal::SIGTERM);
        // A stopped process would only act on SIGTERM once continued.
        group::signal(pgid, Signal::SIGCONT);
        if leader_running(&mut leader)
            && let Some(id) = leader.as_deref().and_then(Child::id)
            && let Ok(id) = i32::try_from(id)
        {
            // `id` is only known while the leader is unreaped, so it cannot name another process.
            let _ = nix::sys::signal::kill(Pid::from_raw(id), Signal::SIGTERM);
        }
        if self
            .pump(tokio::time::timeout(
                grace,
                all_gone(pgid, leader.as_deref_mut()),
            ))
            .await
            .is_ok()
        {
            return;
        }
        tracing::debug!(%pgid, "task processes outlived SIGTERM; sending SIGKILL");
        group::signal(pgid, Signal::SIGKILL);
        if let Some(child) = leader.as_deref_mut() {
            let _ = child.start_kill();
        }
        if self
            .pump(tokio::time::timeout(KILL_WAIT, all_gone(pgid, leader)))
            .await
            .is_err()
        {
            tracing::warn!(
                "processes of group {pgid} are still alive {}s after SIGKILL",
                KILL_WAIT.as_secs()
            );
        }
    }
}

/// Whether the leader (if any) has not exited yet. Reaps it when it has; tokio keeps its status
/// for the `wait` that follows.
fn leader_running(leader: &mut Option<&mut Child>) -> bool {
    leader
        .as_deref_mut()
        .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
}

/// Completes once every process `escaped` has signalled is reaped.
async fn all_reaped(escaped: &mut group::Escaped) {
    while !escaped.reap() {
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Completes once no live process is left in the group and the leader, if given, has exited.
async fn all_gone(pgid: Pid, mut leader: Option<&mut Child>) {
    while leader_running(&mut leader) || group::has_live_members(pgid) {
        tokio::time::sleep(GROUP_POLL).await;
    }
}
