//! The deployment lifecycle (PRODUCT.md §4, §5): what a task sees on a first deploy and on an
//! update, `runOn`, `dependsOn` order, a failing task stopping the deploy, retries, independent
//! environments, the result file, and the actor each run records.

use std::fs;

use serde_json::json;

use crate::support::local::{OBSERVER, RECORDER, context};
use crate::support::{
    self, DeploymentStatus, Logs, RunStatus, Status, TaskList, TaskRun, TestProject, Trigger,
    parse_env_dump,
};
use crate::text_output::snapshot;

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

    // Nothing on stdout; stderr says the run was skipped, never started and has no output (not
    // that its output is "not stored").
    let out = p.lumo(&["logs", &skipped.id]).code(0).clone();
    snapshot(&p, "logs_of_a_skipped_run", &out);
    let logs: Logs = p.lumo(&["logs", &skipped.id, "--json"]).code(0).json();
    assert_eq!(logs.run.status, RunStatus::Skipped);
    assert_eq!((logs.output.as_deref(), logs.complete), (Some(""), true));
}

/// Under `CI=true`, the `local` provider starting from an empty `.lumo/` says so: each CI job
/// would otherwise silently be a first deploy. Not once the store exists, nor outside CI.
#[test]
fn ci_starting_from_an_empty_lumo_dir_is_warned() {
    let p = TestProject::new();
    p.config("export default { projectName: 'ci', tasks: { migrate: {} } };")
        .task("migrate", RECORDER);
    let warned = |stderr: &str| stderr.contains("warning:") && stderr.contains("CI=true");

    let outside_ci = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    assert!(!warned(&outside_ci.stderr), "{}", outside_ci.show());

    fs::remove_dir_all(p.lumo_dir()).unwrap();
    let first = p
        .lumo_with_env(&["deploy", "--env", "dev", "--json"], &[("CI", "true")])
        .code(0)
        .clone();
    assert!(warned(&first.stderr), "{}", first.show());
    first.stderr_has(&[".lumo", "first deploy", "`aws` provider", "cache"]);
    let report: support::DeployReport = first.json();
    assert!(report.is_first_deploy);

    let next = p
        .lumo_with_env(&["deploy", "--env", "dev"], &[("CI", "true")])
        .code(0)
        .clone();
    assert!(!warned(&next.stderr), "{}", next.show());
}
