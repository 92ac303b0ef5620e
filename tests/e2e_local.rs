//! End-to-end tests of the `lumo` binary on the `local` provider: real processes, each test in
//! its own temporary project, everything checked through what a user sees (exit codes, stderr,
//! `--json` documents parsed into typed structs, `lumo history`/`logs`/`status`) and through
//! what the tasks themselves observed (files they write to an `out/` directory beside the
//! project).
//!
//! Layout: lifecycle (§4, §5), manual runs, output and secrets, CLI behaviour (§7), config
//! errors (§3, §8), Lumo compatibility, `init` and `build`.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use support::{
    BuildReport, DeploymentStatus, InitReport, Logs, RunStatus, Status, TaskContext, TaskList,
    TaskRun, TestProject, Trigger, parse_env_dump,
};

/// A task that records everything it is handed, by trigger: stdin, the context file, the
/// `LUMO_*` variables and its own env, its working directory and the files in it.
const OBSERVER: &str = r#"
tag="$LUMO_TRIGGER"
cat > "@OUT@/$tag.stdin.json"
cp "$LUMO_CONTEXT_FILE" "@OUT@/$tag.file.json"
env | grep -E '^(LUMO_|CUSTOM_VAR=)' | sort > "@OUT@/$tag.env"
pwd -P > "@OUT@/$tag.pwd"
find . -type f | sort > "@OUT@/$tag.files"
"#;

/// A task that appends its trigger to `out/<task>.log` (task names here have no `/`).
const RECORDER: &str = r#"echo "$LUMO_TRIGGER" >> "@OUT@/$LUMO_TASK.log""#;

fn context(p: &TestProject, tag: &str) -> TaskContext {
    let from_stdin: TaskContext =
        serde_json::from_str(&p.read_out(&format!("{tag}.stdin.json"))).unwrap();
    let from_file: TaskContext =
        serde_json::from_str(&p.read_out(&format!("{tag}.file.json"))).unwrap();
    assert_eq!(
        from_stdin, from_file,
        "stdin and $LUMO_CONTEXT_FILE hold the same TaskContext"
    );
    from_stdin
}

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

// ---------------------------------------------------------------------------------------------
// Lifecycle (PRODUCT.md §4, §5)
// ---------------------------------------------------------------------------------------------

#[test]
fn task_sees_first_deploy_then_update_in_its_context() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'ctx-test',
          tasks: {
            observe: {
              copyAssets: [{ from: 'migrations', to: 'sql' }, { from: 'seed.json' }],
              config: { database: 'app', nested: { n: 1 } },
              env: { CUSTOM_VAR: 'custom value' },
            },
          },
        };"#,
    )
    .write("migrations/0001_init.sql", "create table users (id int);")
    .write("seed.json", "{}")
    .task("observe", OBSERVER);

    let first = p.deploy(&["--deploy-version", "v1"], 0);
    assert!(first.is_first_deploy);
    assert_eq!(first.previous_version, None);
    assert_eq!(first.version, "v1");
    assert_eq!(first.status, Some(DeploymentStatus::Succeeded));

    let ctx = context(&p, "deploy");
    assert!(ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.previous_version, None);
    assert_eq!(ctx.deployment.version, "v1");
    assert_eq!(ctx.deployment.environment, "dev");
    assert_eq!(ctx.trigger, Trigger::Deploy);
    assert_eq!(ctx.task, "observe");
    assert_eq!(
        ctx.config,
        json!({ "database": "app", "nested": { "n": 1 } })
    );
    assert!(ctx.args.is_empty());
    let runs = p.history();
    assert_eq!(runs.len(), 1);
    assert_eq!(ctx.run_id, runs[0].id, "runId is the recorded run id");
    assert_eq!(
        first.task("observe").run_id.as_deref(),
        Some(runs[0].id.as_str())
    );
    assert_eq!(runs[0].deployment_id, first.deployment_id);
    assert_eq!(runs[0].actor, support::ACTOR);
    // The working directory is the unpacked bundle, copyAssets included.
    assert_eq!(ctx.working_directory, p.read_out("deploy.pwd").trim());
    let files = p.out_lines("deploy.files");
    for expected in ["./observe.sh", "./sql/0001_init.sql", "./seed.json"] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} in {files:?}"
        );
    }
    let env = parse_env_dump(&p.read_out("deploy.env"));
    assert_eq!(env["LUMO_ENVIRONMENT"], "dev");
    assert_eq!(env["LUMO_TASK"], "observe");
    assert_eq!(env["LUMO_RUN_ID"], ctx.run_id);
    assert_eq!(env["LUMO_TRIGGER"], "deploy");
    assert_eq!(env["LUMO_VERSION"], "v1");
    assert_eq!(env["LUMO_PREVIOUS_VERSION"], "");
    assert_eq!(env["LUMO_IS_FIRST_DEPLOY"], "true");
    assert_eq!(env["CUSTOM_VAR"], "custom value");
    assert!(env.contains_key("LUMO_RESULT_FILE") && env.contains_key("LUMO_CONTEXT_FILE"));

    let second = p.deploy(&["--deploy-version", "v2"], 0);
    assert!(!second.is_first_deploy);
    assert_eq!(second.previous_version.as_deref(), Some("v1"));
    let ctx = context(&p, "update");
    assert!(!ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.previous_version.as_deref(), Some("v1"));
    assert_eq!(ctx.deployment.version, "v2");
    assert_eq!(ctx.trigger, Trigger::Update);
    let env = parse_env_dump(&p.read_out("update.env"));
    assert_eq!(env["LUMO_PREVIOUS_VERSION"], "v1");
    assert_eq!(env["LUMO_IS_FIRST_DEPLOY"], "false");
    assert_eq!(env["LUMO_TRIGGER"], "update");

    let runs = p.history();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[1].trigger, runs[1].version.as_str()),
        (Trigger::Update, "v2")
    );
    assert_eq!(runs[1].previous_version.as_deref(), Some("v1"));
    assert_eq!(ctx.run_id, runs[1].id);
    let status = p.status();
    assert_eq!(status.state.version.as_deref(), Some("v2"));
    assert_eq!(status.state.previous_version.as_deref(), Some("v1"));
    // The run directory is removed once the run ends.
    let work = p.lumo_dir().join("work");
    assert_eq!(
        fs::read_dir(&work).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing left in {}",
        work.display()
    );
}

#[test]
fn run_on_deploy_update_both_change_and_manual() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'run-on',
          tasks: {
            'first-only': { runOn: ['deploy'] },
            'updates-only': { runOn: ['update'] },
            both: {},
            'on-change': { runOn: ['change'], copyAssets: [{ from: 'asset.txt' }] },
            manual: { runOn: [] },
          },
        };"#,
    )
    .write("asset.txt", "one");
    for name in ["first-only", "updates-only", "both", "on-change", "manual"] {
        p.task(name, RECORDER);
    }

    let first = p.deploy(&["--deploy-version", "v1"], 0);
    assert_eq!(
        first.with_status(RunStatus::Succeeded),
        ["first-only", "both", "on-change"]
    );
    assert_eq!(
        first.with_status(RunStatus::NotRun),
        ["updates-only", "manual"]
    );
    assert!(
        first.task("manual").reason.contains("manual only"),
        "{:?}",
        first.task("manual")
    );

    let second = p.deploy(&["--deploy-version", "v2"], 0);
    assert_eq!(
        second.with_status(RunStatus::Succeeded),
        ["updates-only", "both"]
    );
    assert_eq!(
        second.with_status(RunStatus::NotRun),
        ["first-only", "on-change", "manual"]
    );
    assert!(
        second.task("on-change").reason.contains("unchanged"),
        "{:?}",
        second.task("on-change")
    );

    p.write("asset.txt", "two");
    let third = p.deploy(&["--deploy-version", "v3"], 0);
    assert_eq!(
        third.with_status(RunStatus::Succeeded),
        ["updates-only", "both", "on-change"]
    );
    assert!(
        third.task("on-change").reason.contains("changed"),
        "{:?}",
        third.task("on-change")
    );

    let fourth = p.deploy(&["--deploy-version", "v4"], 0);
    assert_eq!(
        fourth.with_status(RunStatus::Succeeded),
        ["updates-only", "both"]
    );

    assert_eq!(p.out_lines("first-only.log"), ["deploy"]);
    assert_eq!(
        p.out_lines("updates-only.log"),
        ["update", "update", "update"]
    );
    assert_eq!(
        p.out_lines("both.log"),
        ["deploy", "update", "update", "update"]
    );
    assert_eq!(p.out_lines("on-change.log"), ["deploy", "update"]);
    assert!(
        !p.has_out("manual.log"),
        "a manual-only task never runs in a deploy"
    );

    p.lumo(&["run", "manual", "--env", "dev"]).code(0);
    assert_eq!(p.out_lines("manual.log"), ["manual"]);
}

#[test]
fn depends_on_first_then_declaration_order() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'order',
          tasks: {
            'deploy-app': { dependsOn: ['migrate', 'build-assets'] },
            notify: {},
            migrate: { dependsOn: ['backup'] },
            'build-assets': {},
            backup: {},
          },
        };"#,
    );
    for name in ["deploy-app", "notify", "migrate", "build-assets", "backup"] {
        p.task(name, r#"echo "$LUMO_TASK" >> "@OUT@/order.log""#);
    }
    let report = p.deploy(&[], 0);
    let expected = ["notify", "build-assets", "backup", "migrate", "deploy-app"];
    assert_eq!(p.out_lines("order.log"), expected);
    let reported: Vec<&str> = report.tasks.iter().map(|t| t.task.as_str()).collect();
    assert_eq!(reported, expected, "the report lists tasks in run order");
    // The history agrees: run ids are time-ordered.
    let ran: Vec<String> = p.history().into_iter().map(|r| r.task).collect();
    assert_eq!(ran, expected);
}

