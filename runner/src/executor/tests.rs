//! The executor against real processes (`sh`), each test in its own temp dir. Timeouts are about
//! a second and grace periods 300 ms so the suite stays fast; time bounds leave room for a
//! loaded machine.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::json;

use super::*;
use crate::contract::{DeploymentInfo, RunStatus, TaskContext, Trigger};

const GRACE: Duration = Duration::from_millis(300);

struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    scratch: PathBuf,
}

fn fixture() -> Fixture {
    // Orphans of the tasks are re-parented to this test process and reaped by the executor,
    // as in the CLI and the Lambda runner.
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("bundle");
    let scratch = dir.path().join("scratch");
    fs::create_dir(&work).unwrap();
    fs::create_dir(&scratch).unwrap();
    Fixture {
        _dir: dir,
        work,
        scratch,
    }
}

/// A run id of its own for each test's context, as every real run has: the tests run at once
/// in one process, and the stopping of processes that left a task's group goes by run id.
fn fresh_run_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("01RUN{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn context(work: &Path) -> TaskContext {
    TaskContext {
        deployment: DeploymentInfo {
            is_first_deploy: true,
            previous_version: None,
            environment: "staging".into(),
            version: "abc1234".into(),
        },
        config: json!({ "batch": 10 }),
        args: BTreeMap::new(),
        working_directory: work.to_string_lossy().into_owned(),
        task: "db/migrate".into(),
        run_id: fresh_run_id(),
        trigger: Trigger::Deploy,
    }
}

impl Fixture {
    fn command(&self, script: &str) -> TaskProcess {
        let mut p = TaskProcess::new(
            TaskSpec::new(context(&self.work), Duration::from_secs(20)),
            Entry::Command(script.to_owned()),
            self.work.clone(),
            self.scratch.clone(),
        );
        p.kill_grace = GRACE;
        p
    }

    fn program(&self, path: &str, body: &str, mode: u32) -> TaskProcess {
        let file = self.work.join(path);
        fs::write(&file, body).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let mut p = self.command("unused");
        p.entry = Entry::Program(path.to_owned());
        p
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.work.join(name)).unwrap()
    }

    fn pid(&self, name: &str) -> i32 {
        self.read(name).trim().parse().unwrap()
    }
}

/// Runs the task, collecting what the observer saw.
async fn run(process: TaskProcess) -> (RunOutcome, String) {
    let mut seen = Vec::new();
    let outcome = execute(process, &mut seen).await.unwrap();
    (outcome, String::from_utf8(seen).unwrap())
}

/// Whether `pid` is a live process (a zombie is not).
fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 1..]
        .trim_start()
        .chars()
        .next();
    !matches!(state, Some('Z' | 'X'))
}

fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn context_on_stdin_equals_context_file() {
    let f = fixture();
    let p = f.command(r#"cat > stdin.json; cp "$LUMO_CONTEXT_FILE" file.json"#);
    let expected = p.spec.context.clone();
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let stdin = f.read("stdin.json");
    assert_eq!(stdin, f.read("file.json"));
    let got: TaskContext = serde_json::from_str(&stdin).unwrap();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn sets_every_lumo_variable() {
    let f = fixture();
    let p = f.command("env > env.txt");
    let run_id = p.spec.context.run_id.clone();
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let env = env_file(&f.read("env.txt"));
    assert_eq!(env["LUMO_ENVIRONMENT"], "staging");
    assert_eq!(env["LUMO_TASK"], "db/migrate");
    assert_eq!(env["LUMO_RUN_ID"], run_id);
    assert_eq!(env["LUMO_TRIGGER"], "deploy");
    assert_eq!(env["LUMO_VERSION"], "abc1234");
    assert_eq!(env["LUMO_PREVIOUS_VERSION"], "");
    assert_eq!(env["LUMO_IS_FIRST_DEPLOY"], "true");
    let scratch = std::path::absolute(&f.scratch).unwrap();
    assert_eq!(
        env["LUMO_RESULT_FILE"],
        scratch.join("result.json").to_str().unwrap()
    );
    assert_eq!(
        env["LUMO_CONTEXT_FILE"],
        scratch.join("context.json").to_str().unwrap()
    );
    assert_eq!(
        fs::canonicalize(&env["PWD"]).unwrap(),
        fs::canonicalize(&f.work).unwrap()
    );
    // The parent's environment is inherited.
    assert!(env.contains_key("PATH"));

    let mut p = f.command("env > env2.txt");
    p.spec.context.deployment.is_first_deploy = false;
    p.spec.context.deployment.previous_version = Some("0ld".into());
    p.spec.context.trigger = Trigger::Manual;
    run(p).await;
    let env = env_file(&f.read("env2.txt"));
    assert_eq!(env["LUMO_PREVIOUS_VERSION"], "0ld");
    assert_eq!(env["LUMO_IS_FIRST_DEPLOY"], "false");
    assert_eq!(env["LUMO_TRIGGER"], "manual");
}

#[tokio::test]
async fn args_env_and_secrets_reach_the_task() {
    let f = fixture();
    let mut p = f.command("env > env.txt");
    p.spec.context.args.insert("target".into(), "eu-1".into());
    p.spec.context.args.insert("dry-run".into(), "yes".into());
    p.spec.env.insert("GREETING".into(), "hello world".into());
    p.spec.env.insert("DATABASE_URL".into(), "from-env".into());
    p.spec.env.insert("LUMO_TASK".into(), "overridden".into());
    p.spec
        .secrets
        .insert("DATABASE_URL".into(), "postgres://u:pw@db/app".into());
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let env = env_file(&f.read("env.txt"));
    assert_eq!(env["LUMO_ARG_TARGET"], "eu-1");
    assert_eq!(env["LUMO_ARG_DRY_RUN"], "yes");
    assert_eq!(env["GREETING"], "hello world");
    // The task's env is applied after lumo's variables, secrets after the task's env.
    assert_eq!(env["LUMO_TASK"], "overridden");
    assert_eq!(env["DATABASE_URL"], "postgres://u:pw@db/app");
}

#[tokio::test]
async fn exit_codes_decide_without_a_result_file() {
    let f = fixture();
    let (ok, _) = run(f.command("exit 0")).await;
    assert_eq!(ok.status, RunStatus::Succeeded);
    assert_eq!(ok.exit_code, Some(0));
    assert_eq!(ok.signal, None);
    assert_eq!(ok.message, "exit code 0");
    assert!(ok.started_at <= ok.ended_at);

    let (failed, _) = run(f.command("echo 'connection refused' >&2; exit 3")).await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.message, "exit code 3: connection refused");

    let (silent, _) = run(f.command("exit 4")).await;
    assert_eq!(silent.status, RunStatus::Failed);
    assert_eq!(silent.message, "exit code 4");
}

#[tokio::test]
async fn message_is_the_last_non_empty_output_line() {
    let f = fixture();
    let (outcome, _) =
        run(f.command("echo first; echo '  applied 3 migrations  ' >&2; echo; printf '   \\n'"))
            .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.message, "applied 3 migrations");
}

fn write_result(json: &str) -> String {
    format!("cat > \"$LUMO_RESULT_FILE\" <<'EOF'\n{json}\nEOF\necho 'last line'")
}

#[tokio::test]
async fn valid_result_file_gives_message_and_data() {
    let f = fixture();
    let (outcome, _) = run(f.command(&write_result(
        r#"{"success": true, "message": "Applied 2 migrations", "data": {"applied": 2}}"#,
    )))
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.message, "Applied 2 migrations");
    assert_eq!(outcome.data, Some(json!({ "applied": 2 })));
}

#[tokio::test]
async fn result_success_false_fails_with_the_tasks_message() {
    let f = fixture();
    let (outcome, _) = run(f.command(&write_result(
        r#"{"success": false, "message": "Operation failed: boom", "data": {"error": "stack"}}"#,
    )))
    .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.message, "Operation failed: boom");
    assert_eq!(outcome.data, Some(json!({ "error": "stack" })));
}

