//! The task's process group: signalling it, telling when it is empty, and reaping what is left.
//!
//! A task is started as the leader of its own process group so that everything it forks can be
//! found and stopped together (PRODUCT.md §4: "no process left behind"). Knowing when the group
//! is empty is subtler than `kill(-pgid, 0)`: a member that has died but not been reaped yet (a
//! zombie) still counts for `kill`, and a zombie whose parent is not us can only be reaped by
//! that parent. A zombie runs no code and holds no pipe, so it counts as gone here; on Linux the
//! member states are read from `/proc`.
//!
//! A process can also leave the group (`setsid`, `setpgid`), out of reach of signals to it.
//! Once its parent has exited it is re-parented to us (the subreaper), and [`Escaped`] finds
//! it among our children by the `LUMO_RUN_ID` in its environment. With `--concurrency` several
//! tasks run in this one process at once: [`LIVE_TASKS`] names their leaders and groups, which
//! are never taken for leftovers of another run.

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The leaders (and so the process groups) of the tasks this process is running now.
///
/// A task is added in the same critical section that spawns it, and the search for escaped
/// processes holds the lock while it looks and signals: a task that has just been started can
/// never be mistaken for a stray child of ours.
static LIVE_TASKS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live_tasks() -> MutexGuard<'static, Vec<i32>> {
    // The list stays consistent whatever panicked while holding it: every change is one push
    // or one removal.
    LIVE_TASKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running task in [`LIVE_TASKS`]; removed when dropped.
pub(crate) struct LiveTask {
    pid: Option<i32>,
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let mut live = live_tasks();
            if let Some(at) = live.iter().position(|&p| p == pid) {
                live.swap_remove(at);
            }
        }
    }
}

/// Starts a task's process (which must lead a new process group) and registers it as live.
pub(crate) fn spawn_leader(command: &mut Command) -> io::Result<(Child, LiveTask)> {
    let mut live = live_tasks();
    let child = command.spawn()?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    live.extend(pid);
    Ok((child, LiveTask { pid }))
}

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

/// The processes of one run that left its process group and have been re-parented to us, to
/// stop and reap after the run: each is sent a signal (its whole group when it leads one, as a
/// `setsid` process does) and reaped by its pid.
///
/// Stopping one may orphan more (its children, now re-parented to us), so callers go round
/// until [`Escaped::signal`] finds none. Processes whose environment carries this run's
/// `LUMO_RUN_ID` are taken, and the members of groups already being stopped, and — lumo being
/// the subreaper, so whatever a task orphans becomes its child — a child that cleared its
/// environment and started after the task did, when no other task runs here
/// ([`Escaped::with_strays_since`]). Another run's processes are not ours to kill. Does
/// nothing outside Linux.
pub(crate) struct Escaped {
    run_id: String,
    /// When the run's task started (clock ticks since boot, as `/proc/<pid>/stat` counts):
    /// set, a child of ours that carries no `LUMO_RUN_ID` at all (it cleared its
    /// environment: `setsid env -i daemon`) and started since is taken for this run's too,
    /// provided no other task is running in this process to claim it. With `--concurrency`
    /// such a stray is left to the last run that ends.
    strays_since: Option<u64>,
    /// Every process and every group signalled so far.
    signalled: HashSet<i32>,
    groups: HashSet<i32>,
    /// Signalled processes not reaped yet.
    unreaped: HashSet<i32>,
}

impl Escaped {
    pub(crate) fn new(run_id: &str) -> Escaped {
        Escaped {
            run_id: run_id.to_owned(),
            strays_since: None,
            signalled: HashSet::new(),
            groups: HashSet::new(),
            unreaped: HashSet::new(),
        }
    }

    /// Also takes the children that cleared their environment and started at or after
    /// `task_started` (see `strays_since`); `None` (the start is unknown) takes none.
    pub(crate) fn with_strays_since(mut self, task_started: Option<u64>) -> Escaped {
        self.strays_since = task_started;
        self
    }

