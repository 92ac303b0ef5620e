//! `lumo exec` end to end, each scenario on both providers: `local`, and `aws` on the emulators
//! (the real runner behind the harness's Lambda; skipped without the emulator venv, failing
//! under `CI=true`). An ad-hoc command runs as the environment's tasks run — its secrets
//! masked, what it leaves behind stopped, its lock respected — and is recorded like a run:
//! kind `exec`, the masked command line, the actor, the exit code, the output.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::aws::AwsProject;
use support::{RunStatus, TaskRun, TestProject, Trigger};

/// The value of the secret `token` (`$TOKEN`) in both providers' projects.
const SECRET: &str = "tok-9f8e7d6c5b";

/// A project on one provider: `local` in a temp dir, or its own bucket and table on the
/// emulators.
enum Setup {
    Local(TestProject),
    Aws(Box<AwsProject>),
}

impl Setup {
    /// The project, with `extra` top-level config keys and `tasks`; `None` when the provider
    /// cannot be tested here.
    fn new(provider: &str, extra: &str, tasks: &str) -> Option<Setup> {
        match provider {
            "local" => {
                let p = TestProject::new();
                p.config(&format!(
                    "export default {{ projectName: 'exec-e2e',
                       secrets: {{ token: {{ value: () => process.env.E2E_TOKEN ?? '{SECRET}' }} }},
                       {extra} tasks: {tasks} }};"
                ));
                Some(Setup::Local(p))
            }
            _ => {
                let a = AwsProject::new()?;
                a.config_with(extra, tasks);
                Some(Setup::Aws(Box::new(a)))
            }
        }
    }

    fn p(&self) -> &TestProject {
        match self {
            Setup::Local(p) => p,
            Setup::Aws(a) => &a.p,
        }
    }
}

/// The project `migrate` (with its migrations as an asset) and `report` (no assets).
const TASKS: &str = "{ migrate: { copyAssets: [{ from: 'migrations' }] }, report: {} }";

fn with_tasks(p: &TestProject) {
    p.write("migrations/0001_init.sql", "create table users;\n")
        .task("migrate", "echo migrating")
        .task("report", "echo reporting");
}

/// [`with_tasks`], deployed: the environment then has its runner (on `aws`, the function a
/// deploy creates).
fn deployed(p: &TestProject) {
    with_tasks(p);
    p.deploy(&[], 0);
}

/// Whether process `pid` is gone or only a zombie; a live process that is not `comm` is a
/// recycled pid.
fn process_is_gone(pid: i32, comm: &str) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let state = rest.trim_start().chars().next().unwrap_or('?');
    let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
    state == 'Z' || state == 'X' || name != comm
}

/// The newest run in the history.
fn newest(p: &TestProject) -> TaskRun {
    p.history().pop().unwrap()
}

// ---- the scenarios -----------------------------------------------------------------------

/// A command that prints the secret, leaves a child behind and exits 3: the output is masked
/// everywhere, the child is stopped, lumo exits 1 (a failed run), and the run is recorded with
/// kind `exec`, the actor, the masked command line and exit code 3, in `history` and `logs`.
fn a_failing_command_is_masked_recorded_and_leaves_nothing_behind(provider: &str) {
    let Some(s) = Setup::new(provider, "", TASKS) else {
        return;
    };
    let p = s.p();
    deployed(p);
    let pid_file = p.out().join("child.pid");
    let script = format!(
        "echo \"token $TOKEN in $LUMO_ENVIRONMENT\"; sleep 300 & echo $! > {}; exit 3",
        pid_file.display()
    );
    let out = p.lumo(&[
        "exec", "--env", "dev", "--yes", "--json", "--", "sh", "-c", &script, SECRET,
    ]);
    out.code(1);
    let run: TaskRun = out.json();
    assert!(
        !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("token *** in dev"),
        "live output: {}",
        out.stderr
    );
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.kind, "exec");
    assert_eq!(run.actor, support::ACTOR);
    assert_eq!(run.trigger, Trigger::Manual);
    assert_eq!(run.task, "", "it ran in no task's bundle");
    let command = run.command.clone().unwrap();
    assert_eq!(command, ["sh", "-c", script.as_str(), "***"], "masked");

    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        process_is_gone(pid, "sleep"),
        "the child {pid} outlived the run"
    );

    let recorded = newest(p);
    assert_eq!(recorded.id, run.id);
    assert_eq!(recorded.kind, "exec");
    assert_eq!(recorded.exit_code, Some(3));
    assert_eq!(recorded.command.as_deref(), Some(command.as_slice()));
    let logs = p.logs(&run.id);
    assert_eq!(logs.output.as_deref(), Some("token *** in dev\n"));
    let text = p.lumo(&["history", "--env", "dev"]).code(0).stdout.clone();
    assert!(text.contains("exec sh -c 'echo"), "{text}");
    let status = p.status();
    assert_eq!(status.last_runs[0].id, run.id);
    if let Setup::Local(p) = &s {
        assert!(TestProject::files_containing(&p.lumo_dir(), SECRET).is_empty());
    }
}