#[tokio::test]
async fn non_zero_exit_fails_even_with_a_successful_result() {
    let f = fixture();
    let script = format!(
        "{}\nexit 2",
        write_result(r#"{"success": true, "message": "looked fine"}"#)
    );
    let (outcome, _) = run(f.command(&script)).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.message, "exit code 2: looked fine");
}

#[tokio::test]
async fn invalid_result_files_fail_the_run_saying_why() {
    let f = fixture();
    let cases = [
        ("garbage", "expected value"),
        ("", "empty"),
        (
            r#"{"success": true, "message": "x", "extra": 1}"#,
            "unknown field `extra`",
        ),
        (r#"{"success": "yes", "message": "x"}"#, "invalid type"),
        (r#"{"success": true}"#, "missing field `message`"),
        (
            r#"{"success": true, "message": "x", "data": [1]}"#,
            "`data` must be an object, not an array",
        ),
    ];
    for (content, reason) in cases {
        let (outcome, _) = run(f.command(&write_result(content))).await;
        assert_eq!(outcome.status, RunStatus::Failed, "{content:?}");
        assert!(
            outcome
                .message
                .starts_with("result file is not a valid TaskResult: "),
            "{content:?}: {}",
            outcome.message
        );
        assert!(outcome.message.contains(reason), "{}", outcome.message);
        assert!(outcome.message.contains("LUMO_RESULT_FILE"));
        assert_eq!(outcome.data, None);
    }
}

#[tokio::test]
async fn oversized_result_file_fails_the_run() {
    let f = fixture();
    let (outcome, _) =
        run(f.command(r#"head -c 17000000 /dev/zero | tr '\0' ' ' > "$LUMO_RESULT_FILE""#)).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome.message.contains("larger than 16 MiB"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_stale_result_file_is_not_taken_for_this_runs() {
    let f = fixture();
    fs::write(
        f.scratch.join("result.json"),
        r#"{"success": false, "message": "old run"}"#,
    )
    .unwrap();
    let (outcome, _) = run(f.command("echo fresh")).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.message, "fresh");
}

#[tokio::test]
async fn stdout_and_stderr_are_interleaved_in_order() {
    let f = fixture();
    let log = f.scratch.join("task.log");
    let mut p = f.command("echo a; echo b >&2; echo c; echo d >&2; echo e");
    p.log_file = Some(log.clone());
    let (outcome, seen) = run(p).await;
    assert_eq!(seen, "a\nb\nc\nd\ne\n");
    assert_eq!(outcome.output_tail, "a\nb\nc\nd\ne\n");
    assert_eq!(fs::read_to_string(&log).unwrap(), "a\nb\nc\nd\ne\n");
    assert_eq!(outcome.output_bytes, 10);
}

/// Counts output without keeping it, like a live stream would.
#[derive(Default)]
struct Counter {
    bytes: u64,
    chunks: usize,
    first_at: Option<Instant>,
}

impl OutputObserver for Counter {
    fn output(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.chunks += 1;
        self.first_at.get_or_insert_with(Instant::now);
    }
}

#[tokio::test]
async fn megabytes_of_output_are_logged_in_full_and_summarised() {
    let f = fixture();
    let log = f.scratch.join("task.log");
    let mut p = f.command("head -c 5000000 /dev/zero | tr '\\0' 'x'; echo; echo end");
    p.log_file = Some(log.clone());
    let mut counter = Counter::default();
    let outcome = execute(p, &mut counter).await.unwrap();
    let total = 5_000_000 + 1 + 4;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.output_bytes, total);
    assert_eq!(counter.bytes, total);
    assert!(counter.chunks > 1);
    assert_eq!(fs::metadata(&log).unwrap().len(), total);
    assert_eq!(outcome.output_tail.len(), TAIL_BYTES);
    assert!(outcome.output_tail.ends_with("xxx\nend\n"));
    assert_eq!(outcome.message, "end");
}

#[tokio::test]
async fn output_is_streamed_while_the_task_runs() {
    let f = fixture();
    let mut counter = Counter::default();
    let started = Instant::now();
    let outcome = execute(f.command("echo early; sleep 1; echo late"), &mut counter)
        .await
        .unwrap();
    let ended = Instant::now();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let first = counter.first_at.unwrap();
    assert!(first.duration_since(started) < Duration::from_millis(800));
    assert!(ended.duration_since(first) > Duration::from_millis(500));
}

/// Regression: the log went through a 64 KiB buffer written out only when the run ended, so
/// `lumo logs` showed nothing while a task ran, and a `kill -9` of lumo left an empty log.
#[tokio::test]
async fn the_log_file_holds_the_output_while_the_task_runs() {
    let f = fixture();
    let log = f.scratch.join("task.log");
    let mut p = f.command("echo first line; sleep 30");
    p.log_file = Some(log.clone());
    let run = tokio::spawn(async move {
        let mut sink = DiscardOutput;
        execute(p, &mut sink).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut logged = String::new();
    while !logged.contains('\n') && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        logged = fs::read_to_string(&log).unwrap_or_default();
    }
    let still_running = !run.is_finished();
    // Dropping the run kills the task.
    run.abort();
    assert!(still_running);
    assert_eq!(logged, "first line\n");
}

#[tokio::test]
async fn timeout_stops_the_task_and_the_children_it_forked() {
    let f = fixture();
    let mut p = f.command("sleep 100 & echo $! > child.pid; echo started; sleep 100");
    p.spec.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let (outcome, seen) = run(p).await;
    let took = started.elapsed();
    assert_eq!(outcome.status, RunStatus::TimedOut, "{outcome:?}");
    assert_eq!(outcome.message, "timed out after 1s");
    assert_eq!(seen, "started\n");
    assert_eq!(outcome.output_tail, "started\n");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took < Duration::from_secs(1) + GRACE + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(!is_alive(f.pid("child.pid")));
}

#[tokio::test]
async fn a_task_that_ignores_sigterm_is_killed_after_the_grace() {
    let f = fixture();
    let mut p = f.command(
        "trap '' TERM; sleep 100 & echo $! > child.pid; echo ready; while :; do sleep 0.05; done",
    );
    p.spec.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let (outcome, _) = run(p).await;
    let took = started.elapsed();
    assert_eq!(outcome.status, RunStatus::TimedOut);
    assert_eq!(outcome.signal, Some(libc_sigkill()));
    assert!(took >= Duration::from_secs(1) + GRACE, "{took:?}");
    assert!(
        took < Duration::from_secs(1) + GRACE + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(!is_alive(f.pid("child.pid")));
}

#[tokio::test]
async fn a_leader_that_left_its_group_is_still_stopped() {
    let f = fixture();
    // The leader joins this test's process group, out of reach of signals to its own group,
    // and ignores SIGTERM.
    let script = format!(
        r#"exec perl -e '$SIG{{TERM}} = "IGNORE"; setpgrp(0, {}) or die "setpgrp: $!"; $| = 1; print "moved\n"; sleep 100'"#,
        nix::unistd::getpgrp()
    );
    let mut p = f.command(&script);
    p.spec.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let (outcome, seen) = run(p).await;
    let took = started.elapsed();
    assert_eq!(seen, "moved\n");
    assert_eq!(outcome.status, RunStatus::TimedOut);
    assert_eq!(outcome.signal, Some(libc_sigkill()));
    assert!(
        took < Duration::from_secs(1) + GRACE + Duration::from_secs(1),
        "{took:?}"
    );
}

fn libc_sigkill() -> i32 {
    Signal::SIGKILL as i32
}

#[tokio::test]
async fn sub_second_timeouts_read_in_milliseconds() {
    let f = fixture();
    let mut p = f.command("sleep 10");
    p.spec.timeout = Duration::from_millis(300);
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::TimedOut);
    assert_eq!(outcome.message, "timed out after 300ms");
}

#[tokio::test]
async fn background_children_left_behind_are_stopped_and_reaped() {
    let f = fixture();
    let started = Instant::now();
    let (outcome, _) = run(f.command("sleep 100 & echo $! > child.pid; echo done")).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.message, "done");
    assert!(started.elapsed() < GRACE + Duration::from_secs(1));
    let pid = f.pid("child.pid");
    // Re-parented to this process (the subreaper) and reaped by the executor: fully gone.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} is still in /proc"
    );

    // One that ignores SIGTERM gets SIGKILL after the grace.
    let started = Instant::now();
    let (outcome, _) = run(f.command(
        "(trap '' TERM; touch ignoring; exec sleep 100) & echo $! > stubborn.pid
         while [ ! -e ignoring ]; do sleep 0.01; done; echo done",
    ))
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(started.elapsed() >= GRACE);
    assert!(!is_alive(f.pid("stubborn.pid")));
}

/// Waits up to a few seconds for `pid` to leave `/proc` (exited and reaped).
async fn reaped_soon(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Regression: a process that left the task's group (`setsid`) outlived the run, re-parented
/// to the process running lumo, and held the output pipe until the drain gave up on it.
#[tokio::test]
async fn a_child_that_escaped_the_group_is_stopped_and_reaped() {
    let f = fixture();
    let started = Instant::now();
    // The leader waits until the child has left the group, so it is not stopped with the
    // group's leftovers.
    let (outcome, seen) = run(f.command(
        "setsid sh -c 'touch escaped; exec sleep 30' & echo $! > escaped.pid
         while [ ! -e escaped ]; do sleep 0.01; done; echo bye",
    ))
    .await;
    let took = started.elapsed();
    let escaped = f.pid("escaped.pid");
    assert!(
        !Path::new(&format!("/proc/{escaped}")).exists(),
        "the escaped process {escaped} was not stopped and reaped"
    );
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(seen, "bye\n");
    assert!(took < DRAIN_AFTER_GROUP_ENDS, "{took:?}");

    // On a timeout too, and with what the escaped process forked in its own group, including
    // a child that ignores SIGTERM.
    let mut p = f.command(
        "setsid sh -c '(trap \"\" TERM; exec sleep 31) & echo $! > inner.pid; touch escaped2; wait' &
         echo $! > escaped2.pid
         while [ ! -e escaped2 ]; do sleep 0.01; done; sleep 30",
    );
    p.spec.timeout = Duration::from_millis(500);
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::TimedOut);
    for file in ["escaped2.pid", "inner.pid"] {
        let pid = f.pid(file);
        assert!(reaped_soon(pid).await, "{file}: {pid} outlived the run");
    }
}

#[tokio::test]
async fn a_child_that_escaped_and_cleared_its_environment_cannot_hold_the_run_open() {
    let f = fixture();
    let started = Instant::now();
    // Without `LUMO_RUN_ID` the process is taken for the run's only when no other task runs
    // in this process (other tests' tasks may, here: the CLI end-to-end suite checks that it is
    // stopped); either way the run does not wait for the pipe it holds.
    let (outcome, seen) = run(f.command(
        "setsid env -i /bin/sh -c ': > escaped; exec /bin/sleep 30' & echo $! > escaped.pid
         while [ ! -e escaped ]; do sleep 0.01; done; echo bye",
    ))
    .await;
    let took = started.elapsed();
    let escaped = Pid::from_raw(f.pid("escaped.pid"));
    let _ = nix::sys::signal::kill(escaped, Signal::SIGKILL);
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(seen, "bye\n");
    // Stopped (sooner) or left alone after the drain: either way not held open.
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A process the program itself starts while a run lasts (a build, `git`, another thread's
/// command) carries no run id and started after the task, as an escaped daemon would; it stays
/// in the program's own process group, which no task runs in, so it is not taken for a stray.
#[tokio::test]
async fn a_child_the_program_starts_for_itself_during_a_run_is_not_stopped() {
    let f = fixture();
    let task = tokio::spawn(run(f.command("touch started; sleep 0.3; echo bye")));
    while !f.work.join("started").exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut own = std::process::Command::new("sleep")
        .arg("30")
        .env_remove("LUMO_RUN_ID")
        .spawn()
        .unwrap();
    let (outcome, seen) = task.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stopped and reaped by the run, `try_wait` finds no child at all.
    let still_running = matches!(own.try_wait(), Ok(None));
    let _ = own.kill();
    let _ = own.wait();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(seen, "bye\n");
    assert!(still_running, "the run stopped a process it did not start");
}

/// With `--concurrency`, one run ending must not stop another's processes: its leader and the
/// orphans in its group even under the same run id (the registry of live tasks), nor what left
/// the group of a run with another id.
#[tokio::test]
async fn an_ending_run_leaves_the_processes_of_running_ones_alone() {
    let f = fixture();
    let spawn_long = |script: &str, run_id: &str| {
        let mut p = f.command(script);
        p.spec.context.run_id = run_id.into();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            execute(p, &mut seen).await.map(|o| o.message)
        })
    };
    let same = spawn_long(
        "(sleep 30 & echo $! > orphan.pid)
         touch started-same; sleep 1.5
         kill -0 \"$(cat orphan.pid)\" && echo orphan alive",
        "01SAME",
    );
    let other = spawn_long(
        "(setsid sleep 30 & echo $! > escaped.pid)
         touch started-other; sleep 1.5
         kill -0 \"$(cat escaped.pid)\" && echo escaped alive",
        "01OTHER",
    );
    while !f.work.join("started-same").exists() || !f.work.join("started-other").exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut short = f.command("setsid sleep 30 & echo $! > short.pid; echo bye");
    short.spec.context.run_id = "01SAME".into();
    let (outcome, _) = run(short).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(reaped_soon(f.pid("short.pid")).await);

    assert_eq!(same.await.unwrap().unwrap(), "orphan alive");
    assert_eq!(other.await.unwrap().unwrap(), "escaped alive");
    assert!(reaped_soon(f.pid("escaped.pid")).await);
    assert!(reaped_soon(f.pid("orphan.pid")).await);
}

#[tokio::test]
async fn a_task_that_never_reads_stdin_does_not_hang() {
    let f = fixture();
    let mut p = f.command("echo ignoring stdin");
    // Far more than a pipe buffer holds.
    p.spec.context.config = json!({ "blob": "x".repeat(1 << 20) });
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.message, "ignoring stdin");
}

