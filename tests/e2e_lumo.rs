//! A Lumo Framework project, written the way the Lumo docs write one
//! (`tests/fixtures/lumo-project/`: TypeScript handlers using `ctx`, a relative TS helper with
//! an `enum`, a CommonJS and an ES module npm package in `node_modules`, an undeclared handler,
//! a nested `database/migrate.ts`, a handler that throws, one that outlives its timeout,
//! hyphenated secret names), deployed unchanged: on `local` (twice: the second deploy sees
//! `previousVersion`), on `aws` against the emulators, and refused before any task runs when
//! Node.js is missing or too old (pre-flight, PRODUCT.md §8).
//!
//! Needs Node.js 20+ on `PATH`, as the tasks do (CI machines have Node 20).

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{DeploymentStatus, RunStatus, TaskRun, TestProject};

const API_KEY: &str = "ak-7f3e-hyphenated-key";
const DB_PASSWORD: &str = "pw-91c2-db-password";

/// The handlers every deploy runs, in the order it runs them: the declared ones in declaration
/// order, then the undeclared (`broken` and `slow` are manual only).
const DEPLOYED: [&str; 3] = ["run-migrations", "database/migrate", "warm-cache"];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The fixture project copied into `p`, with its secrets' values in the environment.
fn with_fixture(p: &mut TestProject) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lumo-project");
    copy_dir(&fixture, p.root());
    p.set_env("FIXTURE_API_KEY", API_KEY);
    p.set_env("FIXTURE_DB_PASSWORD", DB_PASSWORD);
}

/// `lumo logs RUN_ID --json` of the fixture run locally (its config says `provider: 'aws'`).
fn local_logs(p: &TestProject, run_id: &str) -> support::Logs {
    p.lumo(&["logs", run_id, "--json", "--provider", "local"])
        .code(0)
        .json()
}

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

#[test]
fn a_lumo_framework_project_deploys_unchanged_on_local_twice() {
    let mut p = TestProject::new();
    with_fixture(&mut p);

    let first = p.deploy(&["--provider", "local", "--deploy-version", "v1"], 0);
    assert_eq!(first.status, Some(DeploymentStatus::Succeeded));
    assert_eq!(first.with_status(RunStatus::Succeeded), DEPLOYED);
    assert_eq!(
        first.with_status(RunStatus::NotRun),
        ["broken", "slow"],
        "manual-only handlers are tasks too, not run by a deploy"
    );
    let migrations = first.task("run-migrations");
    assert_eq!(
        migrations.message.as_deref(),
        Some("Setup complete for dev (first-deploy)")
    );
    assert_eq!(
        migrations.data,
        Some(serde_json::json!({
            "stage": "first-deploy", "previousVersion": null, "batchSize": 50, "apiKey": "***"
        }))
    );
    assert_eq!(
        first.task("warm-cache").message.as_deref(),
        Some("cache warmed for dev!"),
        "the undeclared handler ran, with its ES module package"
    );
    assert_eq!(
        first.task("database/migrate").message.as_deref(),
        Some("Applied 2 migrations")
    );

    let second = p.deploy(&["--provider", "local", "--deploy-version", "v2"], 0);
    assert_eq!(second.with_status(RunStatus::Succeeded), DEPLOYED);
    let migrations = second.task("run-migrations");
    assert_eq!(
        migrations.message.as_deref(),
        Some("Setup complete for dev (update)")
    );
    assert_eq!(migrations.data.as_ref().unwrap()["previousVersion"], "v1");

    // console.* is the task's output, streamed and stored, with both secrets masked.
    let logs = local_logs(&p, migrations.run_id.as_deref().unwrap());
    let output = logs.output.unwrap_or_default();
    assert!(
        output.contains("Updating from version v1\nusing key *** and password ***"),
        "{output}"
    );
    let warm = local_logs(&p, second.task("warm-cache").run_id.as_deref().unwrap());
    assert!(
        warm.output
            .unwrap_or_default()
            .contains("warming api-popular-products"),
        "the CommonJS package ran"
    );
    for secret in [API_KEY, DB_PASSWORD] {
        assert_eq!(
            TestProject::files_containing(&p.lumo_dir(), secret),
            Vec::<std::path::PathBuf>::new(),
            "a secret value was stored"
        );
    }
}

