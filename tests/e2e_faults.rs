//! Coordination under faults (PRODUCT.md §6), on both providers: one writer per environment
//! with ten deploys racing, a deployer killed with `kill -9` and taken over, the emulator dying
//! mid-deploy, manual locks and forced unlocks; and who may do what: a guest refused a
//! developer task, a developer CI identity deploying across a maintainer task, a confirmation
//! declined at a terminal — each checked through exit codes, what the tasks saw, and the audit
//! trail.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::aws::AwsProject;
use support::{History, RunStatus, Status, TaskList, TestProject};

/// The emulator outage is global: the test that causes one runs alone (write); every other
/// test on the emulators shares (read).
static OUTAGE: RwLock<()> = RwLock::new(());

/// A project on one provider: `local`, or `aws` on the emulators (sharing them with every
/// test but the outage test while it lives).
enum Env {
    Local(TestProject),
    Aws {
        project: AwsProject,
        _shared: Option<RwLockReadGuard<'static, ()>>,
    },
}

impl Env {
    fn local() -> Env {
        Env::Local(TestProject::new())
    }

    fn aws() -> Option<Env> {
        let shared = OUTAGE.read().unwrap_or_else(|p| p.into_inner());
        Some(Env::Aws {
            project: AwsProject::new()?,
            _shared: Some(shared),
        })
    }

    fn p(&self) -> &TestProject {
        match self {
            Env::Local(p) => p,
            Env::Aws { project: a, .. } => &a.p,
        }
    }

    fn p_mut(&mut self) -> &mut TestProject {
        match self {
            Env::Local(p) => p,
            Env::Aws { project: a, .. } => &mut a.p,
        }
    }

    fn is_aws(&self) -> bool {
        matches!(self, Env::Aws { .. })
    }

    /// The config: `extra` top-level keys, then `tasks`.
    fn config(&self, extra: &str, tasks: &str) {
        match self {
            Env::Aws { project: a, .. } => {
                a.config_with(extra, tasks);
            }
            Env::Local(p) => {
                p.config(&format!(
                    "export default {{ projectName: 'faults', {extra} tasks: {tasks} }};"
                ));
            }
        }
    }

    fn spawn(&self, actor: &str, args: &[&str]) -> Child {
        self.p()
            .std_command(actor, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn history(&self) -> Vec<support::TaskRun> {
        let h: History = self
            .p()
            .lumo(&["history", "--env", "dev", "--json", "--limit", "1000"])
            .code(0)
            .json();
        h.runs
    }

    fn status(&self) -> Status {
        self.p()
            .lumo(&["status", "--env", "dev", "--json"])
            .code(0)
            .json()
    }
}

/// Waits until `out/<name>` exists (a task got that far).
fn wait_for_out(p: &TestProject, name: &str, within: Duration) {
    let started = Instant::now();
    while !p.has_out(name) {
        assert!(
            started.elapsed() < within,
            "the task never wrote out/{name}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `start <run> <ns>` / `end <run> <ns>` lines → each run's interval, sorted by start.
fn intervals(timeline: &str) -> Vec<(String, u128, u128)> {
    let mut starts = BTreeMap::new();
    let mut spans = Vec::new();
    for line in timeline.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [what, run, ns] = parts[..] else {
            panic!("bad timeline line {line:?}")
        };
        let ns: u128 = ns.parse().unwrap();
        match what {
            "start" => {
                starts.insert(run.to_string(), ns);
            }
            "end" => spans.push((run.to_string(), starts[run], ns)),
            _ => panic!("bad timeline line {line:?}"),
        }
    }
    assert_eq!(
        starts.len(),
        spans.len(),
        "a run started and never ended:\n{timeline}"
    );
    spans.sort_by_key(|s| s.1);
    spans
}

fn assert_never_overlap(timeline: &str) {
    let spans = intervals(timeline);
    for pair in spans.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "two tasks of one environment ran at once: {} [{}, {}] and {} [{}, {}]",
            pair[0].0,
            pair[0].1,
            pair[0].2,
            pair[1].0,
            pair[1].1,
            pair[1].2
        );
    }
}

const TIMED_WORK: &str = r#"echo "start $LUMO_RUN_ID $(date +%s%N)" >> "@OUT@/timeline"
sleep 0.3
echo "end $LUMO_RUN_ID $(date +%s%N)" >> "@OUT@/timeline""#;

/// Ten deploys of one environment at once: never two tasks at the same time, every deploy
/// either completes or exits 3 naming the holder, and no record is left `running`.
fn ten_concurrent_deploys_never_overlap(env: Env) {
    env.config("", "{ work: { timeout: 60 } }");
    env.p().task("work", TIMED_WORK);
    let children: Vec<Child> = (0..10)
        .map(|_| env.spawn(support::ACTOR, &["deploy", "--env", "dev", "--json"]))
        .collect();
    let mut succeeded = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => succeeded += 1,
            Some(3) => assert!(stderr.contains("is locked by `e2e-tester`"), "{stderr}"),
            other => panic!("a deploy exited {other:?}:\n{stderr}"),
        }
    }
    assert!(succeeded >= 1);
    assert_never_overlap(&env.p().read_out("timeline"));
    let runs = env.history();
    assert_eq!(runs.len(), succeeded, "one run per completed deploy");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:#?}"
    );
    assert!(env.status().lock.writer.is_none(), "the lock was left held");

    // With `--wait`, every deploy gets its turn.
    let children: Vec<Child> = (0..4)
        .map(|_| env.spawn(support::ACTOR, &["deploy", "--env", "dev", "--wait", "3m"]))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_never_overlap(&env.p().read_out("timeline"));
    assert_eq!(env.history().len(), succeeded + 4);
}