/// `exec` needs the environment's `exec` role (maintainer): a developer is refused with exit 2
/// before anything runs, and the refusal is recorded.
fn a_developer_is_refused_and_the_refusal_is_recorded(provider: &str) {
    let access = "access: { dev: { maintainer: ['e2e-tester'], developer: ['dev-dan'] } },";
    let Some(s) = Setup::new(provider, access, TASKS) else {
        return;
    };
    let p = s.p();
    deployed(p);
    let marker = p.out().join("ran");
    let touch = format!("touch {}", marker.display());
    p.lumo_as(
        "dev-dan",
        &["exec", "--env", "dev", "--yes", "--", "sh", "-c", &touch],
    )
    .code(2)
    .stderr_has(&[
        "refused",
        "`dev-dan` has the role `developer`",
        "needs `maintainer`",
    ]);
    assert!(!marker.exists(), "the command ran");
    assert_eq!(p.history().len(), 2, "only the deploy's runs");
    let refused = &p.status().recent_events[0];
    assert_eq!(refused.kind, "refused");
    assert_eq!(refused.actor, "dev-dan");
    assert!(
        refused.message.contains("`lumo exec`"),
        "{}",
        refused.message
    );

    p.lumo(&["exec", "--env", "dev", "--yes", "--", "sh", "-c", &touch])
        .code(0);
    assert!(marker.exists(), "a maintainer may");
}

/// One writer per environment: a held lock makes `exec` exit 3 naming the holder, and with
/// `--wait` it runs once the lock is released.
fn a_held_lock_exits_3_or_is_waited_for(provider: &str) {
    let Some(s) = Setup::new(provider, "", TASKS) else {
        return;
    };
    let p = s.p();
    deployed(p);
    p.lumo_as("alice", &["lock", "--env", "dev", "--reason", "freeze"])
        .code(0);
    p.lumo(&["exec", "--env", "dev", "--yes", "--", "echo", "hi"])
        .code(3)
        .stderr_has(&["locked by", "alice"]);
    assert_eq!(p.history().len(), 2, "only the deploy's runs");

    let started = Instant::now();
    let waited = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            p.lumo_as("alice", &["unlock", "--env", "dev"]).code(0);
        });
        p.lumo(&[
            "exec", "--env", "dev", "--yes", "--wait", "60s", "--json", "--", "echo", "waited",
        ])
    });
    waited.code(0);
    assert!(started.elapsed() >= Duration::from_secs(2));
    let run: TaskRun = waited.json();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.message.as_deref(), Some("waited"));
}

/// `--in TASK` runs the command in the task's deployed bundle, among its code and assets; a
/// task that does not exist or is not deployed is exit 2 naming it and the ones that are.
fn in_a_task_the_command_sees_its_bundle(provider: &str) {
    let Some(s) = Setup::new(provider, "", TASKS) else {
        return;
    };
    let p = s.p();
    with_tasks(p);
    p.lumo(&[
        "exec", "--env", "dev", "--yes", "--in", "migrate", "--", "ls",
    ])
    .code(2)
    .stderr_has(&[
        "`--in migrate`",
        "no deployed bundle",
        "nothing is deployed",
    ]);
    let deployed = p.deploy(&[], 0);
    assert_eq!(deployed.task("migrate").status, RunStatus::Succeeded);

    let run: TaskRun = p
        .lumo(&[
            "exec",
            "--env",
            "dev",
            "--yes",
            "--json",
            "--in",
            "migrate",
            "--",
            "sh",
            "-c",
            "cat migrations/0001_init.sql; ls; echo \"task $LUMO_TASK\"",
        ])
        .code(0)
        .json();
    let logs = p.logs(&run.id);
    let output = logs.output.unwrap();
    assert!(output.contains("create table users;"), "{output}");
    assert!(output.contains("migrate.sh"), "{output}");
    assert!(output.contains("task migrate"), "{output}");
    assert!(
        !output.contains("migrating"),
        "the task's entry ran: {output}"
    );
    assert_eq!(run.task, "migrate");
    assert_eq!(run.bundle_hash, p.status().state.bundles["migrate"]);

    p.lumo(&[
        "exec", "--env", "dev", "--yes", "--in", "migrat", "--", "ls",
    ])
    .code(2)
    .stderr_has(&[
        "`--in migrat`",
        "the tasks of `dev` are `migrate`, `report`",
    ]);
    // A task added since the deploy exists, but has no bundle there yet.
    p.task("seed", "echo seeding");
    p.lumo(&["exec", "--env", "dev", "--yes", "--in", "seed", "--", "ls"])
        .code(2)
        .stderr_has(&["`--in seed`", "the deployed tasks are `migrate`, `report`"]);
}

