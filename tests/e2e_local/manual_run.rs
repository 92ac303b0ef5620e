//! Manual runs (`lumo run`): refused before a first deploy, args checked and defaulted,
//! `confirm`, failures recorded, and `lumo tasks` showing what a manual run takes.

use crate::support::local::RECORDER;
use crate::support::{RunStatus, TaskContext, TaskRun, TestProject, Trigger, parse_env_dump};
use crate::text_output::snapshot;

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
    // "has no deployed bundle", with the hint to `lumo deploy --env dev`.
    let out = p
        .lumo(&["run", "purge", "--env", "dev", "--arg", "target=users"])
        .code(2)
        .clone();
    snapshot(&p, "manual_run_before_any_deploy", &out);
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

    // Each arg on its own line under the task: `--arg target=… (required): the table`,
    // `--arg mode=… (default `fast`)`, `--arg note=… (optional)`, then the confirm text.
    let text = p.lumo(&["tasks", "--env", "dev"]).code(0).clone();
    snapshot(&p, "tasks_args_and_confirm", &text);
}

/// Regression: `--arg =x` was answered with "did you mean `t`?" as if the name were a typo.
#[test]
fn an_arg_with_no_name_is_told_the_form() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: { t: { runOn: [], command: 'true', args: { t: {} } } } };",
    );
    // Names `--arg =x`, says the name is missing and shows `--arg NAME=VALUE`; no "did you mean".
    let out = p
        .lumo(&["run", "t", "--env", "dev", "--arg", "=x"])
        .code(2)
        .clone();
    snapshot(&p, "arg_with_no_name", &out);
}