#[tokio::test]
async fn killed_by_a_signal_we_did_not_send() {
    let f = fixture();
    let (outcome, _) = run(f.command("echo dying; kill -KILL $$")).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(libc_sigkill()));
    assert_eq!(outcome.message, "killed by signal SIGKILL: dying");
}

#[tokio::test]
async fn secrets_are_masked_everywhere() {
    let f = fixture();
    let log = f.scratch.join("task.log");
    let script = r#"
printf 'token=sec'; sleep 0.1; printf 'ret\n'
printf '{"password":"pa\\"ss"}\n'
echo "$API_TOKEN and $PASSWORD" >&2
cat > "$LUMO_RESULT_FILE" <<EOF
{"success": true, "message": "used $API_TOKEN", "data": {"$API_TOKEN": "x${API_TOKEN}x", "quoted": "pa\"ss"}}
EOF
"#;
    let mut p = f.command(script);
    p.spec.secrets.insert("API_TOKEN".into(), "secret".into());
    p.spec.secrets.insert("PASSWORD".into(), "pa\"ss".into());
    p.log_file = Some(log.clone());
    let (outcome, seen) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let expected = "token=***\n{\"password\":\"***\"}\n*** and ***\n";
    assert_eq!(seen, expected);
    assert_eq!(fs::read_to_string(&log).unwrap(), expected);
    assert_eq!(outcome.output_tail, expected);
    assert_eq!(outcome.output_bytes, expected.len() as u64);
    assert_eq!(outcome.message, "used ***");
    assert_eq!(
        outcome.data,
        Some(json!({ "***": "x***x", "quoted": "***" }))
    );

    // Without a result file the message comes from the (masked) output.
    let mut p = f.command("echo \"failed with $API_TOKEN\"; exit 1");
    p.spec.secrets.insert("API_TOKEN".into(), "secret".into());
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.message, "exit code 1: failed with ***");
}