/// A deployer killed with `kill -9` mid-task: the next deploy takes over once the lease has
/// passed, with no manual clean-up, and the orphan run is recorded `abandoned`.
fn a_killed_deployer_is_taken_over_and_its_run_abandoned(mut env: Env) {
    env.p_mut().set_env("LUMO_LOCK_LEASE", "2s");
    env.config("", "{ slow: { timeout: 120 } }");
    env.p().task(
        "slow",
        r#"if [ -e "@OUT@/second" ]; then echo quick; exit 0; fi
echo "working on it"
sleep 60 &
echo $! > "@OUT@/child"
wait"#,
    );
    let mut deployer = env.spawn(support::ACTOR, &["deploy", "--env", "dev"]);
    wait_for_out(env.p(), "child", Duration::from_secs(60));
    if !env.is_aws() {
        // What lumo had read from the task before it died is what must survive it; a line
        // still in the pipe when it is killed is lost with it. On a loaded machine lumo may
        // read the line after the task has written `child`: wait until its log holds it.
        let logs = env.p().lumo_dir().join("logs");
        let started = Instant::now();
        while TestProject::files_containing(&logs, "working on it").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the task's first line never reached its log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    deployer.kill().unwrap();
    deployer.wait().unwrap();
    env.p().write("../out/second", "");

    let started = Instant::now();
    let report = env.p().deploy(&["--wait", "1m"], 0);
    assert_eq!(report.task("slow").status, RunStatus::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} to take over",
        started.elapsed()
    );

    let runs = env.history();
    let abandoned: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Abandoned)
        .collect();
    assert_eq!(abandoned.len(), 1, "{runs:#?}");
    assert!(abandoned[0].ended_at.is_some());
    assert!(
        abandoned[0]
            .message
            .as_deref()
            .unwrap()
            .contains("abandoned")
    );
    let status = env.status();
    assert!(
        status.recent_events.iter().any(|e| e.kind == "abandoned"),
        "{:#?}",
        status.recent_events
    );
    assert!(!runs.iter().any(|r| r.status == RunStatus::Running));
    if !env.is_aws() {
        // What the orphan printed before its deployer died is still there to read.
        let logs = env.p().logs(&abandoned[0].id);
        assert!(
            logs.output
                .as_deref()
                .unwrap_or_default()
                .contains("working on it"),
            "{logs:?}"
        );
        // Locally the orphan's process group is stopped too.
        let pid: i32 = env.p().read_out("child").trim().parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next().unwrap_or('?'));
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "the orphan's child {pid} still runs: {stat}"
        );
    }
}

/// A manual lock keeps everyone but its holder out; only `--force` releases another's lock,
/// and that is recorded.
fn a_manual_lock_keeps_others_out_until_unlocked(env: Env) {
    env.config("", "{ work: {} }");
    env.p().task("work", "echo work");
    let p = env.p();
    p.lumo_as(
        "boss",
        &[
            "lock",
            "--env",
            "dev",
            "--reason",
            "database migration in progress",
        ],
    )
    .code(0);
    p.lumo(&["deploy", "--env", "dev"]).code(3).stderr_has(&[
        "`boss`",
        "database migration in progress",
        "lumo unlock",
    ]);
    p.lumo_as("boss", &["deploy", "--env", "dev"]).code(0);
    let status = env.status();
    assert_eq!(
        status.lock.manual.as_ref().map(|m| m.actor.as_str()),
        Some("boss")
    );

    p.lumo(&["unlock", "--env", "dev"])
        .code(3)
        .stderr_has(&["--force"]);
    p.lumo(&["unlock", "--env", "dev", "--force"]).code(0);
    let status = env.status();
    assert!(status.lock.manual.is_none());
    let kinds: Vec<&str> = status
        .recent_events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"force_unlocked") && kinds.contains(&"locked"),
        "{kinds:?}"
    );
    let forced = status
        .recent_events
        .iter()
        .find(|e| e.kind == "force_unlocked")
        .unwrap();
    assert_eq!(forced.actor, support::ACTOR);
    assert!(forced.message.contains("boss"));
    p.lumo(&["deploy", "--env", "dev"]).code(0);
}

/// A guest asking for a developer task is refused with exit 2, and the refusal is recorded.
fn a_guest_is_refused_a_developer_task(env: Env) {
    env.config(
        "access: { dev: { maintainer: ['boss'], guest: ['*'] } },",
        "{ chore: { runOn: [], permission: 'developer' }, peek: { runOn: [], permission: 'guest' } }",
    );
    env.p()
        .task("chore", "echo chore > \"@OUT@/chore\"")
        .task("peek", "echo peek");
    let p = env.p();
    p.lumo_as("boss", &["deploy", "--env", "dev"]).code(0);
    p.lumo(&["run", "chore", "--env", "dev"])
        .code(2)
        .stderr_has(&["refused", "`guest`", "`developer`"]);
    assert!(!p.has_out("chore"), "the refused task ran");
    p.lumo(&["run", "peek", "--env", "dev"]).code(0);
    p.lumo_as("boss", &["run", "chore", "--env", "dev"]).code(0);
    assert!(p.has_out("chore"));

    let refused: Vec<_> = env
        .status()
        .recent_events
        .into_iter()
        .filter(|e| e.kind == "refused")
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].actor, support::ACTOR);
    let tasks: TaskList = p.lumo(&["tasks", "--env", "dev", "--json"]).code(0).json();
    let may = |name: &str| tasks.tasks.iter().find(|t| t.name == name).unwrap().may_run;
    assert_eq!((may("chore"), may("peek")), (Some(false), Some(true)));
}