#[test]
fn failed_task_stops_the_deploy_skips_the_rest_and_keeps_the_version() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'failing',
          tasks: { prepare: {}, migrate: {}, 'warm-cache': {}, notify: { dependsOn: ['warm-cache'] } },
        };"#,
    );
    for name in ["prepare", "warm-cache", "notify"] {
        p.task(name, RECORDER);
    }
    p.task("migrate", RECORDER);
    p.deploy(&["--deploy-version", "v1"], 0);

    p.task(
        "migrate",
        "echo 'applying 0003'\necho 'relation users already exists' >&2\nexit 3",
    );
    let failed = p.deploy(&["--deploy-version", "v2"], 1);
    assert_eq!(failed.status, Some(DeploymentStatus::Failed));
    assert_eq!(failed.task("prepare").status, RunStatus::Succeeded);
    assert_eq!(failed.task("migrate").status, RunStatus::Failed);
    let message = failed.task("migrate").message.clone().unwrap_or_default();
    assert!(
        message.contains("exit code 3") && message.contains("relation users already exists"),
        "{message}"
    );
    assert_eq!(failed.task("warm-cache").status, RunStatus::Skipped);
    assert_eq!(failed.task("notify").status, RunStatus::Skipped);
    assert_eq!(
        p.out_lines("warm-cache.log"),
        ["deploy"],
        "a skipped task does not run"
    );

    let update_runs: Vec<TaskRun> = p
        .history()
        .into_iter()
        .filter(|r| r.version == "v2")
        .collect();
    let statuses: Vec<(&str, RunStatus)> = update_runs
        .iter()
        .map(|r| (r.task.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("prepare", RunStatus::Succeeded),
            ("migrate", RunStatus::Failed),
            ("warm-cache", RunStatus::Skipped),
            ("notify", RunStatus::Skipped)
        ]
    );
    let migrate = update_runs.iter().find(|r| r.task == "migrate").unwrap();
    assert_eq!(migrate.exit_code, Some(3));
    let skipped = update_runs.iter().find(|r| r.task == "warm-cache").unwrap();
    assert!(
        skipped.message.as_deref().unwrap_or("").contains("migrate"),
        "{skipped:?}"
    );

    let status = p.status();
    assert_eq!(
        status.state.version.as_deref(),
        Some("v1"),
        "a failed deploy does not move the version"
    );
    let last = status.last_deployment.unwrap();
    assert_eq!(
        (last.version.as_str(), last.status),
        ("v2", DeploymentStatus::Failed)
    );
    assert!(last.message.unwrap_or_default().contains("migrate"));

    // The next deploy needs no clean-up: it is an update from v1, and everything runs.
    p.task("migrate", RECORDER);
    let fixed = p.deploy(&["--deploy-version", "v3"], 0);
    assert_eq!(fixed.previous_version.as_deref(), Some("v1"));
    assert!(!fixed.is_first_deploy);
    assert_eq!(
        fixed.with_status(RunStatus::Succeeded),
        ["prepare", "migrate", "warm-cache", "notify"]
    );
    assert_eq!(p.status().state.version.as_deref(), Some("v3"));
}

#[test]
fn failed_first_deploy_leaves_the_environment_never_deployed() {
    let p = TestProject::new();
    p.config("export default { projectName: 'first-fail', tasks: { setup: {}, after: {} } };");
    p.task("setup", "exit 1").task("after", RECORDER);
    let failed = p.deploy(&["--deploy-version", "v1"], 1);
    assert!(failed.is_first_deploy);
    assert_eq!(failed.task("after").status, RunStatus::Skipped);
    assert_eq!(p.status().state.version, None);

    p.task("setup", RECORDER);
    let retried = p.deploy(&["--deploy-version", "v2"], 0);
    assert!(retried.is_first_deploy, "still the first successful deploy");
    assert_eq!(retried.previous_version, None);
    assert_eq!(p.out_lines("after.log"), ["deploy"]);
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

#[test]
fn output_keeps_stdout_and_stderr_in_order_and_the_message_is_the_last_line() {
    let p = TestProject::new();
    p.config("export default { projectName: 'order-out', tasks: { talk: {}, silent: {} } };");
    p.task("talk", "echo out-1\necho err-1 >&2\necho out-2\necho err-2 >&2\necho\necho 'the last word'\necho '   '")
        .task("silent", "true");
    let report = p.deploy(&[], 0);
    assert_eq!(
        report.task("talk").message.as_deref(),
        Some("the last word")
    );
    let logs = p.logs(report.task("talk").run_id.as_deref().unwrap());
    assert_eq!(
        logs.output.as_deref(),
        Some("out-1\nerr-1\nout-2\nerr-2\n\nthe last word\n   \n")
    );
    assert_eq!(logs.run.output_bytes, 43);
    assert_eq!(report.task("silent").status, RunStatus::Succeeded);

    p.task("silent", "exit 7");
    let report = p.deploy(&[], 1);
    assert_eq!(report.task("talk").status, RunStatus::Succeeded);
    assert_eq!(
        report.task("silent").message.as_deref(),
        Some("exit code 7")
    );
}

#[test]
fn retries_record_every_attempt() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'retries', tasks: { flaky: { retries: 2 }, once: {} } };",
    );
    // Fails on its first attempt only.
    p.task(
        "flaky",
        "echo attempt >> \"@OUT@/attempts\"\n[ \"$(wc -l < \"@OUT@/attempts\")\" -ge 2 ]",
    )
    .task("once", "echo x >> \"@OUT@/once\"\nexit 1");
    let report = p.deploy(&[], 1);
    assert_eq!(report.task("flaky").status, RunStatus::Succeeded);
    assert_eq!(report.task("once").status, RunStatus::Failed);
    let runs = p.history();
    let attempts: Vec<(&str, u32, RunStatus)> = runs
        .iter()
        .map(|r| (r.task.as_str(), r.attempt, r.status))
        .collect();
    assert_eq!(
        attempts,
        [
            ("flaky", 1, RunStatus::Failed),
            ("flaky", 2, RunStatus::Succeeded),
            ("once", 1, RunStatus::Failed)
        ],
        "every attempt recorded; no retry unless asked"
    );
    assert_eq!(p.out_lines("once").len(), 1);
}

#[test]
fn environments_are_independent_and_a_task_exists_only_where_it_is_declared() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'envs',
          environment: 'dev',
          environments: ['dev', 'prod'],
          tasks: { migrate: {}, 'prod-only': { environments: ['prod'] } },
        };"#,
    );
    p.task(
        "migrate",
        r#"echo "$LUMO_ENVIRONMENT" >> "@OUT@/migrate.log""#,
    )
    .task(
        "prod-only",
        r#"echo "$LUMO_ENVIRONMENT" >> "@OUT@/prod-only.log""#,
    );
    // No `--env`: the config's `environment`.
    let dev: support::DeployReport = p
        .lumo(&["deploy", "--json", "--deploy-version", "d1"])
        .code(0)
        .json();
    assert_eq!(dev.env, "dev");
    assert!(
        dev.tasks.iter().all(|t| t.task != "prod-only"),
        "{:?}",
        dev.tasks
    );
    let prod: support::DeployReport = p
        .lumo(&[
            "deploy",
            "--env",
            "prod",
            "--json",
            "--deploy-version",
            "p1",
        ])
        .code(0)
        .json();
    assert!(
        prod.is_first_deploy,
        "prod's first deploy, whatever dev has"
    );
    assert_eq!(
        prod.with_status(RunStatus::Succeeded),
        ["migrate", "prod-only"]
    );
    assert_eq!(p.out_lines("migrate.log"), ["dev", "prod"]);
    assert_eq!(p.out_lines("prod-only.log"), ["prod"]);
    assert_eq!(p.status().state.version.as_deref(), Some("d1"));
    let prod_status: Status = p
        .lumo(&["status", "--env", "prod", "--json"])
        .code(0)
        .json();
    assert_eq!(prod_status.state.version.as_deref(), Some("p1"));

    p.lumo(&["run", "prod-only", "--env", "dev"])
        .code(2)
        .stderr_has(&["does not exist in environment `dev`"]);
    let tasks: TaskList = p.lumo(&["tasks", "--env", "dev", "--json"]).code(0).json();
    assert_eq!(
        tasks
            .tasks
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["migrate"]
    );
}

#[test]
fn garbage_in_the_result_file_fails_the_run_saying_so() {
    let p = TestProject::new();
    p.config("export default { projectName: 'garbage', tasks: { bad: {} } };");
    p.task(
        "bad",
        r#"echo working; printf '{"success": tru' > "$LUMO_RESULT_FILE""#,
    );
    let report = p.deploy(&[], 1);
    let bad = report.task("bad");
    assert_eq!(bad.status, RunStatus::Failed);
    let message = bad.message.clone().unwrap_or_default();
    assert!(
        message.contains("result file is not a valid TaskResult"),
        "{message}"
    );
    let run = &p.history()[0];
    assert_eq!((run.status, run.exit_code), (RunStatus::Failed, Some(0)));
    assert_eq!(run.message.as_deref(), Some(message.as_str()));
}

#[test]
fn result_success_false_with_exit_code_0_fails() {
    let p = TestProject::new();
    p.config("export default { projectName: 'soft-fail', tasks: { check: {} } };");
    p.task(
        "check",
        r#"printf '{"success": false, "message": "schema drift detected"}' > "$LUMO_RESULT_FILE""#,
    );
    let report = p.deploy(&[], 1);
    assert_eq!(report.status, Some(DeploymentStatus::Failed));
    let check = report.task("check");
    assert_eq!(check.status, RunStatus::Failed);
    assert_eq!(check.message.as_deref(), Some("schema drift detected"));
    assert_eq!(p.history()[0].exit_code, Some(0));
    assert_eq!(p.status().state.version, None);
}

#[test]
fn result_data_appears_in_deploy_history_logs_status_and_run_json() {
    let p = TestProject::new();
    p.config("export default { projectName: 'data', tasks: { migrate: {} } };");
    p.task(
        "migrate",
        r#"printf '{"success": true, "message": "applied 2", "data": {"applied": 2, "tables": ["users", "orders"], "trigger": "%s"}}' "$LUMO_TRIGGER" > "$LUMO_RESULT_FILE""#,
    );
    let data =
        |trigger: &str| json!({ "applied": 2, "tables": ["users", "orders"], "trigger": trigger });

    let report = p.deploy(&[], 0);
    let line = report.task("migrate");
    assert_eq!(line.message.as_deref(), Some("applied 2"));
    assert_eq!(line.data, Some(data("deploy")));
    let run_id = line.run_id.clone().unwrap();
    assert_eq!(p.history()[0].data, Some(data("deploy")));
    assert_eq!(p.logs(&run_id).run.data, Some(data("deploy")));
    assert_eq!(p.status().last_runs[0].data, Some(data("deploy")));

    let manual: TaskRun = p
        .lumo(&["run", "migrate", "--env", "dev", "--json"])
        .code(0)
        .json();
    assert_eq!(manual.trigger, Trigger::Manual);
    assert_eq!(manual.data, Some(data("manual")));
    let text = p.lumo(&["history", "--env", "dev"]).code(0).stdout.clone();
    assert!(text.contains("applied 2"), "{text}");
}