    /// Finds the run's escaped processes among our children, sends each `signal` (and SIGCONT,
    /// so a stopped one acts on it), and reaps those of them that are already dead. Returns
    /// how many live ones it signalled.
    pub(crate) fn signal(&mut self, signal: Signal) -> usize {
        #[cfg(target_os = "linux")]
        {
            if !linux::has_children() {
                // Nothing can have escaped to us: one system call instead of a read of every
                // thread's `children` file after every run.
                return 0;
            }
            // Held while looking and signalling: see `LIVE_TASKS`.
            let live = live_tasks();
            let me = nix::unistd::getpid().as_raw();
            let own_group = nix::unistd::getpgrp().as_raw();
            let mut found = 0;
            for child in linux::children_of_self(me) {
                if live.contains(&child.pid) || live.contains(&child.pgrp) {
                    continue;
                }
                let known =
                    self.signalled.contains(&child.pid) || self.groups.contains(&child.pgrp);
                if child.is_zombie() {
                    // Dead already: reaped if we know it is the run's. An unknown zombie's
                    // environment is gone, so there is no telling whose it is.
                    if known {
                        reap_one(child.pid);
                        self.unreaped.remove(&child.pid);
                    }
                    continue;
                }
                if !known && !self.is_ours(&child, own_group, live.is_empty()) {
                    continue;
                }
                let pid = Pid::from_raw(child.pid);
                let leads_group = child.pgrp == child.pid;
                tracing::debug!(%pid, %signal, "stopping a process that left the task's group");
                // A stopped process would only act on SIGTERM once continued.
                for sig in [signal, Signal::SIGCONT] {
                    if leads_group {
                        self::signal(pid, sig);
                    } else {
                        match nix::sys::signal::kill(pid, sig) {
                            Ok(()) | Err(Errno::ESRCH) => {}
                            Err(errno) => {
                                tracing::warn!("could not send {sig} to process {pid}: {errno}")
                            }
                        }
                    }
                }
                if leads_group {
                    self.groups.insert(child.pid);
                }
                self.signalled.insert(child.pid);
                self.unreaped.insert(child.pid);
                found += 1;
            }
            found
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (signal, &self.run_id, &self.signalled, &self.groups);
            0
        }
    }

    /// Whether a live child of ours not yet signalled belongs to this run: its environment
    /// names the run, or it names no run at all, started after the run's task did, is not in
    /// our own process group (`own_group`), and no other task is running (`alone`) that it
    /// could belong to instead.
    ///
    /// A task runs in a group of its own, and whatever escapes it made another group or
    /// session; a child still in our group is one this process started for itself (a build,
    /// `git`, another thread's command in a program embedding the executor), never a stray.
    #[cfg(target_os = "linux")]
    fn is_ours(&self, child: &linux::Stat, own_group: i32, alone: bool) -> bool {
        match linux::environment_run_id(child.pid) {
            Some(Some(id)) => id == self.run_id,
            Some(None) => {
                alone
                    && child.pgrp != own_group
                    && self
                        .strays_since
                        .is_some_and(|since| child.start_time >= since)
            }
            // Gone meanwhile, or not ours to read.
            None => false,
        }
    }

    /// Reaps the signalled processes that have exited; whether all of them have.
    pub(crate) fn reap(&mut self) -> bool {
        self.unreaped.retain(|&pid| !reap_one(pid));
        self.unreaped.is_empty()
    }
}