/// Sends `signal` (`STOP`, `CONT`, `INT`, …) to `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Regression: a deployer paused past its lease and taken over used to carry on once resumed:
/// it started its next task beside the new holder's, overwrote the `abandoned` records and
/// moved the version back to its own. Now it stops, starts nothing, exits 3, and the new
/// holder's verdict and version stand.
fn a_writer_that_lost_its_lock_stops_and_cannot_roll_back(mut env: Env) {
    env.p_mut().set_env("LUMO_LOCK_LEASE", "2s");
    env.config(
        "",
        "{ first: { timeout: 60 }, second: { timeout: 60, dependsOn: ['first'] } }",
    );
    env.p().task(
        "first",
        r#"echo "$LUMO_VERSION" >> "@OUT@/first"
if [ "$LUMO_VERSION" = old ]; then sleep 6; fi"#,
    );
    env.p()
        .task("second", r#"echo "$LUMO_VERSION" >> "@OUT@/second""#);

    let old = env.spawn(
        support::ACTOR,
        &["deploy", "--env", "dev", "--deploy-version", "old"],
    );
    wait_for_out(env.p(), "first", Duration::from_secs(60));
    signal(old.id(), "STOP");
    std::thread::sleep(Duration::from_secs(3));
    let new = env
        .p()
        .deploy(&["--deploy-version", "new", "--wait", "30s"], 0);
    assert_eq!(new.task("second").status, RunStatus::Succeeded);
    signal(old.id(), "CONT");
    let out = old.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("taken over"), "{stderr}");

    assert_eq!(
        env.p().out_lines("second"),
        ["new"],
        "the old deploy ran on"
    );
    let status = env.status();
    assert_eq!(status.state.version.as_deref(), Some("new"));
    let runs = env.history();
    let old_run = |task: &str| {
        runs.iter()
            .find(|r| r.version == "old" && r.task == task)
            .map(|r| r.status)
    };
    assert_eq!(old_run("first"), Some(RunStatus::Abandoned), "{runs:#?}");
    assert_eq!(old_run("second"), Some(RunStatus::Skipped), "{runs:#?}");
    assert!(!runs.iter().any(|r| r.status == RunStatus::Running));
}

/// Regression: Ctrl-C used to kill lumo at once and leave the task running unwatched, its run
/// `running` forever (and on `aws`, running on in Lambda until its timeout). Now the task is
/// stopped, the run recorded `failed` saying why, the lock released, and lumo exits 130.
fn an_interrupted_run_stops_its_task_and_records_why(env: Env) {
    a_run_stopped_by_a_signal_stops_its_task_and_records_why(env, "INT", 130);
}

/// Regression (adversarial run, issue 10): SIGHUP (a closed terminal, a dropped SSH session)
/// killed lumo at once (exit 129) and left its task running unwatched past its timeout,
/// recorded `running`. It now stops the task as SIGTERM does.
fn a_hung_up_run_stops_its_task_and_records_why(env: Env) {
    a_run_stopped_by_a_signal_stops_its_task_and_records_why(env, "HUP", 129);
}

fn a_run_stopped_by_a_signal_stops_its_task_and_records_why(env: Env, sig: &str, code: i32) {
    // With SIGHUP, as `--json`: exactly one document on stdout, the error (regression: the
    // run's report and then the error were printed, two documents).
    let json = sig == "HUP";
    let interrupted_by = format!("interrupted by SIG{sig}");
    env.config("", "{ slow: { runOn: [], timeout: 120 } }");
    env.p().task(
        "slow",
        r#"trap 'echo "got TERM, cleaning up"; exit 143' TERM
sleep 60 &
echo $! > "@OUT@/child"
wait"#,
    );
    env.p().deploy(&[], 0);
    let mut args = vec!["run", "slow", "--env", "dev"];
    if json {
        args.push("--json");
    }
    let lumo = env.spawn(support::ACTOR, &args);
    wait_for_out(env.p(), "child", Duration::from_secs(60));
    let interrupted = Instant::now();
    signal(lumo.id(), sig);
    let out = lumo.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(
        interrupted.elapsed() < Duration::from_secs(20),
        "took {:?} to stop",
        interrupted.elapsed()
    );
    assert!(stderr.contains(&interrupted_by), "{stderr}");
    if json {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut documents = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        let doc = documents.next().unwrap().unwrap();
        assert!(
            documents.next().is_none(),
            "more than one document: {stdout}"
        );
        assert_eq!(doc["error"]["exitCode"], code, "{stdout}");
        assert!(
            doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&interrupted_by),
            "{stdout}"
        );
        assert_eq!(doc["report"]["status"], "failed", "{stdout}");
    }

    let runs = env.history();
    let run = runs.iter().find(|r| r.task == "slow").unwrap();
    assert_eq!(run.status, RunStatus::Failed, "{runs:#?}");
    assert!(
        run.message.as_deref().unwrap().contains(&interrupted_by),
        "{run:#?}"
    );
    assert!(env.status().lock.writer.is_none(), "the lock was left held");
    // Stopped as on a timeout, in Lambda too (the runner sees the CLI's cancel object):
    // SIGTERM first, so the task could clean up, and its output kept.
    assert!(
        run.message
            .as_deref()
            .unwrap()
            .contains("the task got SIGTERM"),
        "{run:#?}"
    );
    let logs = env.p().logs(&run.id);
    let output = logs.output.clone().unwrap_or_default();
    assert!(output.contains("got TERM, cleaning up"), "{logs:?}");
    // The emulators run the runner on this machine, so its task's processes can be seen.
    let pid: i32 = env.p().read_out("child").trim().parse().unwrap();
    let gone = (0..100).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        std::thread::sleep(Duration::from_millis(50));
        matches!(state, None | Some('Z') | Some('X'))
    });
    assert!(gone, "the task's child {pid} still runs");
}