#[test]
fn a_throwing_handler_fails_with_its_message_and_a_slow_one_leaves_no_node_behind() {
    let mut p = TestProject::new();
    with_fixture(&mut p);
    p.deploy(&["--provider", "local", "--deploy-version", "v1"], 0);

    let out = p.lumo(&[
        "run",
        "broken",
        "--env",
        "dev",
        "--provider",
        "local",
        "--json",
    ]);
    let run: TaskRun = out.code(1).json();
    assert_eq!(run.status, RunStatus::Failed);
    // Exit code 1 as Node gives an uncaught error; the message is the error's own.
    assert_eq!(run.exit_code, Some(1));
    assert_eq!(
        run.message.as_deref(),
        Some("the payment provider is unreachable")
    );
    let output = local_logs(&p, &run.id).output.unwrap_or_default();
    assert!(
        output.contains("about to fail\nError: the payment provider is unreachable\n    at "),
        "the stack is in the output: {output}"
    );

    let pid_file = p.out().join("slow.pid");
    let out = p.lumo_with_env(
        &[
            "run",
            "slow",
            "--env",
            "dev",
            "--provider",
            "local",
            "--json",
        ],
        &[("FIXTURE_PID_FILE", pid_file.to_str().unwrap())],
    );
    let run: TaskRun = out.code(1).json();
    assert_eq!(run.status, RunStatus::TimedOut);
    assert_eq!(run.message.as_deref(), Some("timed out after 2s"));
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !is_alive(pid),
        "the handler's node process {pid} outlived its timeout"
    );
}

/// Regression: a handler returning what is not a `TaskResult` got the script's message
/// ("result file is not a valid TaskResult … to LUMO_RESULT_FILE"), naming neither the value
/// nor what a handler returns.
#[test]
fn a_handler_returning_what_is_not_a_task_result_is_told_what_it_returned() {
    let p = TestProject::new();
    p.config("export default { projectName: 'bad-return' };");
    p.write(
        "functions/tasks/report.ts",
        "export const run = async () => { console.log('reported'); return 'ok'; };",
    );
    let report = p.deploy(&[], 1);
    let task = report.task("report");
    assert_eq!(task.status, RunStatus::Failed);
    assert_eq!(
        task.message.as_deref(),
        Some(
            "the handler returned \"ok\"; a handler returns \
             { success: boolean, message: string, data?: object }, or nothing"
        )
    );
}

/// Pre-flight: without a usable Node.js a deploy of JavaScript tasks stops before the first
/// task, naming each task and the fix; nothing is recorded as run.
#[test]
fn without_a_usable_node_the_deploy_stops_before_any_task() {
    let mut p = TestProject::new();
    with_fixture(&mut p);
    let empty_path = p.out().join("empty-bin");
    fs::create_dir_all(&empty_path).unwrap();
    let old_node = p.out().join("old-node");
    fs::write(&old_node, "#!/bin/sh\necho v18.19.0\n").unwrap();
    fs::set_permissions(&old_node, fs::Permissions::from_mode(0o755)).unwrap();

    let cases: [(&str, &str, &str); 3] = [
        (
            "PATH",
            empty_path.to_str().unwrap(),
            "Node.js was not found on `PATH`",
        ),
        (
            "LUMO_NODE",
            "/nonexistent/node",
            "`LUMO_NODE` names `/nonexistent/node`",
        ),
        (
            "LUMO_NODE",
            old_node.to_str().unwrap(),
            "is Node.js 18.19.0",
        ),
    ];
    for (key, value, says) in cases {
        let out = p.lumo_with_env(
            &["deploy", "--env", "dev", "--provider", "local"],
            &[(key, value)],
        );
        out.code(2).stderr_has(&[
            "5 task(s) could not start, so nothing was run",
            "Node.js 20",
        ]);
        // Regression: the same Node.js line was repeated for each task. One line names them.
        let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains(says)).collect();
        assert_eq!(lines.len(), 1, "{}", out.show());
        assert!(
            lines[0].contains(
                "  - `tasks.run-migrations`, `tasks.database/migrate`, `tasks.broken`, \
                 `tasks.slow`, `tasks.warm-cache`: "
            ),
            "{}",
            out.show()
        );
        // --json keeps one problem per task, each with its key.
        let error = p
            .lumo_with_env(
                &["deploy", "--env", "dev", "--provider", "local", "--json"],
                &[(key, value)],
            )
            .code(2)
            .json_error();
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tasks.run-migrations",
                "tasks.database/migrate",
                "tasks.broken",
                "tasks.slow",
                "tasks.warm-cache"
            ]
        );
    }
    let history = p.lumo(&["history", "--env", "dev", "--provider", "local", "--json"]);
    let history: support::History = history.code(0).json();
    assert!(history.runs.is_empty(), "no task ran: {:?}", history.runs);

    // A manual run is checked the same way: Node.js may have gone since the deploy.
    p.deploy(&["--provider", "local"], 0);
    let out = p.lumo_with_env(
        &[
            "run",
            "run-migrations",
            "--env",
            "dev",
            "--provider",
            "local",
        ],
        &[("LUMO_NODE", "/nonexistent/node")],
    );
    out.code(2).stderr_has(&[
        "1 task(s) could not start, so nothing was run",
        "`tasks.run-migrations`",
    ]);
}