#[test]
fn megabytes_of_output_are_stored_in_full_and_the_tail_is_kept() {
    const LINE: &str = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0";
    assert_eq!(LINE.len(), 99);
    let p = TestProject::new();
    p.config("export default { projectName: 'chatty', tasks: { chatty: {} } };");
    // 50,000 lines of 100 bytes, then the last line: 5,000,008 bytes.
    p.task(
        "chatty",
        &format!("yes '{LINE}' | head -n 50000\necho 'THE END'"),
    );
    let expected_bytes = 50_000 * 100 + "THE END\n".len();

    let deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    let report: support::DeployReport = deploy.json();
    let line = report.task("chatty");
    assert_eq!(line.status, RunStatus::Succeeded);
    assert_eq!(line.message.as_deref(), Some("THE END"));
    // Streamed to the terminal as it ran, line by line.
    assert!(
        deploy.stderr.matches(LINE).count() >= 50_000,
        "every line streamed to stderr"
    );

    let run_id = line.run_id.clone().unwrap();
    let logs = p.lumo(&["logs", &run_id]).code(0).clone();
    assert_eq!(
        logs.stdout_bytes, expected_bytes,
        "`lumo logs` prints the whole output"
    );
    assert!(logs.stdout.ends_with(&format!("{LINE}\nTHE END\n")));

    let run = &p.history()[0];
    assert_eq!(run.output_bytes, expected_bytes as u64);
    let tail = run.output_tail.clone().unwrap_or_default();
    assert!(
        !tail.is_empty() && tail.len() <= 4096,
        "tail of {} bytes",
        tail.len()
    );
    assert!(tail.ends_with(&format!("{LINE}\nTHE END\n")), "{tail}");
    let logs_json: Logs = p.logs(&run_id);
    assert!(logs_json.complete);
    assert_eq!(logs_json.output.map(|o| o.len()), Some(expected_bytes));
}

#[test]
fn secrets_are_masked_in_every_output_and_never_stored() {
    const SECRET: &str = "tok-5ecr3t-Zq9Xw7";
    let mut p = TestProject::new();
    p.set_env("E2E_API_TOKEN", SECRET);
    p.config(
        r#"export default {
          projectName: 'secrets',
          secrets: {
            apiToken: { value: () => process.env.E2E_API_TOKEN, description: 'token for the cache API' },
          },
          tasks: { leak: {} },
        };"#,
    );
    // The script never holds the secret itself (it is bundled into `.lumo/`): it reads it from
    // the environment and prints it whole, in two writes split mid-value, on stderr, and in
    // its result's message and data.
    p.task(
        "leak",
        r#"echo "plain: $API_TOKEN"
first=$(printf '%s' "$API_TOKEN" | cut -c1-8)
rest=$(printf '%s' "$API_TOKEN" | cut -c9-)
printf 'split: %s' "$first"
sleep 0.3
printf '%s end\n' "$rest"
echo "on stderr: $API_TOKEN" >&2
printf '{"success": true, "message": "used %s", "data": {"token": "%s", "nested": {"list": ["x%sy"]}}}' "$API_TOKEN" "$API_TOKEN" "$API_TOKEN" > "$LUMO_RESULT_FILE""#,
    );

    let text = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    let json_deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    // The most talkative lumo there is: `--verbose` notes and every trace event.
    let verbose = p
        .lumo_with_env(
            &["deploy", "--env", "dev", "--verbose"],
            &[("LUMO_LOG", "trace")],
        )
        .code(0)
        .clone();
    for shown in [
        &text.stdout,
        &text.stderr,
        &json_deploy.stdout,
        &json_deploy.stderr,
        &verbose.stdout,
        &verbose.stderr,
    ] {
        assert!(!shown.contains(SECRET), "secret shown:\n{shown}");
    }
    text.stderr_has(&["plain: ***", "split: *** end", "on stderr: ***"]);
    let report: support::DeployReport = json_deploy.json();
    let leak = report.task("leak");
    assert_eq!(leak.message.as_deref(), Some("used ***"));
    assert_eq!(
        leak.data,
        Some(json!({ "token": "***", "nested": { "list": ["x***y"] } }))
    );

    let runs = p.history();
    assert_eq!(runs.len(), 3);
    for run in &runs {
        assert_eq!(run.message.as_deref(), Some("used ***"));
        let logs = p.lumo(&["logs", &run.id]).code(0).clone();
        assert!(
            logs.stdout.contains("split: *** end") && logs.stdout.contains("on stderr: ***"),
            "{}",
            logs.stdout
        );
        let logs_json = p.lumo(&["logs", &run.id, "--json"]).code(0).clone();
        for shown in [&logs.stdout, &logs.stderr, &logs_json.stdout] {
            assert!(!shown.contains(SECRET), "secret in logs:\n{shown}");
        }
    }
    for args in [
        &["history", "--env", "dev", "--json"][..],
        &["status", "--env", "dev", "--json"],
        &["status", "--env", "dev"],
        &["history", "--env", "dev"],
    ] {
        let out = p.lumo(args).code(0).clone();
        assert!(
            !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
            "secret in `lumo {}`",
            args.join(" ")
        );
    }
    let manual = p
        .lumo(&["run", "leak", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert!(!manual.stdout.contains(SECRET) && !manual.stderr.contains(SECRET));

    let stored = TestProject::files_containing(&p.lumo_dir(), SECRET);
    assert!(stored.is_empty(), "the secret is stored in {stored:?}");
    assert!(
        p.lumo_dir().join("lumo.db").is_file(),
        "the grep covered the database"
    );
}

// ---------------------------------------------------------------------------------------------
// Manual runs (`lumo run`)
// ---------------------------------------------------------------------------------------------

const MANUAL_CONFIG: &str = r#"export default {
  projectName: 'manual',
  tasks: {
    purge: {
      runOn: [],
      args: {
        target: { description: 'the cache namespace', required: true },
        mode: { description: 'soft or hard', default: 'soft' },
      },
    },
    drop: { runOn: [], confirm: 'This drops the whole cache' },
  },
};"#;

fn manual_project() -> TestProject {
    let p = TestProject::new();
    p.config(MANUAL_CONFIG)
        .task(
            "purge",
            r#"env | grep '^LUMO_ARG_' | sort > "@OUT@/purge.env"
cat > "@OUT@/purge.stdin.json"
cp "$LUMO_CONTEXT_FILE" "@OUT@/purge.file.json"
echo "purged $LUMO_ARG_TARGET""#,
        )
        .task("drop", RECORDER);
    p
}

#[test]
fn manual_run_before_any_deploy_is_refused_with_a_hint() {
    let p = manual_project();
    let out = p
        .lumo(&["run", "purge", "--env", "dev", "--arg", "target=users"])
        .code(2)
        .clone();
    out.stderr_has(&["has no deployed bundle", "lumo deploy --env dev"]);
    let error = p
        .lumo(&[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=users",
            "--json",
        ])
        .code(2)
        .json_error();
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("lumo deploy --env dev")
    );
    assert!(!p.has_out("purge.env"));
}

#[test]
fn manual_run_checks_its_args_applies_defaults_and_passes_them() {
    let p = manual_project();
    let deployed = p.deploy(&["--deploy-version", "v1"], 0);
    assert_eq!(deployed.with_status(RunStatus::NotRun), ["purge", "drop"]);

    let missing = p.lumo(&["run", "purge", "--env", "dev"]).code(2).clone();
    missing.stderr_has(&["`target`", "the cache namespace", "--arg target="]);
    let unknown = p
        .lumo(&["run", "purge", "--env", "dev", "--arg", "targt=users"])
        .code(2)
        .clone();
    unknown.stderr_has(&["`--arg targt`", "did you mean `target`?"]);
    let malformed = p
        .lumo(&["run", "purge", "--env", "dev", "--arg", "target"])
        .code(2)
        .clone();
    malformed.stderr_has(&["NAME=VALUE"]);
    assert!(!p.has_out("purge.env"), "nothing ran");
    assert_eq!(p.history().len(), 0, "nothing recorded");

    let run: TaskRun = p
        .lumo(&[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=users",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(
        (run.status, run.trigger),
        (RunStatus::Succeeded, Trigger::Manual)
    );
    assert_eq!(run.message.as_deref(), Some("purged users"));
    assert_eq!(run.version, "v1");
    assert_eq!(run.deployment_id, None);
    let env = parse_env_dump(&p.read_out("purge.env"));
    assert_eq!(
        env.get("LUMO_ARG_TARGET").map(String::as_str),
        Some("users")
    );
    assert_eq!(
        env.get("LUMO_ARG_MODE").map(String::as_str),
        Some("soft"),
        "the default is applied"
    );
    let ctx: TaskContext = serde_json::from_str(&p.read_out("purge.stdin.json")).unwrap();
    let from_file: TaskContext = serde_json::from_str(&p.read_out("purge.file.json")).unwrap();
    assert_eq!(ctx, from_file);
    assert_eq!(ctx.trigger, Trigger::Manual);
    assert_eq!(ctx.run_id, run.id);
    assert_eq!(ctx.args.get("target").map(String::as_str), Some("users"));
    assert_eq!(ctx.args.get("mode").map(String::as_str), Some("soft"));
    assert!(!ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.version, "v1");

    p.lumo(&[
        "run",
        "purge",
        "--env",
        "dev",
        "--arg",
        "target=sessions",
        "--arg",
        "mode=hard",
    ])
    .code(0);
    let env = parse_env_dump(&p.read_out("purge.env"));
    assert_eq!(env["LUMO_ARG_TARGET"], "sessions");
    assert_eq!(env["LUMO_ARG_MODE"], "hard");

    let history = p.history();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|r| r.trigger == Trigger::Manual && r.task == "purge")
    );
}

#[test]
fn a_task_with_confirm_needs_yes_when_there_is_no_terminal() {
    let p = manual_project();
    p.deploy(&[], 0);
    let refused = p.lumo(&["run", "drop", "--env", "dev"]).code(2).clone();
    refused.stderr_has(&["This drops the whole cache", "--yes"]);
    assert!(!p.has_out("drop.log"));
    assert!(p.history().is_empty(), "a refused run is not recorded");

    p.lumo(&["run", "drop", "--env", "dev", "--yes"]).code(0);
    assert_eq!(p.out_lines("drop.log"), ["manual"]);
}

#[test]
fn a_failing_manual_run_exits_1_and_is_recorded() {
    let p = TestProject::new();
    p.config("export default { projectName: 'manual-fail', tasks: { repair: { runOn: [] } } };");
    p.task("repair", "echo 'cannot repair'; exit 5");
    p.deploy(&[], 0);
    let run: TaskRun = p
        .lumo(&["run", "repair", "--env", "dev", "--json"])
        .code(1)
        .json();
    assert_eq!((run.status, run.exit_code), (RunStatus::Failed, Some(5)));
    assert_eq!(p.history()[0].status, RunStatus::Failed);
}

// ---------------------------------------------------------------------------------------------
// Deploy flags: --dry-run, --only, --concurrency, --quiet
// ---------------------------------------------------------------------------------------------