#[tokio::test]
async fn programs_run_directly_from_the_working_directory() {
    let f = fixture();
    let p = f.program(
        "task.sh",
        "#!/bin/sh\necho \"running in $(pwd)\"\necho \"$0\"\n",
        0o755,
    );
    let (outcome, seen) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let work = fs::canonicalize(&f.work).unwrap();
    assert!(
        seen.starts_with(&format!("running in {}\n", work.display())),
        "{seen}"
    );
}

#[tokio::test]
async fn a_task_that_cannot_start_is_a_failed_run() {
    let f = fixture();
    let mut missing = f.command("unused");
    missing.entry = Entry::Program("missing.sh".into());
    let (outcome, _) = run(missing).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, None);
    assert!(
        outcome
            .message
            .starts_with("could not start `missing.sh`: No such file or directory"),
        "{}",
        outcome.message
    );

    let (outcome, _) = run(f.program("plain.sh", "#!/bin/sh\necho hi\n", 0o644)).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome
            .message
            .starts_with("could not start `plain.sh`: Permission denied"),
        "{}",
        outcome.message
    );
    assert!(outcome.message.contains("chmod +x"));

    let (outcome, _) =
        run(f.program("interp.sh", "#!/nonexistent/interpreter\necho hi\n", 0o755)).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome.message.starts_with("could not start `interp.sh`: "),
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains("interpreter"),
        "{}",
        outcome.message
    );

    // Regression: a script without a `#!` line failed with "Exec format error" and no hint.
    let (outcome, _) = run(f.program("noshebang.sh", "echo hi\n", 0o755)).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome
            .message
            .starts_with("could not start `noshebang.sh`: ")
            && outcome.message.contains("`noshebang.sh` is not a program")
            && outcome.message.contains("`#!/bin/sh`"),
        "{}",
        outcome.message
    );
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0xff);
    let file = f.work.join("foreign");
    fs::write(&file, &elf).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    let mut foreign = f.command("unused");
    foreign.entry = Entry::Program("foreign".into());
    let (outcome, _) = run(foreign).await;
    assert!(
        outcome.message.contains("built for another system"),
        "{}",
        outcome.message
    );

    let mut escaping = f.command("unused");
    escaping.entry = Entry::Program("../outside.sh".into());
    let (outcome, _) = run(escaping).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(outcome.message.contains("relative path inside the bundle"));
}