macro_rules! on_both_providers {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(super::Env::local()); } )*
        }
        mod aws {
            $( #[test] fn $name() { if let Some(env) = super::Env::aws() { super::$name(env); } } )*
        }
    };
}

on_both_providers!(
    ten_concurrent_deploys_never_overlap,
    a_killed_deployer_is_taken_over_and_its_run_abandoned,
    a_manual_lock_keeps_others_out_until_unlocked,
    a_guest_is_refused_a_developer_task,
    a_writer_that_lost_its_lock_stops_and_cannot_roll_back,
    an_interrupted_run_stops_its_task_and_records_why,
    a_hung_up_run_stops_its_task_and_records_why,
    a_developer_ci_identity_deploys_twice_across_a_maintainer_update_task,
    a_declined_confirmation_exits_2_and_is_recorded,
    an_environment_can_ask_for_its_name,
    a_secret_typed_at_the_prompt_is_masked_in_the_refusal,
    from_source_runs_the_working_copy_and_a_plain_run_says_it_differs,
    every_argument_rule_has_its_error_and_the_values_are_recorded_masked,
);

/// The emulator dies mid-deploy: the deploy exits 4 with a clear message, and once it is back
/// the next deploy reconciles (takes over the lock, abandons the orphans) with no clean-up.
#[test]
fn the_emulator_dying_mid_deploy_exits_4_and_the_next_deploy_reconciles() {
    let _alone = OUTAGE.write().unwrap_or_else(|p| p.into_inner());
    let Some(aws) = AwsProject::new() else { return };
    let mut env = Env::Aws {
        project: aws,
        _shared: None,
    };
    env.p_mut().set_env("LUMO_LOCK_LEASE", "2s");
    env.config("", "{ step: { timeout: 60 } }");
    env.p()
        .task("step", "touch \"@OUT@/started\"\nsleep 2\necho done");
    let deployer = env.spawn(support::ACTOR, &["deploy", "--env", "dev"]);
    wait_for_out(env.p(), "started", Duration::from_secs(60));
    let Env::Aws { project: aws, .. } = &env else {
        unreachable!()
    };
    let emulators = aws.emulators;
    emulators.outage(6.0);
    let out = deployer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("cannot reach AWS"), "{stderr}");
    std::thread::sleep(Duration::from_secs(6));
    emulators.outage(0.0);

    let report = env.p().deploy(&["--wait", "1m"], 0);
    assert_eq!(report.task("step").status, RunStatus::Succeeded);
    let runs = env.history();
    assert!(
        runs.iter().any(|r| r.status == RunStatus::Abandoned),
        "{runs:#?}"
    );
    assert!(
        !runs.iter().any(|r| r.status == RunStatus::Running),
        "{runs:#?}"
    );
    assert_eq!(
        env.status().last_deployment.unwrap().status,
        support::DeploymentStatus::Succeeded
    );
}

/// Regression: with `access.dev = { maintainer: ['alice'], developer: ['bob'], guest: ['*'] }`
/// a guest's deploy ran developer tasks and exited 0, and `lock`/`unlock` checked no role. Now
/// a deploy needs the environment's deploy role (`developer` by default) and is refused (exit
/// 2, recorded) before the lock is taken or anything runs; locking and unlocking by hand need
/// `developer`, and releasing someone else's lock needs `maintainer`.
fn roles_gate_deploys_and_locks(env: Env) {
    env.config(
        "access: { dev: { maintainer: ['alice'], developer: ['bob'], guest: ['*'] } },",
        "{ hello: { permission: 'guest' }, migrate: { permission: 'developer' } }",
    );
    env.p()
        .task("hello", "echo hello > \"@OUT@/hello\"")
        .task("migrate", "echo migrate > \"@OUT@/migrate\"");
    let p = env.p();
    let last_event = || env.status().recent_events.into_iter().next().unwrap();

    p.lumo_as("mallory", &["deploy", "--env", "dev"])
        .code(2)
        .stderr_has(&[
            "refused",
            "`mallory` has the role `guest` in `dev`",
            "deploying `dev` needs `developer`",
        ]);
    assert!(!p.has_out("hello") && !p.has_out("migrate"), "a task ran");
    assert!(env.history().is_empty(), "a run was recorded");
    let status = env.status();
    assert!(status.last_deployment.is_none() && status.lock.writer.is_none());
    let refused = last_event();
    assert_eq!(
        (refused.kind.as_str(), refused.actor.as_str()),
        ("refused", "mallory")
    );
    assert!(refused.message.contains("deploying `dev`"), "{refused:?}");
    // `--only` a guest task changes nothing: the deploy is what needs the role.
    p.lumo_as("mallory", &["deploy", "--env", "dev", "--only", "hello"])
        .code(2);

    // A dry run is only a look, and says why the deploy would be refused: the real error.
    let events = env.status().recent_events.len();
    let look = p.lumo_as("mallory", &["deploy", "--env", "dev", "--dry-run"]);
    look.code(0).stdout_has(&[
        "`mallory` is guest in `dev` (`access.dev.guest` lists `*`)",
        "would be refused (exit 2): `mallory` has the role `guest` in `dev`; deploying `dev` \
         needs `developer`",
    ]);
    let report: Value = p
        .lumo_as(
            "mallory",
            &["deploy", "--env", "dev", "--dry-run", "--json"],
        )
        .code(0)
        .json();
    assert_eq!(
        report["access"]["rights"]["deploy"]["refusal"].as_str(),
        Some("refused: `mallory` has the role `guest` in `dev`; deploying `dev` needs `developer`"),
        "{report:#}"
    );
    assert_eq!(
        env.status().recent_events.len(),
        events,
        "a dry run records nothing"
    );
    p.lumo_as("bob", &["deploy", "--env", "dev"]).code(0);
    assert!(p.has_out("hello") && p.has_out("migrate"));

    let lock = |actor: &str| p.lumo_as(actor, &["lock", "--env", "dev", "--reason", "maintenance"]);
    lock("mallory")
        .code(2)
        .stderr_has(&["refused", "locking `dev` by hand needs `developer`"]);
    assert_eq!(last_event().kind, "refused");
    assert!(env.status().lock.manual.is_none());
    lock("bob").code(0);
    p.lumo_as("mallory", &["unlock", "--env", "dev", "--force"])
        .code(2)
        .stderr_has(&["refused", "needs `developer`"]);
    p.lumo_as("alice", &["unlock", "--env", "dev", "--force"])
        .code(0);
    assert_eq!(last_event().kind, "force_unlocked");

    lock("alice").code(0);
    p.lumo_as("bob", &["unlock", "--env", "dev"])
        .code(3)
        .stderr_has(&["--force"]);
    p.lumo_as("bob", &["unlock", "--env", "dev", "--force"])
        .code(2)
        .stderr_has(&[
            "refused",
            "`bob` has the role `developer`",
            "needs `maintainer`",
        ]);
    let refused = last_event();
    assert_eq!(
        (refused.kind.as_str(), refused.actor.as_str()),
        ("refused", "bob")
    );
    let manual = env.status().lock.manual.unwrap();
    assert_eq!(
        manual.actor, "alice",
        "the refused unlock released the lock"
    );
    p.lumo_as("alice", &["unlock", "--env", "dev"]).code(0);
}