#[test]
fn dry_run_says_why_each_task_runs_or_not_and_changes_nothing() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'dry',
          tasks: { migrate: {}, 'first-only': { runOn: ['deploy'] }, seed: { runOn: ['change'] }, purge: { runOn: [] } },
        };"#,
    );
    for name in ["migrate", "first-only", "seed", "purge"] {
        p.task(name, RECORDER);
    }

    let dry = p.deploy(&["--dry-run", "--deploy-version", "v1"], 0);
    assert!(dry.dry_run);
    assert_eq!((dry.status, dry.deployment_id.as_deref()), (None, None));
    assert!(dry.is_first_deploy);
    assert_eq!(
        dry.with_status(RunStatus::WouldRun),
        ["migrate", "first-only", "seed"]
    );
    assert_eq!(dry.with_status(RunStatus::NotRun), ["purge"]);
    assert!(
        dry.task("migrate").reason.contains("first deploy"),
        "{:?}",
        dry.task("migrate")
    );
    assert!(
        dry.task("seed").reason.contains("change"),
        "{:?}",
        dry.task("seed")
    );
    assert!(dry.task("purge").reason.contains("manual only"));
    let text = p
        .lumo(&["deploy", "--env", "dev", "--dry-run"])
        .code(0)
        .clone();
    assert!(
        text.stdout.contains("Dry run") && text.stdout.contains("manual only"),
        "{}",
        text.stdout
    );

    assert!(
        ["migrate", "first-only", "seed"]
            .iter()
            .all(|t| !p.has_out(&format!("{t}.log"))),
        "nothing ran"
    );
    // Regression: a dry run used to leave `.lumo/` behind (bundles and an empty store); so did
    // `status` and `history` on a project never deployed.
    let status = p.status();
    assert!(p.history().is_empty());
    assert!(!p.lumo_dir().exists(), "a dry run or a read wrote `.lumo/`");
    assert!(status.last_deployment.is_none(), "no deployment recorded");
    assert_eq!(status.state.version, None);
    assert!(p.history().is_empty());

    p.deploy(&["--deploy-version", "v1"], 0);
    let dry = p.deploy(&["--dry-run", "--deploy-version", "v2"], 0);
    assert!(!dry.is_first_deploy);
    assert_eq!(dry.previous_version.as_deref(), Some("v1"));
    assert_eq!(dry.with_status(RunStatus::WouldRun), ["migrate"]);
    assert!(
        dry.task("migrate").reason.contains("update from `v1`"),
        "{:?}",
        dry.task("migrate")
    );
    assert!(
        dry.task("first-only").reason.contains("update"),
        "{:?}",
        dry.task("first-only")
    );
    assert!(
        dry.task("seed").reason.contains("unchanged"),
        "{:?}",
        dry.task("seed")
    );
    let status = p.status();
    assert_eq!(status.state.version.as_deref(), Some("v1"));
    assert_eq!(
        status.last_deployment.map(|d| d.version),
        Some("v1".to_string())
    );
    assert_eq!(p.history().len(), 3);
}

#[test]
fn only_limits_the_deploy_and_an_unknown_name_gets_a_suggestion() {
    let p = TestProject::new();
    p.config("export default { projectName: 'only', tasks: { migrate: {}, 'warm-cache': {}, notify: {} } };");
    for name in ["migrate", "warm-cache", "notify"] {
        p.task(name, RECORDER);
    }
    let unknown = p
        .lumo(&["deploy", "--env", "dev", "--only", "warm-cach"])
        .code(2)
        .clone();
    unknown.stderr_has(&["warm-cach", "did you mean `warm-cache`?"]);
    assert!(!p.lumo_dir().exists(), "an invalid `--only` writes nothing");

    let report = p.deploy(&["--only", "warm-cache,notify"], 0);
    assert_eq!(
        report.with_status(RunStatus::Succeeded),
        ["warm-cache", "notify"]
    );
    assert_eq!(report.with_status(RunStatus::NotRun), ["migrate"]);
    assert!(
        report.task("migrate").reason.contains("--only"),
        "{:?}",
        report.task("migrate")
    );
    assert!(!p.has_out("migrate.log"));
    assert_eq!(p.out_lines("notify.log"), ["deploy"]);
}

#[test]
fn concurrency_runs_independent_tasks_side_by_side_and_respects_depends_on() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'parallel',
          tasks: { 'slow-a': {}, 'slow-b': {}, 'after-a': { dependsOn: ['slow-a'] } },
        };"#,
    );
    let body = r#"date +%s%N > "@OUT@/$LUMO_TASK.start"
sleep 0.7
date +%s%N > "@OUT@/$LUMO_TASK.end""#;
    for name in ["slow-a", "slow-b", "after-a"] {
        p.task(name, body);
    }
    p.deploy(&["--concurrency", "2"], 0);
    let time = |task: &str, edge: &str| -> u128 {
        p.read_out(&format!("{task}.{edge}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (a, b, after) = (
        (time("slow-a", "start"), time("slow-a", "end")),
        (time("slow-b", "start"), time("slow-b", "end")),
        time("after-a", "start"),
    );
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "slow-a {a:?} and slow-b {b:?} overlap"
    );
    assert!(
        after >= a.1,
        "after-a started at {after}, before slow-a ended at {}",
        a.1
    );

    let runs = p.history();
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
}

#[test]
fn quiet_hides_task_output_and_progress() {
    let p = TestProject::new();
    p.config("export default { projectName: 'quiet', tasks: { hello: {} } };");
    p.task("hello", "echo 'hello-marker-line'");
    let loud = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    loud.stderr_has(&["hello-marker-line"]);
    let quiet = p
        .lumo(&["deploy", "--env", "dev", "--quiet"])
        .code(0)
        .clone();
    assert!(
        !quiet.stderr.contains("hello-marker-line"),
        "{}",
        quiet.show()
    );
    assert!(
        quiet.stderr.trim().is_empty(),
        "nothing but errors on stderr with --quiet:\n{}",
        quiet.stderr
    );
    assert!(
        quiet.stdout.contains("succeeded"),
        "the result is still printed"
    );
    // The output is still recorded.
    let run = &p.history()[1];
    let logs = p.lumo(&["logs", &run.id]).code(0).clone();
    assert_eq!(logs.stdout, "hello-marker-line\n");
}

// ---------------------------------------------------------------------------------------------
// CLI: one JSON document, exit codes
// ---------------------------------------------------------------------------------------------

#[test]
fn json_is_exactly_one_document_on_stdout_for_every_command() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'json',
          environments: ['dev', 'prod'],
          tasks: { migrate: { description: 'migrates' }, purge: { runOn: [], args: { target: { required: true } } } },
        };"#,
    );
    p.task("migrate", "echo migrating")
        .task("purge", "echo purging");

    let deploy: support::DeployReport =
        p.lumo(&["deploy", "--env", "dev", "--json"]).code(0).json();
    assert_eq!(
        (
            deploy.project.as_str(),
            deploy.env.as_str(),
            deploy.provider.as_str()
        ),
        ("json", "dev", "local")
    );
    let run_id = deploy.task("migrate").run_id.clone().unwrap();

    let run: TaskRun = p
        .lumo(&[
            "run", "purge", "--env", "dev", "--arg", "target=x", "--json",
        ])
        .code(0)
        .json();
    assert_eq!(run.task, "purge");
    let history: support::History = p
        .lumo(&["history", "--env", "dev", "--json"])
        .code(0)
        .json();
    assert_eq!(history.runs.len(), 2);
    let only_purge: support::History = p
        .lumo(&["history", "--env", "dev", "--task", "purge", "--json"])
        .code(0)
        .json();
    assert_eq!(only_purge.runs.len(), 1);
    let logs: Logs = p.lumo(&["logs", &run_id, "--json"]).code(0).json();
    assert_eq!(logs.output.as_deref(), Some("migrating\n"));
    let status: Status = p.lumo(&["status", "--env", "dev", "--json"]).code(0).json();
    assert_eq!(status.state.deployment_id, deploy.deployment_id);
    let tasks: TaskList = p.lumo(&["tasks", "--json"]).code(0).json();
    let names: Vec<&str> = tasks.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["migrate", "purge"]);
    assert_eq!(tasks.tasks[1].run_on, Vec::<String>::new());
    assert_eq!(tasks.tasks[1].args, ["target"]);
    let build: BuildReport = p.lumo(&["build", "--json"]).code(0).json();
    assert_eq!(build.bundles.len(), 2);
    let empty = p.tmp().join("empty");
    fs::create_dir(&empty).unwrap();
    let init: InitReport = p.lumo_in(&empty, &["init", "--json"]).code(0).json();
    assert!(!init.created.is_empty());

    // Errors are one JSON document too, with the exit code in it.
    for (args, code, kind) in [
        (&["deploy", "--env", "staging", "--json"][..], 2, "invalid"),
        (&["run", "nope", "--env", "dev", "--json"], 2, "invalid"),
        (&["run", "purge", "--env", "dev", "--json"], 2, "invalid"),
        (&["logs", "not-a-run-id", "--json"], 2, "invalid"),
        (
            &["logs", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--json"],
            2,
            "invalid",
        ),
        (
            &["history", "--env", "dev", "--task", "nope", "--json"],
            2,
            "invalid",
        ),
    ] {
        let error = p.lumo(args).code(code).json_error();
        assert_eq!(error.kind, kind, "`lumo {}`", args.join(" "));
        assert!(!error.message.is_empty());
    }
    let init_again = p.lumo_in(&empty, &["init", "--json"]).code(2).json_error();
    assert!(init_again.message.contains("already exists"));
    // A failed task is a result, not an error: the deploy report, exit code 1.
    p.task("migrate", "exit 1");
    let failed: support::DeployReport =
        p.lumo(&["deploy", "--env", "dev", "--json"]).code(1).json();
    assert_eq!(failed.status, Some(DeploymentStatus::Failed));
}

/// Regression: a usage error (bad flag value, missing argument) with `--json` left stdout empty
/// instead of printing the error document.
#[test]
fn usage_errors_with_json_still_print_one_error_document() {
    let p = TestProject::new();
    p.config("export default { projectName: 'usage', tasks: { hello: {} } };");
    p.task("hello", RECORDER);
    for (args, fragment) in [
        (
            &["deploy", "--env", "dev", "--json", "--concurrency", "0"][..],
            "--concurrency",
        ),
        (&["deploy", "--json", "--no-such-flag"], "--no-such-flag"),
        (&["run", "--json"], "<TASK>"),
        (&["--json", "frobnicate"], "frobnicate"),
    ] {
        let out = p.lumo(args).code(2).clone();
        let error = out.json_error();
        assert_eq!(error.kind, "invalid");
        assert!(error.message.contains(fragment), "{error:?}");
        assert!(
            out.stderr.contains("error:"),
            "the usage error is still shown on stderr"
        );
    }
    let plain = p.lumo(&["deploy", "--concurrency", "0"]).code(2).clone();
    assert!(plain.stdout.is_empty(), "without --json stdout stays empty");
    assert!(!p.lumo_dir().exists() && !p.has_out("hello.log"));
}