/// The log is created at the first output: a quiet task leaves no file, an earlier file of
/// the same name is replaced by the output, and a log that cannot be created is reported with
/// the outcome, which stands.
#[tokio::test]
async fn the_log_file_is_created_at_the_first_output() {
    let f = fixture();
    let log = f.scratch.join("quiet.log");
    let mut p = f.command("exit 0");
    p.log_file = Some(log.clone());
    let outcome = execute(p, &mut DiscardOutput).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.output_bytes, 0);
    assert!(!log.exists(), "a task that printed nothing left a log file");

    let log = f.scratch.join("loud.log");
    fs::write(
        &log,
        "an earlier attempt's output, longer than this one's\n",
    )
    .unwrap();
    let mut p = f.command("echo hello");
    p.log_file = Some(log.clone());
    execute(p, &mut DiscardOutput).await.unwrap();
    assert_eq!(fs::read_to_string(&log).unwrap(), "hello\n");

    let mut p = f.command("echo hello; exit 3");
    p.log_file = Some(f.scratch.join("no/such/dir/task.log"));
    match execute(p, &mut DiscardOutput).await.unwrap_err() {
        ExecError::WriteLog { path, outcome, .. } => {
            assert!(path.ends_with("no/such/dir/task.log"));
            assert_eq!(outcome.status, RunStatus::Failed);
            assert_eq!(outcome.exit_code, Some(3));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn lumos_own_io_errors_are_errors() {
    let f = fixture();

    let mut p = f.command("true");
    p.scratch_dir = f.scratch.join("missing");
    let err = execute(p, &mut DiscardOutput).await.unwrap_err();
    assert!(matches!(err, ExecError::WriteContext { .. }), "{err}");
    assert!(err.to_string().contains("context.json"), "{err}");
}

#[tokio::test]
async fn a_log_that_cannot_be_written_still_reports_the_outcome() {
    let f = fixture();
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let full = PathBuf::from("/dev/full");
    if !full.exists() {
        return;
    }
    let mut p = f.command("echo hello");
    p.log_file = Some(full);
    let mut seen = Vec::new();
    match execute(p, &mut seen).await {
        Err(ExecError::WriteLog { path, outcome, .. }) => {
            assert_eq!(path, Path::new("/dev/full"));
            assert_eq!(outcome.status, RunStatus::Succeeded);
            assert_eq!(outcome.message, "hello");
            assert_eq!(seen, b"hello\n");
        }
        other => panic!("expected a log write error, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_run_kills_the_task_group() {
    let f = fixture();
    let p = f.command("sleep 100 & echo $! > child.pid; sleep 100");
    let mut sink = DiscardOutput;
    let run = execute(p, &mut sink);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), run)
            .await
            .is_err()
    );
    let pid = f.pid("child.pid");
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!is_alive(pid));
}

