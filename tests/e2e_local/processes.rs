//! A task's processes: a timeout, SIGTERM then SIGKILL after the grace, and background
//! children or processes that left the task's group all end with the task.

use std::fs;
use std::time::Duration;

use crate::support::local::RECORDER;
use crate::support::{self, RunStatus, TestProject};

/// Whether process `pid` is gone or only a zombie (an exited process nobody has reaped yet).
/// A live process that is not `comm` is a recycled pid, not our child.
fn process_is_gone(pid: i32, comm: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // `pid (comm) state ...`; comm may hold spaces, so split at the last `)`.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let state = rest.trim_start().chars().next().unwrap_or('?');
    let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
    state == 'Z' || state == 'X' || name != comm
}

#[test]
fn timeout_kills_the_task_and_the_child_it_forked_and_keeps_its_output() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'timeouts', tasks: { hang: { timeout: 1 }, later: {} } };",
    );
    p.task(
        "hang",
        r#"sleep 37 &
echo $! > "@OUT@/child.pid"
echo $$ > "@OUT@/main.pid"
echo "output before the timeout"
sleep 38
echo "never printed""#,
    )
    .task("later", RECORDER);

    let started = std::time::Instant::now();
    let report = p.deploy(&[], 1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let hang = report.task("hang");
    assert_eq!(hang.status, RunStatus::TimedOut);
    assert!(
        hang.message
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{hang:?}"
    );
    assert_eq!(report.task("later").status, RunStatus::Skipped);

    for (file, comm) in [("child.pid", "sleep"), ("main.pid", "hang.sh")] {
        let pid: i32 = p.read_out(file).trim().parse().unwrap();
        assert!(
            process_is_gone(pid, comm),
            "process {pid} ({file}) outlived the run: {:?}",
            fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }

    let run_id = hang.run_id.clone().unwrap();
    let run = p.history().into_iter().find(|r| r.id == run_id).unwrap();
    assert_eq!(run.status, RunStatus::TimedOut);
    let logs = p.lumo(&["logs", &run_id]).code(0).stdout.clone();
    assert!(logs.contains("output before the timeout"), "{logs}");
    assert!(!logs.contains("never printed"));
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
    let p = TestProject::new();
    p.config("export default { projectName: 'stubborn', tasks: { stubborn: { timeout: 1 } } };");
    p.task(
        "stubborn",
        r#"(trap '' TERM; exec sleep 39) &
echo $! > "@OUT@/child.pid"
trap '' TERM
echo "ignoring SIGTERM"
sleep 40"#,
    );
    let report = p.deploy(&[], 1);
    assert_eq!(report.task("stubborn").status, RunStatus::TimedOut);
    let pid: i32 = p.read_out("child.pid").trim().parse().unwrap();
    assert!(
        process_is_gone(pid, "sleep"),
        "process {pid} survived SIGKILL"
    );
    let run_id = report.task("stubborn").run_id.clone().unwrap();
    assert!(
        p.lumo(&["logs", &run_id])
            .code(0)
            .stdout
            .contains("ignoring SIGTERM")
    );
}

#[test]
fn background_children_end_with_the_task() {
    let p = TestProject::new();
    p.config("export default { projectName: 'leftovers', tasks: { spawner: {} } };");
    p.task(
        "spawner",
        "sleep 41 &\necho $! > \"@OUT@/child.pid\"\necho 'left a child behind'",
    );
    let started = std::time::Instant::now();
    let report = p.deploy(&[], 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deploy waited {:?} for the child",
        started.elapsed()
    );
    assert_eq!(
        report.task("spawner").message.as_deref(),
        Some("left a child behind")
    );
    let pid: i32 = p.read_out("child.pid").trim().parse().unwrap();
    assert!(
        process_is_gone(pid, "sleep"),
        "the background child {pid} outlived its task"
    );
}

/// The pids of live processes with `arg` among their command-line arguments.
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// Waits a few seconds for every process with `arg` to end; kills the survivors (so a failed
/// test leaves nothing running) and returns them.
fn survivors_with_arg(arg: &str) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = processes_with_arg(arg);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = processes_with_arg(arg);
    }
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    left
}

/// Deploys one task that starts `setsid sleep MARKER &` and then runs `rest`; the deploy must
/// end with `code`, quickly, and leave no `sleep MARKER` behind.
fn deploy_leaving_an_escapee(
    marker: &str,
    task: &str,
    rest: &str,
    code: i32,
) -> support::DeployReport {
    deploy_leaving(
        &format!("setsid sleep {marker} &"),
        marker,
        task,
        rest,
        code,
    )
}