mod roles_gate_deploys_and_locks {
    #[test]
    fn local() {
        super::roles_gate_deploys_and_locks(super::Env::local());
    }

    #[test]
    fn aws() {
        if let Some(env) = super::Env::aws() {
            super::roles_gate_deploys_and_locks(env);
        }
    }
}

/// Regression (issue 12): a CI identity with `developer` deployed once, and its second deploy
/// was refused because an update-only `maintainer` task joined the plan. The tasks a deploy
/// runs are part of it; the task's `permission` gates its manual runs only, and that refusal
/// is recorded.
fn a_developer_ci_identity_deploys_twice_across_a_maintainer_update_task(env: Env) {
    env.config(
        "access: { dev: { maintainer: ['alice'], developer: ['ci-bot'] } },",
        "{ seed: { runOn: 'deploy' },
           rotate: { runOn: 'update', permission: 'maintainer' } }",
    );
    env.p()
        .task("seed", "echo seed >> \"@OUT@/seed\"")
        .task("rotate", "echo rotate >> \"@OUT@/rotate\"");
    let p = env.p();
    let ci = [("GITHUB_ACTOR", "ci-bot")];
    let deploy = |version: &str| {
        p.lumo_without_actor(
            &["deploy", "--env", "dev", "--deploy-version", version],
            &ci,
        )
    };
    deploy("v1").code(0);
    let look = p.lumo_without_actor(&["deploy", "--env", "dev", "--dry-run"], &ci);
    look.code(0).stdout_has(&[
        "`ci-bot` is developer in `dev` (`access.dev.developer` lists `ci-bot`)",
        "allowed: deploying `dev` needs developer (default); the tasks it runs are part of the \
         deploy",
        "rotate",
        "would_run",
    ]);
    deploy("v2").code(0);
    assert_eq!(p.out_lines("rotate"), ["rotate"], "the update task ran");
    assert_eq!(env.status().state.version.as_deref(), Some("v2"));
    assert!(
        !env.status()
            .recent_events
            .iter()
            .any(|e| e.kind == "refused"),
        "a deploy was refused"
    );

    // By hand, the maintainer task is the maintainer's; a dry run says so first, with the
    // error the run gives, and records nothing.
    let preview: RunPreview = p
        .lumo_without_actor(
            &["run", "rotate", "--env", "dev", "--dry-run", "--json"],
            &ci,
        )
        .code(0)
        .json();
    let refusal = "refused: `ci-bot` has the role `developer` in `dev`; task `rotate` needs \
                   `maintainer`";
    assert_eq!(
        (
            preview.allowed,
            preview.may_run,
            preview.permission.as_str()
        ),
        (false, false, "maintainer")
    );
    assert_eq!(preview.error.as_deref(), Some(refusal));
    assert!(preview.bundle_hash.is_some(), "{preview:?}");
    p.lumo_without_actor(&["run", "rotate", "--env", "dev", "--dry-run"], &ci)
        .code(0)
        .stdout_has(&[
            "Dry run: task `rotate` by hand in dev",
            "would be refused (exit 2): `ci-bot` has the role `developer` in `dev`; task \
             `rotate` needs `maintainer`",
        ]);
    assert!(
        !env.status()
            .recent_events
            .iter()
            .any(|e| e.kind == "refused"),
        "a dry run recorded a refusal"
    );
    p.lumo_without_actor(&["run", "rotate", "--env", "dev"], &ci)
        .code(2)
        .stderr_has(&[refusal]);
    assert_eq!(p.out_lines("rotate"), ["rotate"], "the refused run ran");
    let refused = env.status().recent_events.into_iter().next().unwrap();
    assert_eq!(
        (refused.kind.as_str(), refused.actor.as_str()),
        ("refused", "ci-bot")
    );
    let preview: RunPreview = p
        .lumo_as(
            "alice",
            &["run", "rotate", "--env", "dev", "--dry-run", "--json"],
        )
        .code(0)
        .json();
    assert!(preview.allowed && preview.error.is_none(), "{preview:?}");
    p.lumo_as("alice", &["run", "rotate", "--env", "dev"])
        .code(0);
    assert_eq!(
        p.out_lines("rotate"),
        ["rotate", "rotate"],
        "only the real run ran"
    );

    // `lumo tasks` says the same before anyone is refused, and why.
    let asked: TasksAsked = p
        .lumo_without_actor(&["tasks", "--env", "dev", "--json"], &ci)
        .code(0)
        .json();
    assert_eq!(asked.may_deploy, Some(true));
    assert_eq!(asked.deploy_role.as_deref(), Some("developer"));
    let may = |name: &str| asked.tasks.iter().find(|t| t.name == name).unwrap().may_run;
    assert_eq!((may("seed"), may("rotate")), (Some(true), Some(false)));
    let access = asked.access.unwrap();
    assert_eq!(
        (
            access.role_from.kind.as_str(),
            access.role_from.key.as_deref()
        ),
        ("listed", Some("access.dev.developer"))
    );
    let right = |name: &str| {
        let r = &access.rights[name];
        (r.allowed, r.needs.as_str(), r.from.as_str())
    };
    assert_eq!(right("deploy"), (true, "developer", "default"));
    assert_eq!(right("exec"), (false, "maintainer", "default"));
    assert_eq!(right("lock"), (true, "developer", "fixed"));
    assert_eq!(right("forceUnlock"), (false, "maintainer", "fixed"));
    assert_eq!(
        access.rights["exec"].refusal.as_deref(),
        Some("refused: `ci-bot` has the role `developer` in `dev`; `lumo exec` needs `maintainer`")
    );
    let text = p.lumo_without_actor(&["tasks", "--env", "dev"], &ci);
    text.code(0).stdout_has(&[
        "`ci-bot` is developer in `dev` (`access.dev.developer` lists `ci-bot`).",
        "  may: deploy (developer, default), lock/unlock (developer)",
        "  may not: exec (maintainer, default), unlock --force (maintainer)",
        "PERMISSION  MAY RUN",
    ]);
    let row = |task: &str| {
        text.stdout
            .lines()
            .find(|l| l.starts_with(task))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("rotate")[4..], ["maintainer", "no"]);
    assert_eq!(row("seed")[4..], ["developer", "yes"]);
}