#[test]
fn a_broken_local_store_exits_4() {
    let p = TestProject::new();
    p.config("export default { projectName: 'broken', tasks: { hello: {} } };");
    p.task("hello", RECORDER);
    p.deploy(&[], 0);
    let db = p.lumo_dir().join("lumo.db");
    let clear = || {
        for suffix in ["", "-wal", "-shm"] {
            let path = PathBuf::from(format!("{}{suffix}", db.display()));
            if path.is_dir() {
                fs::remove_dir_all(&path).unwrap();
            } else if path.exists() {
                fs::remove_file(&path).unwrap();
            }
        }
    };

    clear();
    fs::create_dir(&db).unwrap();
    for args in [
        &["status", "--env", "dev"][..],
        &["history", "--env", "dev"],
        &["deploy", "--env", "dev"],
    ] {
        p.lumo(args).code(4).stderr_has(&["lumo.db"]);
    }
    let error = p
        .lumo(&["status", "--env", "dev", "--json"])
        .code(4)
        .json_error();
    assert_eq!(error.kind, "backend");
    assert_eq!(
        p.out_lines("hello.log"),
        ["deploy"],
        "no task ran without a store to record it"
    );

    clear();
    fs::write(
        &db,
        "this is not an SQLite database, just some garbage bytes\n".repeat(100),
    )
    .unwrap();
    for args in [
        &["status", "--env", "dev"][..],
        &["history", "--env", "dev"],
        &["deploy", "--env", "dev"],
    ] {
        p.lumo(args).code(4).stderr_has(&["lumo.db"]);
    }
    assert_eq!(p.out_lines("hello.log"), ["deploy"]);
}

// ---------------------------------------------------------------------------------------------
// Config errors (PRODUCT.md §3, §8): exit 2, the file and key path named, nothing written
// ---------------------------------------------------------------------------------------------

/// A minimal valid task file for the config-error projects.
fn with_task(p: &TestProject, name: &str) {
    p.task(name, "echo ok");
}

/// `lumo deploy --env dev` (then with `--json`) fails with exit 2, names the config file and
/// every fragment, and leaves no `.lumo/` behind.
#[track_caller]
fn assert_invalid(p: &TestProject, fragments: &[&str]) {
    assert_invalid_with(
        p,
        &["deploy", "--env", "dev"],
        &p.root().join("lumo.config.js"),
        fragments,
    );
}

#[track_caller]
fn assert_invalid_with(p: &TestProject, args: &[&str], config: &Path, fragments: &[&str]) {
    let shown_path = fs::canonicalize(config.parent().unwrap())
        .unwrap()
        .join(config.file_name().unwrap());
    let shown_path = shown_path.display().to_string();
    let text = p.lumo(args).code(2).clone();
    assert!(text.stdout.is_empty(), "nothing on stdout: {}", text.show());
    text.stderr_has(&["error:", &shown_path])
        .stderr_has(fragments);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = p.lumo(&json_args).code(2).clone();
    let error = json.json_error();
    assert_eq!(error.kind, "invalid");
    let whole = format!(
        "{}\n{}\n{}",
        error.message,
        error.causes.join("\n"),
        error.hint.clone().unwrap_or_default()
    );
    for fragment in fragments.iter().chain([&shown_path.as_str()]) {
        assert!(
            whole.contains(fragment),
            "the JSON error should contain {fragment:?}: {whole}"
        );
    }
    assert!(
        !p.lumo_dir().exists(),
        "`.lumo/` was created: {:?}",
        fs::read_dir(p.lumo_dir()).map(|d| d.count())
    );
    assert!(
        fs::read_dir(p.out()).unwrap().next().is_none(),
        "a task ran"
    );
}

#[test]
fn config_missing() {
    let p = TestProject::new();
    with_task(&p, "a");
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    out.stderr_has(&["lumo.config.js", "lumo init", "--config PATH"]);
    assert!(!p.lumo_dir().exists());
    let error = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(2)
        .json_error();
    assert!(error.message.contains("lumo.config.js"), "{error:?}");

    let elsewhere = p.root().join("config/lumo.prod.js");
    let out = p
        .lumo(&[
            "deploy",
            "--env",
            "dev",
            "--config",
            elsewhere.to_str().unwrap(),
        ])
        .code(2)
        .clone();
    out.stderr_has(&["config/lumo.prod.js", "does not exist"]);
    assert!(!p.lumo_dir().exists());
}

/// Regression: a missing config printed its `hint:` twice (once inside the message, once as the
/// error's hint).
#[test]
fn config_missing_prints_its_hint_once() {
    let p = TestProject::new();
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    assert_eq!(out.stderr.matches("lumo init").count(), 1, "{}", out.stderr);
    let error = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(2)
        .json_error();
    let all = format!("{} {}", error.message, error.hint.unwrap_or_default());
    assert_eq!(all.matches("lumo init").count(), 1, "{all}");
}

#[test]
fn config_syntax_error_has_line_and_column() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default {\n  projectName: 'p',\n  tasks: { a: {} }\n  oops\n};\n");
    assert_invalid(&p, &["lumo.config.js:4:3", "SyntaxError"]);
}

#[test]
fn config_that_throws() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("const url = process.env.DATABASE_URL;\nif (!url) { throw new Error('DATABASE_URL is not set'); }\nexport default { projectName: 'p' };\n");
    assert_invalid(&p, &["lumo.config.js:2:", "DATABASE_URL is not set"]);
}

#[test]
fn config_wrong_type() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', tasks: { a: { timeout: '30' } } };");
    assert_invalid(&p, &["`tasks.a.timeout`", "from 1 to 900", "\"30\""]);
}

#[test]
fn config_timeout_out_of_range() {
    for (timeout, shown) in [("0", "got 0"), ("901", "got 901")] {
        let p = TestProject::new();
        with_task(&p, "a");
        p.config(&format!(
            "export default {{ projectName: 'p', tasks: {{ a: {{ timeout: {timeout} }} }} }};"
        ));
        assert_invalid(&p, &["`tasks.a.timeout`", "from 1 to 900", shown]);
    }
}

#[test]
fn config_unknown_task_key_gets_a_suggestion() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', tasks: { a: { timout: 30 } } };");
    assert_invalid(&p, &["`tasks.a.timout`", "did you mean `timeout`?"]);
}

#[test]
fn config_task_without_file_or_command() {
    let p = TestProject::new();
    with_task(&p, "migrate");
    p.config("export default { projectName: 'p', tasks: { migrat: { timeout: 30 } } };");
    assert_invalid(
        &p,
        &[
            "`tasks.migrat`",
            "no task file",
            "no `command`",
            "did you mean `migrate`?",
        ],
    );
}

#[test]
fn config_copy_assets_from_missing() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'migrations' }] } } };");
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[0].from`",
            "`migrations` does not exist",
        ],
    );
}

#[test]
fn config_copy_assets_escaping_the_project() {
    for (from, fragment) in [
        ("../out", "without `..`"),
        ("/etc/hostname", "not absolute"),
        ("outside", "outside the project root"),
    ] {
        let p = TestProject::new();
        with_task(&p, "a");
        std::os::unix::fs::symlink(p.out(), p.root().join("outside")).unwrap();
        p.config(&format!("export default {{ projectName: 'p', tasks: {{ a: {{ copyAssets: [{{ from: '{from}', to: 'x' }}] }} }} }};"));
        assert_invalid(&p, &["`tasks.a.copyAssets[0].from`", fragment]);
    }
    // A symlink inside a copied directory is followed, and may not lead out either.
    let p = TestProject::new();
    with_task(&p, "a");
    fs::create_dir(p.root().join("assets")).unwrap();
    fs::write(p.tmp().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(p.tmp().join("secret.txt"), p.root().join("assets/link.txt"))
        .unwrap();
    p.config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'assets' }] } } };",
    );
    assert_invalid(
        &p,
        &["`tasks.a.copyAssets[0].from`", "outside the project root"],
    );
    // And `to` may not leave the bundle.
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("data.txt", "x");
    p.config("export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'data.txt', to: '../data.txt' }] } } };");
    assert_invalid(&p, &["`tasks.a.copyAssets[0].to`", "without `..`"]);
}

#[test]
fn config_two_assets_writing_the_same_path() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("one/seed.json", "1").write("two/seed.json", "2");
    p.config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'one/seed.json', to: 'seed.json' }, { from: 'two/seed.json', to: 'seed.json' }] } } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[1].from`",
            "`seed.json`",
            "`tasks.a.copyAssets[0].from` also writes",
        ],
    );
}

#[test]
fn config_bundle_over_250_mb_unzipped() {
    let p = TestProject::new();
    with_task(&p, "a");
    // Sparse: 300 MB long, no blocks written, so the test stays fast.
    let big = fs::File::create(p.root().join("model.bin")).unwrap();
    big.set_len(300_000_000).unwrap();
    drop(big);
    p.config("export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'model.bin' }] } } };");
    assert_invalid(&p, &["`tasks.a`", "250 MB", "300.0 MB"]);
}

#[test]
fn config_dependency_cycle() {
    let p = TestProject::new();
    for t in ["a", "b", "c"] {
        with_task(&p, t);
    }
    p.config("export default { projectName: 'p', tasks: { a: { dependsOn: ['c'] }, b: { dependsOn: ['a'] }, c: { dependsOn: ['b'] } } };");
    assert_invalid(&p, &["dependsOn`", "dependency cycle", "a → c → b → a"]);
}

#[test]
fn config_unknown_depends_on() {
    let p = TestProject::new();
    with_task(&p, "migrate");
    with_task(&p, "seed");
    p.config("export default { projectName: 'p', tasks: { migrate: {}, seed: { dependsOn: ['migrat'] } } };");
    assert_invalid(
        &p,
        &[
            "`tasks.seed.dependsOn[0]`",
            "unknown task `migrat`",
            "did you mean `migrate`?",
        ],
    );
}

#[test]
fn config_unknown_env() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', environments: ['dev', 'staging', 'prod'], tasks: { a: {} } };");
    assert_invalid_with(
        &p,
        &["deploy", "--env", "stagin"],
        &p.root().join("lumo.config.js"),
        &["`stagin`", "did you mean `staging`?"],
    );
    assert_invalid_with(
        &p,
        &["status", "--env", "qa"],
        &p.root().join("lumo.config.js"),
        &["`qa`", "`dev`, `staging`, `prod`"],
    );
}

#[test]
fn config_colliding_task_files() {
    let p = TestProject::new();
    p.executable("functions/tasks/migrate.sh", "#!/bin/sh\necho sh\n");
    p.executable(
        "functions/tasks/migrate.py",
        "#!/usr/bin/env python3\nprint('py')\n",
    );
    p.config("export default { projectName: 'p', tasks: { migrate: {} } };");
    assert_invalid(
        &p,
        &[
            "functions/tasks/migrate.sh",
            "functions/tasks/migrate.py",
            "`migrate`",
        ],
    );
}

#[test]
fn config_task_file_not_executable() {
    let p = TestProject::new();
    p.write("functions/tasks/migrate.sh", "#!/bin/sh\necho hi\n");
    p.config("export default { projectName: 'p', tasks: { migrate: {} } };");
    assert_invalid(
        &p,
        &[
            "`tasks.migrate`",
            "not executable",
            "chmod +x functions/tasks/migrate.sh",
        ],
    );
}