/// At a terminal `exec` asks first, naming the command (secrets masked) and the environment:
/// `y` declines — exit 2 with `error.kind` `declined`, a `refused` event with the actor, and
/// nothing run or recorded as a run — and only `yes` runs it.
fn at_a_terminal_it_asks_naming_the_command_and_a_decline_is_recorded(provider: &str) {
    let Some(s) = Setup::new(provider, "", TASKS) else {
        return;
    };
    let p = s.p();
    deployed(p);
    let marker = p.out().join("ran");
    let touch = format!("touch {}", marker.display());
    let ask = || {
        p.std_command(
            support::ACTOR,
            &[
                "exec", "--env", "dev", "--json", "--", "sh", "-c", &touch, SECRET,
            ],
        )
    };
    let (code, stdout, stderr) = support::pty::answering(ask(), "y");
    assert_eq!(code, Some(2), "{stderr}");
    for shown in [
        "command      sh -c 'touch ",
        "/out/ran' '***'\n",
        "environment  dev",
        "Type `yes` to run it",
    ] {
        assert!(stderr.contains(shown), "{shown:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains(SECRET) && !stdout.contains(SECRET));
    let error: support::ErrorDocument = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (error.error.kind.as_str(), error.error.exit_code),
        ("declined", 2),
        "{stdout}"
    );
    assert!(!marker.exists(), "a declined command ran");
    assert_eq!(p.history().len(), 2, "only the deploy's runs");
    let event = &p.status().recent_events[0];
    assert_eq!(
        (event.kind.as_str(), event.actor.as_str()),
        ("refused", support::ACTOR)
    );
    assert!(
        event.message.contains("declined") && !event.message.contains(SECRET),
        "{event:?}"
    );

    let (code, _, stderr) = support::pty::answering(ask(), "yes");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(marker.exists(), "`yes` did not run it");
}

macro_rules! on_both_providers {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $scenario() { super::$scenario("local") })*
        }
        mod aws {
            $(#[test] fn $scenario() { super::$scenario("aws") })*
        }
    };
}

on_both_providers!(
    a_failing_command_is_masked_recorded_and_leaves_nothing_behind,
    a_developer_is_refused_and_the_refusal_is_recorded,
    a_held_lock_exits_3_or_is_waited_for,
    in_a_task_the_command_sees_its_bundle,
    at_a_terminal_it_asks_naming_the_command_and_a_decline_is_recorded,
);

/// What `lumo exec` refuses before it looks at any provider.
mod usage {
    use super::*;

    #[test]
    fn without_a_command_or_a_terminal_it_says_what_to_do() {
        let s = Setup::new("local", "", TASKS).unwrap();
        let p = s.p();
        with_tasks(p);
        p.lumo(&["exec", "--env", "dev", "--yes"])
            .code(2)
            .stderr_has(&[
                "needs a command to run, after `--`",
                "lumo exec --env dev -- ",
            ]);
        p.lumo(&["exec", "--env", "dev", "--", "echo", "hi"])
            .code(2)
            .stderr_has(&[
                "command `echo hi` asks for confirmation and there is no terminal to ask on",
                "--yes",
            ]);
        p.lumo(&[
            "exec",
            "--env",
            "dev",
            "--yes",
            "--timeout",
            "20m",
            "--",
            "true",
        ])
        .code(2)
        .stderr_has(&["`--timeout 20m`", "from 1s to 15m"]);
        assert!(p.history().is_empty());
    }

    #[test]
    fn the_timeout_stops_the_command_and_is_recorded() {
        let s = Setup::new("local", "", TASKS).unwrap();
        let p = s.p();
        with_tasks(p);
        let run: TaskRun = p
            .lumo(&[
                "exec",
                "--env",
                "dev",
                "--yes",
                "--json",
                "--timeout",
                "1s",
                "--",
                "sleep",
                "30",
            ])
            .code(1)
            .json();
        assert_eq!(run.status, RunStatus::TimedOut);
    }

    /// `access.<env>.exec` names the role `lumo exec` needs there.
    #[test]
    fn an_environment_may_let_developers_exec() {
        let access =
            "access: { dev: { maintainer: ['ana'], developer: ['dev-dan'], exec: 'developer' } },";
        let s = Setup::new("local", access, TASKS).unwrap();
        let p = s.p();
        with_tasks(p);
        p.lumo_as("dev-dan", &["exec", "--env", "dev", "--yes", "--", "true"])
            .code(0);
        p.lumo_as(
            "guest-gil",
            &["exec", "--env", "dev", "--yes", "--", "true"],
        )
        .code(2)
        .stderr_has(&["`guest-gil` has no role in `dev`", "needs `developer`"]);
    }
}