/// A project whose `purge` task asks for confirmation, deployed, for the confirmation tests;
/// `confirm` is the `access.dev.confirm` rule, if any.
fn confirming_project(env: &Env, confirm: Option<&str>) {
    let access = confirm
        .map(|rule| format!("access: {{ dev: {{ confirm: '{rule}' }} }},"))
        .unwrap_or_default();
    env.config(
        &access,
        "{ purge: { runOn: [], confirm: 'This drops the cache',
                    args: { target: { required: true }, mode: { default: 'soft' } } } }",
    );
    env.p()
        .task("purge", "echo \"$LUMO_ARG_TARGET\" >> \"@OUT@/purged\"");
    env.p().lumo(&["deploy", "--env", "dev"]).code(0);
}

/// `lumo run purge --env dev --arg target=users --json` at a terminal, answering `answer`.
fn answer_purge(env: &Env, answer: &str) -> (Option<i32>, String, String) {
    let cmd = env.p().std_command(
        support::ACTOR,
        &[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=users",
            "--json",
        ],
    );
    support::pty::answering(cmd, answer)
}

/// Declining is its own outcome: exit 2, `error.kind` `declined` (not `invalid`, as a typo
/// in an argument is), recorded as a `refused` event; `y` declines; only `yes` runs it. The
/// prompt shows the task, the environment and every argument value.
fn a_declined_confirmation_exits_2_and_is_recorded(env: Env) {
    confirming_project(&env, None);
    let p = env.p();
    for answer in ["no", "y"] {
        let (code, stdout, stderr) = answer_purge(&env, answer);
        assert_eq!(code, Some(2), "answer {answer:?}: {stderr}");
        for shown in [
            "This drops the cache",
            "task         purge",
            "environment  dev",
            "args         mode=soft target=users",
            "Type `yes`",
        ] {
            assert!(stderr.contains(shown), "{shown:?} not in:\n{stderr}");
        }
        let error: support::ErrorDocument = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            (error.error.kind.as_str(), error.error.exit_code),
            ("declined", 2),
            "{stdout}"
        );
        assert!(!p.has_out("purged"), "a declined run ran");
        let event = env.status().recent_events.into_iter().next().unwrap();
        assert_eq!(
            (event.kind.as_str(), event.actor.as_str()),
            ("refused", support::ACTOR)
        );
        assert!(
            event.message.contains("declined") && event.message.contains(&format!("`{answer}`")),
            "{event:?}"
        );
    }
    assert!(
        env.history().is_empty(),
        "a declined run was recorded as a run"
    );
    let (code, _, stderr) = answer_purge(&env, "yes");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(p.out_lines("purged"), ["users"]);
}