#[test]
fn a_secret_that_cannot_be_resolved_stops_a_deploy_but_not_tasks() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', secrets: { vaultToken: { value: () => { throw new Error('vault is sealed'); } } }, tasks: { a: {} } };",
    );
    assert_invalid(&p, &["`secrets.vaultToken.value`", "vault is sealed"]);
    p.lumo(&["tasks"]).code(0);
}

#[test]
fn no_env_and_no_default_environment() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', tasks: { a: {} } };");
    assert_invalid_with(
        &p,
        &["deploy"],
        &p.root().join("lumo.config.js"),
        &["no environment given", "--env"],
    );
    // A malformed `--env` is an argument error: exit 2, nothing written.
    let out = p.lumo(&["deploy", "--env", "Prod!"]).code(2).clone();
    out.stderr_has(&["`Prod!`", "a-z"]);
    assert_eq!(
        p.lumo(&["deploy", "--env", "Prod!", "--json"])
            .code(2)
            .json_error()
            .kind,
        "invalid"
    );
    assert!(!p.lumo_dir().exists());
}

#[test]
fn config_errors_are_all_reported_together() {
    // Schema problems of several keys.
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'Not Valid', tasks: { a: { timeout: 0, runOn: ['sometimes'], timout: 5, retries: 'twice' } } };",
    );
    assert_invalid(
        &p,
        &[
            "`projectName`",
            "`tasks.a.timeout`",
            "`tasks.a.runOn[0]`",
            "`tasks.a.timout`",
            "`tasks.a.retries`",
            "(5 problems)",
        ],
    );
    // Project problems: missing files, unknown dependencies.
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', tasks: { a: { dependsOn: ['x'] }, b: {}, c: {} } };",
    );
    assert_invalid(&p, &["`tasks.a.dependsOn[0]`", "`tasks.b`", "`tasks.c`"]);
    // Bundle problems across tasks.
    let p = TestProject::new();
    with_task(&p, "a");
    with_task(&p, "b");
    p.config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'nope' }] }, b: { copyAssets: [{ from: 'gone', to: 'g' }, { from: 'missing' }] } } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[0].from`",
            "`tasks.b.copyAssets[0].from`",
            "`tasks.b.copyAssets[1].from`",
        ],
    );
}

/// Regression: problems found while bundling (`copyAssets`, the size limit) did not name the
/// config file, unlike every other config error.
#[test]
fn bundle_problems_name_the_config_file() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'nope' }] } } };",
    );
    assert_invalid(&p, &["`tasks.a.copyAssets[0].from`"]);
    assert_invalid_with(
        &p,
        &["build"],
        &p.root().join("lumo.config.js"),
        &["`tasks.a.copyAssets[0].from`"],
    );
}

// ---------------------------------------------------------------------------------------------
// Lumo Framework compatibility
// ---------------------------------------------------------------------------------------------

#[test]
fn a_lumo_framework_config_loads_and_deploys_locally() {
    let mut p = TestProject::new();
    p.set_env("DATABASE_URL", "postgres://app:pw-7781@db/app");
    p.config(
        r#"import { defineConfig, env } from '@lumo-framework/core';

export default defineConfig({
  projectName: 'lumo-app',
  provider: 'aws',
  region: env('AWS_REGION', 'eu-west-2'),
  networking: { natGateway: 'managed', vpc: { cidr: '10.0.0.0/16' } },
  routes: { 'GET /users': { handler: 'users' }, 'POST /users': { handler: 'users' } },
  domainName: 'api.example.com',
  events: { 'user.created': ['send-welcome-email'] },
  secrets: {
    databaseUrl: { value: () => process.env.DATABASE_URL, description: 'Postgres connection string' },
  },
  tasks: {
    'run-migrations': {
      timeout: 120,
      runOn: ['deploy', 'update'],
      copyAssets: [{ from: 'migrations', to: 'migrations' }],
    },
    'warm-cache': { timeout: 30, runOn: ['change'] },
  },
});
"#,
    )
    .write("migrations/0001_init.sql", "create table users (id int);")
    .task("run-migrations", r#"ls migrations > "@OUT@/migrations.txt"; echo "db=$DATABASE_URL""#)
    .task("warm-cache", RECORDER);

    let verbose = p
        .lumo(&[
            "deploy",
            "--env",
            "dev",
            "--provider",
            "local",
            "--verbose",
            "--deploy-version",
            "v1",
        ])
        .code(0)
        .clone();
    for key in ["routes", "networking", "domainName", "events"] {
        assert!(
            verbose
                .stderr
                .lines()
                .any(|l| l.contains("note:") && l.contains(&format!("`{key}`"))),
            "--verbose notes the ignored key `{key}`:\n{}",
            verbose.stderr
        );
    }
    verbose.stderr_has(&["db=***"]);
    assert_eq!(p.read_out("migrations.txt").trim(), "0001_init.sql");
    assert_eq!(p.out_lines("warm-cache.log"), ["deploy"]);

    let quiet = p
        .lumo(&["deploy", "--env", "dev", "--provider", "local", "--json"])
        .code(0)
        .clone();
    assert!(
        !quiet.stderr.contains("note:"),
        "notes only with --verbose:\n{}",
        quiet.stderr
    );
    let report: support::DeployReport = quiet.json();
    assert_eq!(report.provider, "local");
    assert_eq!(report.project, "lumo-app");
    assert_eq!(report.task("run-migrations").status, RunStatus::Succeeded);
    let tasks: TaskList = p
        .lumo(&["tasks", "--json", "--provider", "local"])
        .code(0)
        .json();
    assert_eq!(tasks.tasks[0].timeout, 120);
}

#[test]
fn a_commonjs_config_deploys() {
    let p = TestProject::new();
    p.config(
        r#"const { defineConfig } = require('@lumo-framework/core');
const shared = require('./lumo.shared.js');

module.exports = defineConfig({
  projectName: 'cjs-app',
  tasks: { hello: { timeout: shared.timeout, config: { greeting: shared.greeting } } },
});
"#,
    )
    .write(
        "lumo.shared.js",
        "module.exports = { timeout: 42, greeting: 'hi' };\n",
    )
    .task("hello", r#"cat > "@OUT@/ctx.json""#);
    let report = p.deploy(&[], 0);
    assert_eq!(report.project, "cjs-app");
    let ctx: TaskContext = serde_json::from_str(&p.read_out("ctx.json")).unwrap();
    assert_eq!(ctx.config, json!({ "greeting": "hi" }));
    let tasks: TaskList = p.lumo(&["tasks", "--json"]).code(0).json();
    assert_eq!(tasks.tasks[0].timeout, 42);
}

// ---------------------------------------------------------------------------------------------
// `lumo init`, `lumo build`
// ---------------------------------------------------------------------------------------------

#[test]
fn init_in_an_empty_directory_then_deploy_works() {
    let p = TestProject::new();
    let init = p.lumo(&["init"]).code(0).clone();
    assert!(
        init.stdout.contains("lumo deploy --env dev"),
        "{}",
        init.stdout
    );
    assert!(p.root().join("lumo.config.js").is_file());
    let report = p.deploy(&[], 0);
    assert_eq!(report.status, Some(DeploymentStatus::Succeeded));
    assert_eq!(report.project, "project", "named after the directory");
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == RunStatus::Succeeded)
            && !report.tasks.is_empty()
    );
    let gitignore = fs::read_to_string(p.root().join(".gitignore")).unwrap();
    assert!(
        gitignore.lines().any(|l| l.trim() == ".lumo/"),
        "{gitignore}"
    );
}

#[test]
fn init_twice_refuses_and_overwrites_nothing() {
    let p = TestProject::new();
    p.lumo(&["init"]).code(0);
    let config = p.root().join("lumo.config.js");
    fs::write(
        &config,
        "// edited by hand\nexport default { projectName: 'mine' };\n",
    )
    .unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = walk(dir)
            .into_iter()
            .map(|f| (f.clone(), fs::read(&f).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(p.root());
    let again = p.lumo(&["init"]).code(2).clone();
    again.stderr_has(&["already exists"]);
    let error = p.lumo(&["init", "--json"]).code(2).json_error();
    assert!(error.message.contains("lumo.config.js"));
    assert_eq!(snapshot(p.root()), before, "nothing was touched");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn build_out_writes_zips_whose_sha256_is_the_printed_hash_and_is_reproducible() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'build',
          tasks: { migrate: { copyAssets: [{ from: 'migrations' }] }, report: { command: 'du -sk .' } },
        };"#,
    )
    .write("migrations/0001.sql", "create table a (id int);")
    .write("migrations/0002.sql", "create table b (id int);")
    .task("migrate", "echo migrate")
    .executable("functions/tasks/db/seed.sh", "#!/bin/sh\necho seed\n");

    let out_dir = p.tmp().join("dist");
    let first: BuildReport = p
        .lumo(&["build", "--out", out_dir.to_str().unwrap(), "--json"])
        .code(0)
        .json();
    let names: Vec<&str> = first.bundles.iter().map(|b| b.task.as_str()).collect();
    assert_eq!(names, ["migrate", "report", "db/seed"]);
    for bundle in &first.bundles {
        let zip = out_dir.join(format!("{}.zip", bundle.task));
        let bytes = fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, bundle.sha256, "sha256 of {}", zip.display());
        assert_eq!(bytes.len() as u64, bundle.size);
    }
    let migrate = &first.bundles[0];
    assert!(
        migrate.files >= 3 && migrate.unpacked_size > 0,
        "{migrate:?}"
    );

    // Touch every input (new mtimes, same bytes): the same hashes.
    std::thread::sleep(Duration::from_millis(1100));
    p.write("migrations/0001.sql", "create table a (id int);");
    p.task("migrate", "echo migrate");
    let text = p.lumo(&["build"]).code(0).clone();
    let second: BuildReport = p.lumo(&["build", "--json"]).code(0).json();
    for (a, b) in first.bundles.iter().zip(&second.bundles) {
        assert_eq!((&a.task, &a.sha256), (&b.task, &b.sha256));
        assert!(
            text.stdout.contains(&a.sha256),
            "the text output shows {}",
            a.sha256
        );
    }
    // A fresh copy of the project in another directory builds the same bytes too.
    let copy = TestProject::new();
    copy.config(&fs::read_to_string(p.root().join("lumo.config.js")).unwrap())
        .write("migrations/0001.sql", "create table a (id int);")
        .write("migrations/0002.sql", "create table b (id int);")
        .task("migrate", "echo migrate")
        .executable("functions/tasks/db/seed.sh", "#!/bin/sh\necho seed\n");
    let third: BuildReport = copy.lumo(&["build", "--json"]).code(0).json();
    let hashes = |r: &BuildReport| {
        r.bundles
            .iter()
            .map(|b| b.sha256.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&first), hashes(&third));
}

/// PRODUCT.md §3 asks for every config error at once: a schema problem must not hide a missing
/// task file or a missing `copyAssets` source (regression: each phase used to stop the next).
#[test]
fn config_errors_of_every_phase_are_reported_together() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', tasks: { a: { timeout: 0, copyAssets: [{ from: 'nope' }] }, b: {} } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.timeout`",
            "`tasks.b`",
            "`tasks.a.copyAssets[0].from`",
        ],
    );
}