#[test]
fn the_execute_future_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture();
    let mut sink = DiscardOutput;
    let fut = execute(f.command("true"), &mut sink);
    assert_send(&fut);
}

#[test]
fn debug_output_hides_secret_values() {
    let f = fixture();
    let mut p = f.command("true");
    p.spec.secrets.insert("TOKEN".into(), "do-not-print".into());
    let shown = format!("{p:?}");
    assert!(shown.contains("TOKEN"));
    assert!(!shown.contains("do-not-print"));
}

#[test]
fn durations_format_for_messages() {
    assert_eq!(format_duration(Duration::from_secs(120)), "120s");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    // Regression: a lowered deadline printed as `1.9889999999999999s`.
    assert_eq!(format_duration(Duration::from_millis(1989)), "2.0s");
}

/// `stop` turning `true` ends the run as a timeout would (SIGTERM to the group, output kept),
/// but recorded as stopped; a stop whose sender goes away without asking stops nothing.
#[tokio::test]
async fn a_stop_asked_for_ends_the_run_and_a_dropped_one_does_not() {
    let f = fixture();
    let script = "trap 'echo got TERM; exit 143' TERM
         echo started
         sleep 30 & echo $! > child.pid
         wait";
    let (ask, stop) = tokio::sync::watch::channel(false);
    let mut p = f.command(script);
    p.stop = Some(stop);
    let started = Instant::now();
    let asking = async {
        while !f.work.join("child.pid").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ask.send(true).unwrap();
    };
    let ((outcome, seen), ()) = tokio::join!(run(p), asking);
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    assert_eq!(outcome.message, "stopped before it ended");
    assert_eq!(seen, "started\ngot TERM\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        !is_alive(f.pid("child.pid")),
        "the task's child outlived the stop"
    );

    let (ask, stop) = tokio::sync::watch::channel(false);
    let mut p = f.command("sleep 0.3; echo done");
    p.stop = Some(stop);
    drop(ask);
    let (outcome, _) = run(p).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.message, "done");
}