/// A secret pasted at the prompt by mistake declines, and is `***` in the error and in the
/// recorded `refused` event, as everywhere else lumo shows or stores text.
fn a_secret_typed_at_the_prompt_is_masked_in_the_refusal(env: Env) {
    // The aws config has the token already (`AwsProject::config_with`).
    let secrets = if env.is_aws() {
        String::new()
    } else {
        format!("secrets: {{ token: {{ value: () => '{ARG_SECRET}' }} }},")
    };
    env.config(
        &secrets,
        "{ purge: { runOn: [], confirm: 'This drops the cache',
                    args: { target: { required: true }, mode: { default: 'soft' } } } }",
    );
    env.p()
        .task("purge", "echo \"$LUMO_ARG_TARGET\" >> \"@OUT@/purged\"");
    env.p().lumo(&["deploy", "--env", "dev"]).code(0);
    let (code, stdout, stderr) = answer_purge(&env, &format!("oops {ARG_SECRET}"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        !stderr.contains(ARG_SECRET) && !stdout.contains(ARG_SECRET),
        "the secret was shown:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("the answer was `oops ***`"), "{stdout}");
    assert!(!env.p().has_out("purged"), "a declined run ran");
    let event = env.status().recent_events.into_iter().next().unwrap();
    assert_eq!(event.kind, "refused");
    assert!(
        event.message.contains("(`oops ***`)") && !event.message.contains(ARG_SECRET),
        "{event:?}"
    );
}

/// `access.dev.confirm: 'name'`: only the environment's name confirms (GitHub's "type the
/// repository name"); `yes` declines.
fn an_environment_can_ask_for_its_name(env: Env) {
    confirming_project(&env, Some("name"));
    let (code, stdout, stderr) = answer_purge(&env, "yes");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("Type the environment's name (`dev`)"),
        "{stderr}"
    );
    assert!(stdout.contains("\"declined\""), "{stdout}");
    assert!(!env.p().has_out("purged"));
    let (code, _, stderr) = answer_purge(&env, "dev");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(env.p().out_lines("purged"), ["users"]);
}

/// The dev loop (issue 12): after editing a deployed task, `lumo run` runs the deployed bundle
/// and says in one line that the working copy differs; `--from-source` runs the edited file,
/// recorded with that bundle's hash and as not deployed.
fn from_source_runs_the_working_copy_and_a_plain_run_says_it_differs(env: Env) {
    env.config("", "{ migrate: { runOn: [] } }");
    env.p().task("migrate", "echo v1 >> \"@OUT@/migrate\"");
    let p = env.p();
    p.deploy(&["--deploy-version", "v1"], 0);
    let deployed_hash = env.status().state.bundles["migrate"].clone();
    p.lumo(&["run", "migrate", "--env", "dev"]).code(0);
    let quiet = p.lumo(&["run", "migrate", "--env", "dev"]);
    assert!(
        !quiet.code(0).stderr.contains("changed since"),
        "{}",
        quiet.stderr
    );

    p.task("migrate", "echo v2 >> \"@OUT@/migrate\"");
    p.lumo(&["run", "migrate", "--env", "dev"])
        .code(0)
        .stderr_has(&[
            "`functions/tasks/migrate.sh` changed since the deployed bundle of task `migrate` (deployed ",
            "`--from-source` runs the working copy",
        ]);
    assert_eq!(
        p.out_lines("migrate"),
        ["v1", "v1", "v1"],
        "the deployed bundle ran"
    );

    let run: support::TaskRun = p
        .lumo(&["run", "migrate", "--env", "dev", "--from-source", "--json"])
        .code(0)
        .json();
    assert_eq!(
        p.out_lines("migrate"),
        ["v1", "v1", "v1", "v2"],
        "the working copy ran"
    );
    assert!(run.from_source, "{run:?}");
    assert_ne!(run.bundle_hash, deployed_hash);
    assert_eq!(
        run.version, "v1",
        "it ran in the deployed version's environment"
    );
    let history = env.history();
    assert_eq!(
        history.iter().filter(|r| r.from_source).count(),
        1,
        "{history:#?}"
    );
    assert_eq!(history[0].bundle_hash, run.bundle_hash);
    p.lumo(&["history", "--env", "dev"])
        .code(0)
        .stdout_has(&["(working copy)"]);
    // The environment still runs what was deployed.
    assert_eq!(env.status().state.bundles["migrate"], deployed_hash);
}

/// The secret both providers' projects here have (`aws`: the harness config's `token`).
const ARG_SECRET: &str = "tok-9f8e7d6c5b";