/// The actor chain of PRODUCT.md §6 on `local`: `LUMO_ACTOR`, else a CI's user, else the git
/// user, else the OS user (here no git config exists and `USER` is not set).
#[test]
fn the_actor_comes_from_lumo_actor_then_ci_then_git_then_the_os() {
    let p = TestProject::new();
    p.config("export default { projectName: 'actors', tasks: { t: {} } };")
        .task("t", "echo t");
    let last_actor = |env: &[(&str, &str)]| {
        p.lumo_without_actor(&["deploy", "--env", "dev"], env)
            .code(0);
        p.history().pop().unwrap().actor
    };
    let os_user = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert_eq!(last_actor(&[]), os_user);
    assert_eq!(last_actor(&[("GITHUB_ACTOR", "octocat")]), "octocat");
    assert_eq!(
        last_actor(&[("GITHUB_ACTOR", "octocat"), ("LUMO_ACTOR", "release-bot")]),
        "release-bot"
    );
    std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(p.root())
        .status()
        .unwrap();
    std::process::Command::new("git")
        .args(["config", "user.email", "dev@example.com"])
        .current_dir(p.root())
        .status()
        .unwrap();
    assert_eq!(last_actor(&[]), "dev@example.com");
}

/// One task of `lumo tasks --json`, with what a manual run of it takes.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskArgsShown {
    name: String,
    arg_defs: Vec<ArgShown>,
    confirm: Option<String>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct ArgShown {
    name: String,
    required: bool,
    default: Option<String>,
    description: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct TasksShown {
    tasks: Vec<TaskArgsShown>,
}

/// Regression: `lumo tasks` showed only the names of a task's args, and nothing of its
/// `confirm`; a manual run's caller had to read the config to know what to pass.
#[test]
fn tasks_shows_each_args_requirement_default_and_description_and_the_confirm_text() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: { purge: { runOn: [], command: 'true',
           confirm: 'This drops the cache',
           args: { target: { required: true, description: 'the table' }, mode: { default: 'fast' }, note: {} } } } };",
    );
    let shown: TasksShown = p.lumo(&["tasks", "--json"]).code(0).json();
    let purge = &shown.tasks[0];
    assert_eq!(purge.name, "purge");
    assert_eq!(purge.confirm.as_deref(), Some("This drops the cache"));
    let arg = |name: &str, required, default: Option<&str>, description: Option<&str>| ArgShown {
        name: name.into(),
        required,
        default: default.map(Into::into),
        description: description.map(Into::into),
    };
    assert_eq!(
        purge.arg_defs,
        [
            arg("target", true, None, Some("the table")),
            arg("mode", false, Some("fast"), None),
            arg("note", false, None, None),
        ]
    );

    let text = p.lumo(&["tasks", "--env", "dev"]).code(0).stdout.clone();
    for line in [
        "--arg target=… (required): the table",
        "--arg mode=… (default `fast`)",
        "--arg note=… (optional)",
        "asks to confirm: \"This drops the cache\"",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

/// Regression: `--arg =x` was answered with "did you mean `t`?" as if the name were a typo.
#[test]
fn an_arg_with_no_name_is_told_the_form() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: { t: { runOn: [], command: 'true', args: { t: {} } } } };",
    );
    let out = p
        .lumo(&["run", "t", "--env", "dev", "--arg", "=x"])
        .code(2)
        .clone();
    out.stderr_has(&["`--arg =x`", "name is missing", "`--arg NAME=VALUE`"]);
    assert!(!out.stderr.contains("did you mean"), "{}", out.show());
}

/// Regression: `lumo logs` of a skipped run said its full output was "not stored" and showed
/// an empty tail, as if output were lost; a skipped run never started and has none.
#[test]
fn logs_of_a_skipped_run_say_it_never_started() {
    let p = TestProject::new();
    p.config("export default { projectName: 'p', tasks: { boom: {}, after: {} } };")
        .task("boom", "exit 1")
        .task("after", "echo after");
    p.deploy(&[], 1);
    let skipped = p.history().into_iter().find(|r| r.task == "after").unwrap();
    assert_eq!(skipped.status, RunStatus::Skipped);

    let out = p.lumo(&["logs", &skipped.id]).code(0).clone();
    assert!(out.stdout.is_empty(), "{}", out.show());
    out.stderr_has(&["was skipped", "never started", "no output"]);
    assert!(!out.stderr.contains("not stored"), "{}", out.show());
    let logs: Logs = p.lumo(&["logs", &skipped.id, "--json"]).code(0).json();
    assert_eq!(logs.run.status, RunStatus::Skipped);
    assert_eq!((logs.output.as_deref(), logs.complete), (Some(""), true));
}

/// Regression: `lumo init` that failed to write `.gitignore` (a directory) exited 4 but left
/// `lumo.config.js` and `functions/tasks/hello.sh` behind, so a second `lumo init` refused.
/// A failure now leaves the directory as it was.
#[test]
fn a_failed_init_leaves_nothing_behind() {
    let p = TestProject::new();
    let dir = p.tmp().join("fresh");
    fs::create_dir_all(dir.join(".gitignore")).unwrap();
    p.lumo_in(&dir, &["init"])
        .code(4)
        .stderr_has(&["/.gitignore`", "Is a directory"]);
    let left = || {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(left(), [".gitignore"]);

    // A failure after the first file is written (here `functions` is a file) removes it again.
    fs::remove_dir(dir.join(".gitignore")).unwrap();
    fs::write(dir.join("functions"), "not a directory").unwrap();
    p.lumo_in(&dir, &["init"])
        .code(4)
        .stderr_has(&["functions"]);
    assert_eq!(left(), ["functions"]);

    fs::remove_file(dir.join("functions")).unwrap();
    let init: InitReport = p.lumo_in(&dir, &["init", "--json"]).code(0).json();
    assert_eq!(init.created.len(), 3, "{init:?}");
    assert_eq!(left(), [".gitignore", "functions", "lumo.config.js"]);
}

/// `--json` config errors, with each problem on its own for scripts.
#[derive(Debug, serde::Deserialize)]
struct ConfigErrorShown {
    error: ConfigErrorBody,
}

#[derive(Debug, serde::Deserialize)]
struct ConfigErrorBody {
    message: String,
    problems: Vec<ProblemShown>,
}

#[derive(Debug, serde::Deserialize)]
struct ProblemShown {
    key: String,
    message: String,
}

/// Regression: a `--json` config error put every problem into one `message` string, so a
/// script could not tell them apart; they are now also a `problems` array of key and text.
#[test]
fn json_config_errors_list_each_problem_with_its_key() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config("export default { projectName: 'p', tasks: { a: { timeout: 0 }, b: {} } };");
    let text = p.lumo(&["deploy", "--env", "dev"]).code(2).stderr.clone();
    let shown: ConfigErrorShown = p.lumo(&["deploy", "--env", "dev", "--json"]).code(2).json();
    let keys: Vec<&str> = shown
        .error
        .problems
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(keys, ["tasks.a.timeout", "tasks.b"], "{shown:?}");
    for problem in &shown.error.problems {
        assert!(!problem.message.is_empty());
        // The human text is unchanged: every problem is still in it.
        assert!(
            text.contains(&format!("`{}`: {}", problem.key, problem.message)),
            "{text}"
        );
        assert!(shown.error.message.contains(&problem.message));
    }

    // Errors that are not about the config's keys have none.
    p.config("export default { projectName: 'p', tasks: { a: {} } };");
    let other: ConfigErrorShown = p.lumo(&["logs", "not-a-run-id", "--json"]).code(2).json();
    assert!(other.error.problems.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Task definitions: copyAssets indexes and overlaps, name collisions with command tasks,
// symlinks out of the project, non-executable entry points, args on deployment runs
// ---------------------------------------------------------------------------------------------

/// Regression: the bundler numbered `copyAssets` after validation had dropped the invalid
/// entries, so `{ from: 'nope' }` at [2] was reported as `copyAssets[1].from`.
#[test]
fn copy_assets_errors_name_the_index_the_user_wrote() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("migrations/0001.sql", "select 1;").config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [
           { from: '../x' }, { from: 'migrations', to: 'm' }, { from: 'nope' },
         ] } } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[0].from`",
            "`tasks.a.copyAssets[2].from`: `nope` does not exist",
        ],
    );
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    assert!(!out.stderr.contains("copyAssets[1]"), "{}", out.show());
}

/// Regression: two assets with the same `to` were merged into one directory of the bundle;
/// PRODUCT.md §8 makes "two assets writing the same `to`" an error, and a `to` inside another
/// asset's is the same mix.
#[test]
fn copy_assets_sharing_or_nesting_a_to_are_refused() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("migrations/0001.sql", "select 1;")
        .write("data/seed.json", "{}")
        .write("extra/x.txt", "x")
        .config(
            "export default { projectName: 'p', tasks: { a: { copyAssets: [
               { from: 'migrations', to: 'm' }, { from: 'data', to: './m/' },
               { from: 'extra', to: 'm/extra' },
             ] } } };",
        );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[1].to`: `./m/` is the same place as `m`, the `to` of `copyAssets[0]`",
            "`tasks.a.copyAssets[2].to`: `m/extra` overlaps `m`, the `to` of `copyAssets[0]`",
        ],
    );
}