/// The same project on `aws` against the emulators: the runner function is on a managed
/// Node.js runtime and is started through lumo's exec wrapper (the harness runs the wrapper
/// from the deployed package, as Lambda does), and the handlers behave as on `local`.
#[test]
fn a_lumo_framework_project_deploys_unchanged_on_aws() {
    let mut a = aws_project!();
    with_fixture(&mut a.p);
    // The fixture's config, with this test's own project name and AWS resources.
    let config = fs::read_to_string(a.p.root().join("lumo.config.js")).unwrap();
    let config = config.replace(
        "projectName: 'lumo-fixture',",
        &format!(
            "projectName: '{}', region: 'us-east-1',
             aws: {{ bucket: '{}', table: '{}', roleArn: '{}', architecture: '{}' }},",
            a.name,
            a.bucket,
            a.table,
            a.emulators.runner_role_arn,
            lumo_testkit::HOST_ARCHITECTURE
        ),
    );
    // The slow handler writes its pid where this test looks (the task's `env` reaches the
    // runner on Lambda; the emulated Lambda runs on this machine, so the pid is checkable).
    let pid_file = a.p.out().join("slow.pid");
    let config = config.replace(
        "slow: { timeout: 2, runOn: [] },",
        &format!(
            "slow: {{ timeout: 2, runOn: [], env: {{ FIXTURE_PID_FILE: '{}' }} }},",
            pid_file.display()
        ),
    );
    fs::write(a.p.root().join("lumo.config.js"), config).unwrap();

    let first = a.p.deploy(&["--deploy-version", "v1"], 0);
    assert_eq!(first.provider, "aws");
    assert_eq!(first.with_status(RunStatus::Succeeded), DEPLOYED);
    assert_eq!(
        first.task("run-migrations").data.as_ref().unwrap()["apiKey"],
        "***"
    );
    assert_eq!(
        first.task("warm-cache").message.as_deref(),
        Some("cache warmed for dev!")
    );
    let second = a.p.deploy(&["--deploy-version", "v2"], 0);
    let migrations = second.task("run-migrations");
    assert_eq!(
        migrations.message.as_deref(),
        Some("Setup complete for dev (update)")
    );
    assert_eq!(migrations.data.as_ref().unwrap()["previousVersion"], "v1");

    let run: TaskRun =
        a.p.lumo(&["run", "broken", "--env", "dev", "--json"])
            .code(1)
            .json();
    assert_eq!(run.exit_code, Some(1));
    assert_eq!(
        run.message.as_deref(),
        Some("the payment provider is unreachable")
    );
    let run: TaskRun =
        a.p.lumo(&["run", "slow", "--env", "dev", "--json"])
            .code(1)
            .json();
    assert_eq!(run.status, RunStatus::TimedOut);
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !is_alive(pid),
        "the handler's node process {pid} outlived its timeout on the runner"
    );

    // The function: nodejs24.x, the wrapper in its environment, and started through it.
    let function = format!("{}-dev-lumo-runner", a.name);
    let config = support::aws::block_on(async {
        let sdk = a.sdk().await;
        aws_sdk_lambda::Client::new(&sdk)
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(config.runtime().map(|r| r.as_str()), Some("nodejs24.x"));
    let wrapper = config
        .environment()
        .and_then(|e| e.variables())
        .and_then(|v| v.get("AWS_LAMBDA_EXEC_WRAPPER"))
        .cloned();
    assert_eq!(wrapper.as_deref(), Some("/var/task/lumo-exec-wrapper"));
    let logs = a.emulators.log_dir.join("lambda").join(&function);
    let started_by_wrapper = fs::read_dir(&logs).unwrap().any(|entry| {
        fs::read_to_string(entry.unwrap().path())
            .unwrap_or_default()
            .contains("/lumo-exec-wrapper ")
    });
    assert!(
        started_by_wrapper,
        "no instance in {} was started by the wrapper",
        logs.display()
    );
}