/// Kills (SIGKILL) every live process started for run `run_id`, wherever it is now (its own
/// group, a group it made with `setsid`, re-parented to init) with its process group: what a
/// run left behind when the process running it died (`kill -9` of `lumo`). Found by the
/// `LUMO_RUN_ID` in their environment, so a recycled pid never hits a stranger. Linux only.
pub fn kill_processes_of_run(run_id: &str) {
    #[cfg(target_os = "linux")]
    // Twice: a process may fork between the scan and the kill.
    for _ in 0..2 {
        let members: Vec<_> = linux::processes()
            .into_iter()
            .filter(|p| !p.is_zombie() && linux::environment_names_run(p.pid, run_id))
            .collect();
        if members.is_empty() {
            break;
        }
        tracing::info!(
            "stopping {} process(es) left by run {run_id}",
            members.len()
        );
        for p in members {
            signal(Pid::from_raw(p.pgrp), Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = run_id;
}

/// Now, on the clock `/proc` gives process start times in (clock ticks after boot, rounded
/// down as `/proc` rounds them): any process started after this call started at this tick or
/// later. Read just before a task starts, it bounds which strays can be the run's, without
/// reading the task's `/proc/<pid>/stat` (an open, five reads and a close a run). `None` off
/// Linux.
pub(crate) fn boot_ticks_now() -> Option<u64> {
    #[cfg(target_os = "linux")]
    return linux::boot_ticks_now();
    #[cfg(not(target_os = "linux"))]
    None
}

/// Reaps child `pid` if it has exited, without blocking; whether it is gone.
fn reap_one(pid: i32) -> bool {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Err(Errno::EINTR) => {}
            // Exited, or no longer (never) our child: either way not ours to wait for.
            Ok(_) | Err(_) => return true,
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
            if let Some(stat) = parse_stat(&stat)
                && stat.pgrp == pgid.as_raw()
                && !stat.is_zombie()
            {
                return Some(true);
            }
        }
        Some(false)
    }

    /// What `/proc/<pid>/stat` says about a process.
    #[derive(Debug, PartialEq)]
    pub(crate) struct Stat {
        pub pid: i32,
        pub state: char,
        pub ppid: i32,
        pub pgrp: i32,
        /// Clock ticks after boot when the process started.
        pub start_time: u64,
    }

    impl Stat {
        /// Dead but not reaped (or being reaped): runs no code, holds no pipe.
        pub fn is_zombie(&self) -> bool {
            matches!(self.state, 'Z' | 'X' | 'x')
        }
    }

    /// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`. The command name may
    /// contain spaces and parentheses, so fields are counted after the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<Stat> {
        let comm_end = stat.rfind(')')?;
        let pid = stat[..comm_end].split_once(' ')?.0.parse().ok()?;
        let mut fields = stat[comm_end + 1..].split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        // `starttime` is field 22 of stat(5); `pgrp` was field 5.
        let start_time = fields.nth(16)?.parse().ok()?;
        Some(Stat {
            pid,
            state,
            ppid,
            pgrp,
            start_time,
        })
    }

    /// See [`super::boot_ticks_now`]. The kernel stamps a process with `CLOCK_BOOTTIME` when
    /// it is created and shows it in `/proc/<pid>/stat` as whole clock ticks (`CLK_TCK`).
    pub(super) fn boot_ticks_now() -> Option<u64> {
        use nix::time::{ClockId, clock_gettime};
        use nix::unistd::{SysconfVar, sysconf};
        static TICKS_PER_SECOND: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        let hz = (*TICKS_PER_SECOND.get_or_init(|| {
            sysconf(SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .and_then(|hz| u64::try_from(hz).ok())
                .filter(|&hz| hz > 0)
        }))?;
        let now = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
        let nanos = u128::try_from(now.tv_sec()).ok()? * 1_000_000_000
            + u128::try_from(now.tv_nsec()).ok()?;
        u64::try_from(nanos * u128::from(hz) / 1_000_000_000).ok()
    }

    /// Whether this process has any child at all (any thread's, running, stopped or dead and
    /// not reaped): `waitid` without waiting and without reaping answers ECHILD only when there
    /// is none. An orphan handed to us as the subreaper is our child from the moment its parent
    /// exits.
    pub(super) fn has_children() -> bool {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let any_state = WaitPidFlag::WEXITED
            | WaitPidFlag::WSTOPPED
            | WaitPidFlag::WCONTINUED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT
            | WaitPidFlag::__WALL;
        loop {
            match waitid(Id::All, any_state) {
                Err(nix::errno::Errno::ECHILD) => return false,
                Err(nix::errno::Errno::EINTR) => {}
                // A child, or an error that says nothing about children: look.
                _ => return true,
            }
        }
    }

    /// Every process, as `/proc` has them now.
    pub(super) fn processes() -> Vec<Stat> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .as_encoded_bytes()
                    .iter()
                    .all(u8::is_ascii_digit)
            })
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            .filter_map(|stat| parse_stat(&stat))
            .collect()
    }

    /// Our own children (`me` is our pid). Read from each of our threads'
    /// `/proc/self/task/<tid>/children` (a child, or an orphan handed to us as the subreaper,
    /// is listed under the thread that is its parent), so the cost is that of our children,
    /// not of every process on the machine: a scan of `/proc` per run made a deploy 11× slower
    /// on a machine running 2,000 processes. Kernels built without those files get the scan.
    ///
    /// Like the scan, this is a snapshot: a child forked or re-parented meanwhile may be
    /// missed, which is why callers look again until a round finds nothing.
    pub(super) fn children_of_self(me: i32) -> Vec<Stat> {
        match own_children() {
            Some(pids) => pids
                .into_iter()
                .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
                .filter_map(|stat| parse_stat(&stat))
                .filter(|stat| stat.ppid == me)
                .collect(),
            None => processes()
                .into_iter()
                .filter(|stat| stat.ppid == me)
                .collect(),
        }
    }

    /// The pids in our threads' `children` files; `None` when the kernel has no such files.
    fn own_children() -> Option<Vec<i32>> {
        // The main thread's file exists whenever the kernel has them (the main thread may
        // have exited, but then its task directory still reads as a zombie thread's).
        let me = nix::unistd::getpid();
        std::fs::metadata(format!("/proc/self/task/{me}/children")).ok()?;
        let mut pids = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            // A thread that ended meanwhile has no file left: it has no children either.
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|pid| pid.parse::<i32>().ok()),
                );
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Some(pids)
    }

    /// Whether process `pid` was started with `LUMO_RUN_ID=<run_id>` in its environment (which
    /// every process of a run inherits unless it clears its environment).
    pub(super) fn environment_names_run(pid: i32, run_id: &str) -> bool {
        environment_run_id(pid)
            .flatten()
            .is_some_and(|id| id == run_id)
    }

    /// The `LUMO_RUN_ID` process `pid` was started with: `Some(None)` when its environment
    /// has none (it cleared it), `None` when the environment cannot be read.
    pub(super) fn environment_run_id(pid: i32) -> Option<Option<String>> {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        Some(
            environ
                .split(|&b| b == 0)
                .find_map(|var| var.strip_prefix(b"LUMO_RUN_ID="))
                .map(|id| String::from_utf8_lossy(id).into_owned()),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_stat_with_odd_command_names() {
            // Fields 3 to 22 (state … starttime) as Linux writes them, and more after.
            let rest =
                "0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 200 18446744073709551615";
            assert_eq!(
                parse_stat(&format!("42 (sleep) S 1 40 40 {rest}")),
                Some(Stat {
                    pid: 42,
                    state: 'S',
                    ppid: 1,
                    pgrp: 40,
                    start_time: 123456,
                })
            );
            assert_eq!(
                parse_stat(&format!("43 (a) b (c) Z 7 77 77 {rest}")),
                Some(Stat {
                    pid: 43,
                    state: 'Z',
                    ppid: 7,
                    pgrp: 77,
                    start_time: 123456,
                })
            );
            // Cut short before `starttime`: not a stat line this code can trust.
            assert_eq!(parse_stat("44 (sleep) S 1 40 40 0 -1 4194560"), None);
            assert_eq!(parse_stat("garbage"), None);
        }

        #[test]
        fn finds_its_own_children_and_their_environment() {
            let mut child = std::process::Command::new("sleep")
                .arg("10")
                .env("LUMO_RUN_ID", "01CHILD")
                .spawn()
                .unwrap();
            let pid = i32::try_from(child.id()).unwrap();
            let me = nix::unistd::getpid().as_raw();
            let found = children_of_self(me).into_iter().any(|c| c.pid == pid);
            assert!(
                own_children().is_some(),
                "this kernel lists children in /proc"
            );
            // Until the child has exec'd, `/proc` shows the environment it forked with.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut named = environment_names_run(pid, "01CHILD");
            while !named && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
                named = environment_names_run(pid, "01CHILD");
            }
            let other = environment_names_run(pid, "01CHIL");
            let _ = child.kill();
            let _ = child.wait();
            assert!(found && named && !other);
        }

        #[test]
        fn has_children_while_a_child_is_alive_or_unreaped() {
            // Other tests of this binary start children too: only the answer with one of ours
            // alive or dead-but-unreaped is certain.
            let mut child = std::process::Command::new("sleep")
                .arg("10")
                .spawn()
                .unwrap();
            assert!(has_children());
            let _ = child.kill();
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            // Dead, not reaped: still a child.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|s| !s.is_zombie())
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(has_children());
            let _ = child.wait();
        }

        /// Strays are told by their start time against the clock read before the task
        /// started: a process started after the read must never look older than it.
        #[test]
        fn a_process_started_after_the_clock_was_read_is_not_older_than_it() {
            for _ in 0..20 {
                let before = boot_ticks_now().unwrap();
                let mut child = std::process::Command::new("sleep")
                    .arg("10")
                    .spawn()
                    .unwrap();
                let after = boot_ticks_now().unwrap();
                let pid = i32::try_from(child.id()).unwrap();
                let started = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| parse_stat(&s))
                    .map(|s| s.start_time);
                let _ = child.kill();
                let _ = child.wait();
                let started = started.unwrap();
                assert!(
                    before <= started && started <= after,
                    "{before} <= {started} <= {after}"
                );
            }
        }

        #[test]
        fn own_group_is_alive() {
            let own = nix::unistd::getpgrp();
            assert_eq!(any_live_member(own), Some(true));
        }
    }
}