/// Regression: names are unique after folding case and `_`/`-` (PRODUCT.md §2), but only
/// files were compared: a `command:` task `A` beside `functions/tasks/a.sh`, or command tasks
/// `b_c` and `B-c`, were listed and run as separate tasks.
#[test]
fn a_command_task_may_not_collide_with_another_task() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', tasks: {
           A: { command: 'echo A' }, b_c: { command: 'echo 1' }, 'B-c': { command: 'echo 2' },
         } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.A`: task name `A` collides with `a` from `functions/tasks/a.sh`",
            "`tasks.B-c`: task name `B-c` collides with `b_c` from the command task `tasks.b_c`",
        ],
    );
    p.lumo(&["tasks"])
        .code(2)
        .stderr_has(&["`tasks.A`", "`tasks.B-c`"]);
}

/// Regression: a task file linked to a file outside the project was bundled and run, though
/// `copyAssets` refuses the same link (PRODUCT.md §8). A link inside the project is fine.
#[test]
fn a_task_symlinked_outside_the_project_is_refused() {
    use std::os::unix::fs::PermissionsExt;

    let p = TestProject::new();
    let outside = p.tmp().join("elsewhere/x.sh");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    let script = format!("#!/bin/sh\necho ran > {}/linkout\n", p.out().display());
    fs::write(&outside, script).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    p.executable(
        "scripts/inside.sh",
        "#!/bin/sh\necho inside > @OUT@/inside\n",
    );
    fs::create_dir_all(p.root().join("functions/tasks")).unwrap();
    std::os::unix::fs::symlink(&outside, p.root().join("functions/tasks/linkout.sh")).unwrap();
    std::os::unix::fs::symlink(
        p.root().join("scripts/inside.sh"),
        p.root().join("functions/tasks/linkin.sh"),
    )
    .unwrap();
    p.config("export default { projectName: 'p', tasks: { linkout: {}, linkin: {} } };");
    assert_invalid(
        &p,
        &[
            "`functions/tasks/linkout.sh`: resolves to",
            "outside the project root",
        ],
    );
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    assert!(!out.stderr.contains("no task file"), "{}", out.show());

    // Without the outside link, the inside one deploys.
    fs::remove_file(p.root().join("functions/tasks/linkout.sh")).unwrap();
    p.config("export default { projectName: 'p', tasks: { linkin: {} } };");
    p.deploy(&[], 0);
    assert_eq!(p.read_out("inside").trim(), "inside");
}

/// Regression: a task directory whose `run` lacks its `x` bit read "no task file", not the
/// `chmod +x` hint the README promises.
#[test]
fn a_task_directory_with_a_non_executable_run_says_chmod() {
    let p = TestProject::new();
    p.write("functions/tasks/warm/run.sh", "#!/bin/sh\necho warm\n")
        .config("export default { projectName: 'p', tasks: { warm: {} } };");
    assert_invalid(
        &p,
        &[
            "`tasks.warm`: `functions/tasks/warm/run.sh` is not executable",
            "chmod +x functions/tasks/warm/run.sh",
        ],
    );
}

/// Regression: a deployment handed tasks no args at all, so declared defaults never reached a
/// task running on deploy (`ctx.args` was `{}`, no `LUMO_ARG_MODE`). A required arg binds
/// manual runs only (PRODUCT.md §3: "for manual runs"): a deployment runs the task without it.
#[test]
fn deployment_runs_get_arg_defaults() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: {
           once: { runOn: ['deploy'], args: { target: { required: true }, mode: { default: 'soft' } } },
         } };",
    )
    .task("once", OBSERVER);
    p.deploy(&[], 0);
    let ctx = context(&p, "deploy");
    assert_eq!(
        ctx.args.into_iter().collect::<Vec<_>>(),
        [("mode".to_string(), "soft".to_string())]
    );
    let env = parse_env_dump(&p.read_out("deploy.env"));
    assert_eq!(env["LUMO_ARG_MODE"], "soft");
    assert!(!env.contains_key("LUMO_ARG_TARGET"), "{env:?}");
}

// ---------------------------------------------------------------------------------------------
// Secrets in escaped JSON, logs while a run goes on, processes that leave the task's group
// ---------------------------------------------------------------------------------------------

/// Regression: only serde_json's way of escaping a secret inside JSON was masked. A task
/// printing JSON with Python's `json.dumps` (non-ASCII as `\u00e4`) or Go's `encoding/json`
/// (`<>&` as `\u003c`) showed and stored the secret; and a secret returned as a number in the
/// result's `data` was stored as it was.
#[test]
fn secrets_in_ascii_escaped_json_and_in_numbers_are_masked_and_never_stored() {
    const UNICODE: &str = "pässwörd-ünï";
    const UNICODE_PY: &str = r"p\u00e4ssw\u00f6rd-\u00fcn\u00ef";
    const UNICODE_UPPER: &str = r"p\u00E4ssw\u00F6rd-\u00FCn\u00EF";
    const HTML: &str = "a<b>&c=d";
    const HTML_GO: &str = r"a\u003cb\u003e\u0026c=d";
    const PIN: &str = "987654321";
    let mut p = TestProject::new();
    p.set_env("E2E_UNICODE_PW", UNICODE)
        .set_env("E2E_HTML_TOKEN", HTML)
        .set_env("E2E_PIN", PIN);
    p.config(
        r#"export default {
          projectName: 'escaped-secrets',
          secrets: {
            unicodePw: { value: () => process.env.E2E_UNICODE_PW },
            htmlToken: { value: () => process.env.E2E_HTML_TOKEN },
            pin: { value: () => process.env.E2E_PIN },
          },
          tasks: { leak: {} },
        };"#,
    );
    // The task escapes the secrets from its environment as those encoders do (the script
    // holds no secret: it is bundled into `.lumo/`), prints them whole and split across two
    // writes, and returns them in its result, the pin as a number.
    p.task(
        "leak",
        r#"py=$(printf '%s' "$UNICODE_PW" | sed 's/ä/\\u00e4/g; s/ö/\\u00f6/g; s/ü/\\u00fc/g; s/ï/\\u00ef/g')
upper=$(printf '%s' "$py" | sed 's/u00e4/u00E4/g; s/u00f6/u00F6/g; s/u00fc/u00FC/g; s/u00ef/u00EF/g')
go=$(printf '%s' "$HTML_TOKEN" | sed 's/</\\u003c/g; s/>/\\u003e/g; s/&/\\u0026/g')
echo "python: {\"p\": \"$py\"}"
echo "java: {\"p\": \"$upper\"}"
echo "go: {\"t\":\"$go\"}"
printf 'split: %s' "$(printf '%s' "$py" | cut -c1-9)"
sleep 0.3
printf '%s | %s' "$(printf '%s' "$py" | cut -c10-)" "$(printf '%s' "$go" | cut -c1-8)"
sleep 0.3
printf '%s end\n' "$(printf '%s' "$go" | cut -c9-)"
printf '{"success": true, "message": "used %s and %s", "data": {"p": "%s", "t": "%s", "n": %s}}' "$py" "$go" "$py" "$go" "$PIN" > "$LUMO_RESULT_FILE""#,
    );
    let needles = [UNICODE, UNICODE_PY, UNICODE_UPPER, HTML, HTML_GO, PIN];
    let assert_masked = |what: &str, shown: &str| {
        for needle in needles {
            assert!(!shown.contains(needle), "{needle} in {what}:\n{shown}");
        }
    };

    let text = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    assert_masked("deploy", &format!("{}{}", text.stdout, text.stderr));
    text.stderr_has(&[
        r#"python: {"p": "***"}"#,
        r#"java: {"p": "***"}"#,
        r#"go: {"t":"***"}"#,
        "split: *** | *** end",
    ]);
    let json_deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert_masked(
        "deploy --json",
        &format!("{}{}", json_deploy.stdout, json_deploy.stderr),
    );
    let report: support::DeployReport = json_deploy.json();
    let leak = report.task("leak");
    assert_eq!(leak.message.as_deref(), Some("used *** and ***"));
    assert_eq!(
        leak.data,
        Some(json!({ "p": "***", "t": "***", "n": "***" }))
    );
    let manual = p
        .lumo(&["run", "leak", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert_masked("run --json", &format!("{}{}", manual.stdout, manual.stderr));

    for run in p.history() {
        for args in [&["logs", &run.id][..], &["logs", &run.id, "--json"]] {
            let logs = p.lumo(args).code(0).clone();
            assert_masked("logs", &format!("{}{}", logs.stdout, logs.stderr));
        }
    }
    for args in [
        &["history", "--env", "dev", "--json"][..],
        &["status", "--env", "dev", "--json"],
    ] {
        let out = p.lumo(args).code(0).clone();
        assert_masked(&args.join(" "), &format!("{}{}", out.stdout, out.stderr));
    }
    for needle in needles {
        let stored = TestProject::files_containing(&p.lumo_dir(), needle);
        assert!(stored.is_empty(), "{needle} is stored in {stored:?}");
    }
    assert!(p.lumo_dir().join("lumo.db").is_file());
}

/// Regression: a run's log was written only when the run ended (a 64 KiB buffer), so the log
/// on disk was empty while the task ran, and stayed empty once lumo was killed (`kill -9`).
#[test]
fn the_log_holds_the_output_while_the_task_runs_and_after_lumo_is_killed() {
    const LINE: &str = "printed before the long wait";
    let p = TestProject::new();
    p.config("export default { projectName: 'live-log', tasks: { slow: { timeout: 120 } } };");
    p.task(
        "slow",
        &format!("echo $$ > \"@OUT@/slow.pid\"\necho '{LINE}'\nsleep 300"),
    );
    let mut lumo = p
        .std_command(support::ACTOR, &["deploy", "--env", "dev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let logs_dir = p.lumo_dir().join("logs");
    let logged = || -> Option<(PathBuf, String)> {
        fs::read_dir(&logs_dir).ok()?.flatten().find_map(|entry| {
            let text = fs::read_to_string(entry.path()).ok()?;
            text.contains(LINE).then(|| (entry.path(), text))
        })
    };
    // Far less than the task's sleep: only a log written while the task runs passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut found = logged();
    while found.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        found = logged();
    }
    let still_running = lumo.try_wait().unwrap().is_none();
    // `lumo logs` shows it too while the run goes on (its record has no log ref yet).
    let live_logs = found.as_ref().map(|(path, _)| {
        let run_id = path.file_stem().unwrap().to_str().unwrap().to_string();
        p.logs(&run_id)
    });
    lumo.kill().unwrap();
    lumo.wait().unwrap();
    let after_kill = found
        .as_ref()
        .map(|(path, _)| fs::read_to_string(path).unwrap());
    // The task outlives the killed lumo: stop its group.
    if let Ok(pid) = p.read_out("slow.pid").trim().parse::<i32>() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }

    let (_, text) = found.expect("the log never held the line while the task ran");
    assert!(still_running, "lumo ended before the check");
    assert_eq!(text, format!("{LINE}\n"));
    assert_eq!(after_kill.as_deref(), Some(text.as_str()), "after kill -9");
    let live_logs = live_logs.unwrap();
    assert_eq!(
        live_logs.output.as_deref(),
        Some(text.as_str()),
        "{live_logs:?}"
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
    let p = TestProject::new();
    p.config(&format!(
        "export default {{ projectName: 'escapes', tasks: {{ {task}: {{ timeout: 1 }} }} }};"
    ));
    p.task(task, &format!("setsid sleep {marker} &\n{rest}"));
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

/// Regression: a script without a `#!` line failed with "Exec format error (os error 8)" and
/// no word of what to do.
#[test]
fn a_script_without_a_shebang_fails_saying_to_add_one() {
    let p = TestProject::new();
    p.config("export default { projectName: 'no-shebang', tasks: { plain: {} } };");
    p.executable("functions/tasks/plain.sh", "echo hi\n");
    let report = p.deploy(&[], 1);
    let plain = report.task("plain");
    assert_eq!(plain.status, RunStatus::Failed);
    let message = plain.message.as_deref().unwrap_or("");
    assert!(
        message.contains("plain.sh`") && message.contains("`#!/bin/sh`"),
        "{message}"
    );
}
