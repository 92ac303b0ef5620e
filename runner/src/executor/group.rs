//! The task's process group: signalling it, telling when it is empty, and reaping what is left.
//!
//! A task is started as the leader of its own process group so that everything it forks can be
//! found and stopped together (PRODUCT.md §4: "no process left behind"). Knowing when the group
//! is empty is subtler than `kill(-pgid, 0)`: a member that has died but not been reaped yet (a
//! zombie) still counts for `kill`, and a zombie whose parent is not us can only be reaped by
//! that parent. A zombie runs no code and holds no pipe, so it counts as gone here; on Linux the
//! member states are read from `/proc`.

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Makes this process the "child subreaper" of its descendants (Linux `PR_SET_CHILD_SUBREAPER`):
/// when a task's process exits and leaves children behind, they are re-parented to us instead
/// of to init, so they stay visible and, once dead, are reaped by the executor.
///
/// Call once, early, from the process that owns the runs (the CLI's `main`, the Lambda
/// bootstrap). Does nothing on other systems, and only logs when the kernel refuses.
pub fn become_subreaper() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(errno) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("could not become the child subreaper of task processes: {errno}");
    }
}

/// Sends `signal` to every process of the group. A group that is already empty is not an error.
pub(crate) fn signal(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => tracing::warn!("could not send {signal} to process group {pgid}: {errno}"),
    }
}

/// Whether any process of the group is still alive (zombies do not count).
pub(crate) fn has_live_members(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return false;
    }
    #[cfg(target_os = "linux")]
    if let Some(alive) = linux::any_live_member(pgid) {
        return alive;
    }
    // Without /proc, `kill` is all there is; zombies then count as alive until reaped.
    true
}

/// Reaps every dead child of ours in the group without blocking.
///
/// Must only be called once the group leader has been reaped by tokio: `waitpid(-pgid)` would
/// otherwise take the leader's exit status from under tokio's `Child::wait`. The members it
/// finds are the group's orphans, re-parented to us because we are the subreaper.
pub(crate) fn reap_dead_members(pgid: Pid) {
    let any_in_group = Pid::from_raw(-pgid.as_raw());
    loop {
        match waitpid(any_in_group, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                tracing::warn!("could not reap processes of group {pgid}: {errno}");
                return;
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use nix::unistd::Pid;

    /// Scans `/proc` for a process of the group that is not a zombie; `None` when `/proc` cannot
    /// be read at all.
    pub(super) fn any_live_member(pgid: Pid) -> Option<bool> {
        let entries = std::fs::read_dir("/proc").ok()?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // Processes come and go while we scan: an unreadable entry is one that just ended.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some((state, pgrp)) = parse_stat(&stat)
                && pgrp == pgid.as_raw()
                && !matches!(state, 'Z' | 'X' | 'x')
            {
                return Some(true);
            }
        }
        Some(false)
    }

    /// State and process group from `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`. The
    /// command name may contain spaces and parentheses, so fields are counted after the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<(char, i32)> {
        let after_comm = &stat[stat.rfind(')')? + 1..];
        let mut fields = after_comm.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let _ppid = fields.next()?;
        let pgrp = fields.next()?.parse().ok()?;
        Some((state, pgrp))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_stat_with_odd_command_names() {
            assert_eq!(
                parse_stat("42 (sleep) S 1 40 40 0 -1 4194560"),
                Some(('S', 40))
            );
            assert_eq!(parse_stat("42 (a) b (c) Z 1 77 77 0"), Some(('Z', 77)));
            assert_eq!(parse_stat("garbage"), None);
        }

        #[test]
        fn own_group_is_alive() {
            let own = nix::unistd::getpgrp();
            assert_eq!(any_live_member(own), Some(true));
        }
    }
}