/// Every argument rule with its error (issue 12), on each provider: `required` is present and
/// not blank, `choices`, the types number / boolean / environment (another environment of the
/// project), names matched without regard to case, unknown and repeated names. Each is exit 2
/// with what is allowed, before anything runs or is recorded; the values a run got (defaults
/// filled in, a secret masked) are recorded and shown by `history` and `logs`.
fn every_argument_rule_has_its_error_and_the_values_are_recorded_masked(env: Env) {
    let secrets = if env.is_aws() {
        String::new()
    } else {
        format!("secrets: {{ token: {{ value: () => '{ARG_SECRET}' }} }},")
    };
    env.config(
        &format!("{secrets} environments: ['dev', 'staging', 'prod'],"),
        "{ copy: { runOn: [], args: {
             source: { type: 'environment', required: true },
             target: { required: true },
             mode: { choices: ['soft', 'hard'], default: 'soft' },
             batch: { type: 'number', default: 100 },
             dryRun: { type: 'boolean', default: false } } } }",
    );
    env.p().task(
        "copy",
        "echo \"$LUMO_ARG_SOURCE $LUMO_ARG_TARGET $LUMO_ARG_DRY_RUN\" >> \"@OUT@/copy\"",
    );
    let p = env.p();
    p.deploy(&[], 0);
    let ok = ["--arg", "source=prod", "--arg", "target=t"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = ok.to_vec();
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--arg", "source=prod", "--arg", "target="],
            "`--arg target=`: `target` is required and must not be blank",
        ),
        (
            vec!["--arg", "source=prod"],
            "task `copy` needs the required argument(s) `target`",
        ),
        (
            with(&["--arg", "mode=banana"]),
            "`--arg mode=banana`: `mode` takes one of `soft`, `hard`",
        ),
        (
            with(&["--arg", "batch=lots"]),
            "`--arg batch=lots`: `batch` takes a number",
        ),
        (
            with(&["--arg", "dryRun=yes"]),
            "`--arg dryRun=yes`: `dryRun` takes `true` or `false`",
        ),
        (
            vec!["--arg", "source=qa", "--arg", "target=t"],
            "`--arg source=qa`: `source` takes the name of another environment of this \
             project: `staging`, `prod`",
        ),
        (
            vec!["--arg", "source=dev", "--arg", "target=t"],
            "(`dev` is the environment the task runs in)",
        ),
        (
            with(&["--arg", "SOURCE=staging"]),
            "`--arg SOURCE` is given more than once (as argument `source`)",
        ),
        (
            with(&["--arg", "sorce=prod"]),
            "`--arg sorce`: unknown argument; task `copy` declares `source`, `target`, `mode`, \
             `batch`, `dryRun`; did you mean `source`?",
        ),
    ];
    for (args, expected) in &cases {
        let mut line = vec!["run", "copy", "--env", "dev", "--json"];
        line.extend_from_slice(args);
        let error = p.lumo(&line).code(2).json_error();
        assert_eq!(error.kind, "invalid", "{args:?}: {error:?}");
        assert!(
            error.message.contains(expected),
            "{args:?}: expected {expected:?} in {:?}",
            error.message
        );
    }
    assert!(!p.has_out("copy"), "a refused run ran");
    assert!(env.history().is_empty(), "a refused run was recorded");

    let run: support::TaskRun = p
        .lumo(&[
            "run",
            "copy",
            "--env",
            "dev",
            "--arg",
            "SOURCE=prod",
            "--arg",
            &format!("Target={ARG_SECRET}"),
            "--arg",
            "dryrun=true",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(
        p.out_lines("copy"),
        [format!("prod {ARG_SECRET} true")],
        "the task got the values"
    );
    let recorded: BTreeMap<String, String> = [
        ("batch", "100"),
        ("dryRun", "true"),
        ("mode", "soft"),
        ("source", "prod"),
        ("target", "***"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(run.args, recorded);
    assert_eq!(env.history()[0].args, recorded);
    assert_eq!(p.logs(&run.id).run.args, recorded);
    let text = p.lumo(&["history", "--env", "dev"]).code(0).stdout.clone();
    assert!(
        text.contains("batch=100 dryRun=true mode=soft source=prod target=***"),
        "{text}"
    );
    assert!(!text.contains(ARG_SECRET), "{text}");
}

/// `lumo tasks --env E --json` with who is asking.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TasksAsked {
    actor: String,
    role: Option<String>,
    #[serde(default)]
    may_deploy: Option<bool>,
    #[serde(default)]
    deploy_role: Option<String>,
    #[serde(default)]
    access: Option<Access>,
    tasks: Vec<support::TaskInfo>,
}

/// `access` of `lumo tasks --env E --json` and `deploy --dry-run --json`: what the actor may
/// do there, and why.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Access {
    role_from: RoleFrom,
    rights: BTreeMap<String, Right>,
}

#[derive(Debug, serde::Deserialize)]
struct RoleFrom {
    kind: String,
    key: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Right {
    allowed: bool,
    needs: String,
    from: String,
    refusal: Option<String>,
}

/// `lumo run TASK --dry-run --json`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunPreview {
    allowed: bool,
    error: Option<String>,
    permission: String,
    may_run: bool,
    bundle_hash: Option<String>,
}

/// Regression: on `aws`, `lumo tasks` judged "may run" for the git or OS user while `lumo run`
/// checks the AWS caller identity, so it said "not for you" about tasks the caller may run.
#[test]
fn on_aws_tasks_asks_as_the_same_actor_as_run() {
    let Some(env) = Env::aws() else { return };
    env.config(
        "access: { dev: { maintainer: ['arn:aws:*'], guest: ['*'] } },",
        "{ chore: { runOn: [], permission: 'maintainer' } }",
    );
    env.p().task("chore", "echo chore > \"@OUT@/chore\"");
    let p = env.p();
    // A deploy needs the developer role: the AWS caller (a maintainer here) deploys.
    p.lumo_without_actor(&["deploy", "--env", "dev"], &[])
        .code(0);

    let asked: TasksAsked = p
        .lumo_without_actor(&["tasks", "--env", "dev", "--json"], &[])
        .code(0)
        .json();
    assert!(asked.actor.starts_with("arn:aws:"), "{asked:?}");
    assert_eq!(asked.role.as_deref(), Some("maintainer"));
    assert_eq!(asked.tasks[0].may_run, Some(true));
    p.lumo_without_actor(&["run", "chore", "--env", "dev"], &[])
        .code(0);
    assert!(p.has_out("chore"));

    // A CI's user comes first, for both.
    let ci = [("GITHUB_ACTOR", "octocat")];
    let asked: TasksAsked = p
        .lumo_without_actor(&["tasks", "--env", "dev", "--json"], &ci)
        .code(0)
        .json();
    assert_eq!(
        (asked.actor.as_str(), asked.role.as_deref()),
        ("octocat", Some("guest"))
    );
    assert_eq!(asked.tasks[0].may_run, Some(false));
    p.lumo_without_actor(&["run", "chore", "--env", "dev"], &ci)
        .code(2);
}