/// [`deploy_leaving_an_escapee`] with the escape written out (`escape`, which starts a
/// process with `marker` among its arguments).
fn deploy_leaving(
    escape: &str,
    marker: &str,
    task: &str,
    rest: &str,
    code: i32,
) -> support::DeployReport {
    let p = TestProject::new();
    p.config(&format!(
        "export default {{ projectName: 'escapes', tasks: {{ {task}: {{ timeout: 1 }} }} }};"
    ));
    p.task(task, &format!("{escape}\n{rest}"));
    let started = std::time::Instant::now();
    let report = p.deploy(&[], code);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let left = survivors_with_arg(marker);
    assert!(
        left.is_empty(),
        "`sleep {marker}` outlived the run: {left:?}"
    );
    report
}

/// Regression: a process that left the task's process group (`setsid`) outlived a timed-out
/// run, re-parented to lumo and then to init.
#[test]
fn a_process_that_left_the_group_does_not_outlive_a_timed_out_task() {
    let report = deploy_leaving_an_escapee("991.5", "hang", "echo 'left the group'\nsleep 30", 1);
    assert_eq!(report.task("hang").status, RunStatus::TimedOut);
}

/// Regression: the same after a task that exits normally.
#[test]
fn a_process_that_left_the_group_does_not_outlive_a_task_that_exits() {
    let report = deploy_leaving_an_escapee("991.6", "quick", "echo done", 0);
    assert_eq!(report.task("quick").message.as_deref(), Some("done"));
}

/// Regression (adversarial run, issue 10): a daemon that also cleared its environment
/// (`setsid env -i …`) carries no `LUMO_RUN_ID` to be known by, and survived the run.
#[test]
fn a_daemon_that_cleared_its_environment_does_not_outlive_the_run() {
    let report = deploy_leaving(
        "setsid env -i /bin/sh -c 'exec /bin/sleep 991.7' </dev/null >/dev/null 2>&1 &",
        "991.7",
        "daemon",
        "sleep 0.3; echo started",
        0,
    );
    assert_eq!(report.task("daemon").message.as_deref(), Some("started"));
}

/// Regression (issue 10): bundling ran on the thread that waits for signals, so Ctrl-C or
/// SIGTERM during a large bundle was noticed only once it was written (~5 s for 200 MB), and
/// only SIGKILL stopped it, leaving `.lumo/bundles/.building-*.zip`. A stop now ends bundling
/// within a fraction of a second, with 130/143, nothing half-written left and no task run.
///
/// lumo is frozen (SIGSTOP) as soon as its bundle file appears, signalled, then resumed, so
/// the stop lands mid-bundle however fast bundling gets.
#[test]
fn a_stop_during_bundling_ends_it_at_once_leaving_nothing_half_written() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'big-bundle',
           tasks: { t: { copyAssets: [{ from: 'data', to: 'data' }] } } };",
    );
    p.task("t", "echo ran > \"@OUT@/t\"");
    fs::create_dir_all(p.root().join("data")).unwrap();
    for n in 0..2 {
        let mut random = fs::File::open("/dev/urandom").unwrap();
        let mut file = fs::File::create(p.root().join(format!("data/blob-{n}"))).unwrap();
        std::io::copy(&mut std::io::Read::take(&mut random, 100 << 20), &mut file).unwrap();
    }
    let bundles = p.lumo_dir().join("bundles");
    let building = || {
        fs::read_dir(&bundles)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(".building-"))
            })
    };
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let mut lumo = p
            .std_command(support::ACTOR, &["deploy", "--env", "dev"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = lumo.id().to_string();
        let kill = |sig: &str| {
            assert!(
                std::process::Command::new("kill")
                    .args([&format!("-{sig}"), &pid])
                    .status()
                    .unwrap()
                    .success()
            );
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !building() {
            assert!(
                std::time::Instant::now() < deadline,
                "no bundle was started"
            );
            assert!(
                lumo.try_wait().unwrap().is_none(),
                "lumo ended before bundling"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        kill("STOP");
        kill(signal);
        let resumed = std::time::Instant::now();
        kill("CONT");
        let out = lumo.wait_with_output().unwrap();
        let took = resumed.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(
            took < Duration::from_millis(1500),
            "SIG{signal} took {took:?} to end bundling"
        );
        assert!(
            stderr.contains(&format!("interrupted by SIG{signal}")),
            "{stderr}"
        );
        assert!(!building(), "a half-written bundle was left behind");
        assert!(!p.has_out("t"), "the task ran");
    }
}
