//! Manual runs (`lumo run`): refused before a first deploy, args checked (required, choices,
//! type) and defaulted, `confirm`, failures recorded, and `lumo tasks` showing what a manual run
//! takes.

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

/// Regression: `--from-source` before any deploy said "has no deployed bundle", though it needs
/// none: what it needs is the environment's deployment (its version for the context).
#[test]
fn from_source_before_any_deploy_says_it_needs_the_environment_deployed() {
    let p = manual_project();
    let run = [
        "run",
        "purge",
        "--env",
        "dev",
        "--arg",
        "target=users",
        "--yes",
        "--from-source",
    ];
    let says = "`--from-source` needs environment `dev` deployed once";
    let out = p.lumo(&run).code(2).clone();
    assert!(
        out.stderr.contains(says) && !out.stderr.contains("no deployed bundle"),
        "{}",
        out.show()
    );
    let error = p
        .lumo(&[&run[..], &["--json"]].concat())
        .code(2)
        .json_error();
    assert!(error.message.contains("its version"), "{error:?}");
    assert!(
        error
            .hint
            .unwrap_or_default()
            .contains("lumo deploy --env dev"),
    );
    let preview = p.lumo(&[&run[..], &["--dry-run"]].concat()).code(0).clone();
    assert!(
        preview
            .stdout
            .contains(&format!("would fail (exit 2): {says}")),
        "{}",
        preview.show()
    );
    assert!(!p.has_out("purge.env"));

    // Once deployed, it runs.
    p.deploy(&[], 0);
    p.lumo(&run).code(0);
    assert!(p.has_out("purge.env"));
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
    #[serde(rename = "type")]
    kind: String,
    choices: Option<Vec<String>>,
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
           args: { target: { required: true, description: 'the table' }, mode: { default: 'fast' }, note: {},
                   level: { choices: ['low', 'high'], default: 'low' }, count: { type: 'number' },
                   source: { type: 'environment', required: true } } } } };",
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
        kind: "string".into(),
        choices: None,
    };
    assert_eq!(
        purge.arg_defs,
        [
            arg("target", true, None, Some("the table")),
            arg("mode", false, Some("fast"), None),
            arg("note", false, None, None),
            ArgShown {
                choices: Some(vec!["low".into(), "high".into()]),
                ..arg("level", false, Some("low"), None)
            },
            ArgShown {
                kind: "number".into(),
                ..arg("count", false, None, None)
            },
            ArgShown {
                kind: "environment".into(),
                ..arg("source", true, None, None)
            },
        ]
    );

    // Each arg on its own line under the task, its choices standing in for the value, then
    // its type and whether it must be given: `--arg target=… (string, required): the table`,
    // `--arg level=low|high (string, default `low`)`, `--arg count=… (number, optional)`,
    // then the confirm text.
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

/// A task with every kind of typed argument (issue 12), in a project with three environments.
const TYPED_CONFIG: &str = r#"export default {
  projectName: 'typed',
  environments: ['dev', 'staging', 'prod'],
  tasks: {
    copy: {
      runOn: [],
      args: {
        source: { type: 'environment', required: true, description: 'copy from' },
        target: { required: true },
        mode: { choices: ['soft', 'hard'], default: 'soft' },
        batch: { type: 'number', default: 100 },
        dryRun: { type: 'boolean', default: false },
      },
    },
  },
};"#;

fn typed_project() -> TestProject {
    let p = TestProject::new();
    p.config(TYPED_CONFIG).task(
        "copy",
        r#"env | grep '^LUMO_ARG_' | sort > "@OUT@/copy.env"
echo "copied from $LUMO_ARG_SOURCE""#,
    );
    p
}

/// `lumo run copy --env staging` with `args`, refused with exit 2; returns the error message.
#[track_caller]
fn refused_copy(p: &TestProject, args: &[&str]) -> String {
    let mut line = vec!["run", "copy", "--env", "staging", "--json"];
    line.extend_from_slice(args);
    let error = p.lumo(&line).code(2).json_error();
    assert_eq!(error.kind, "invalid", "{error:?}");
    error.message
}

/// Every argument rule with its error (issue 12): `required` means present and not blank,
/// `choices`, `type` number / boolean / environment (another declared environment than the
/// run's), names matched without regard to case. Each error says what is allowed, exits 2 and
/// comes before the lock: another actor holds it here, and nothing runs or is recorded.
#[test]
fn typed_args_are_checked_before_the_lock_and_each_error_says_what_is_allowed() {
    let p = typed_project();
    p.lumo(&["deploy", "--env", "staging"]).code(0);
    p.lumo_as("alice", &["lock", "--env", "staging", "--reason", "freeze"])
        .code(0);

    let cases: &[(&[&str], &str)] = &[
        (
            &["--arg", "source=prod", "--arg", "target="],
            "`--arg target=`: `target` is required and must not be blank",
        ),
        (
            &["--arg", "source=prod", "--arg", "target=  "],
            "`target` is required and must not be blank",
        ),
        (
            &["--arg", "target=t"],
            "task `copy` needs the required argument(s) `source` (copy from; the name of \
             another environment of this project: `dev`, `prod`)",
        ),
        (
            &[
                "--arg",
                "source=prod",
                "--arg",
                "target=t",
                "--arg",
                "mode=banana",
            ],
            "`--arg mode=banana`: `mode` takes one of `soft`, `hard`",
        ),
        (
            &[
                "--arg",
                "source=prod",
                "--arg",
                "target=t",
                "--arg",
                "batch=lots",
            ],
            "`--arg batch=lots`: `batch` takes a number (like `3`, `-1` or `2.5`)",
        ),
        (
            &[
                "--arg",
                "source=prod",
                "--arg",
                "target=t",
                "--arg",
                "dryRun=yes",
            ],
            "`--arg dryRun=yes`: `dryRun` takes `true` or `false`",
        ),
        (
            &["--arg", "source=qa", "--arg", "target=t"],
            "`--arg source=qa`: `source` takes the name of another environment of this \
             project: `dev`, `prod`",
        ),
        (
            &["--arg", "source=staging", "--arg", "target=t"],
            "`source` takes the name of another environment of this project: `dev`, `prod` \
             (`staging` is the environment the task runs in)",
        ),
        (
            &["--arg", "source=prd", "--arg", "target=t"],
            "did you mean `prod`?",
        ),
        (
            &[
                "--arg",
                "SOURCE=prod",
                "--arg",
                "source=dev",
                "--arg",
                "target=t",
            ],
            "`--arg source` is given more than once",
        ),
        (
            &["--arg", "sorce=prod", "--arg", "target=t"],
            "`--arg sorce`: unknown argument; task `copy` declares `source`, `target`, `mode`, \
             `batch`, `dryRun`; did you mean `source`?",
        ),
    ];
    for (args, expected) in cases {
        let message = refused_copy(&p, args);
        assert!(
            message.contains(expected),
            "{args:?}: expected {expected:?} in {message:?}"
        );
    }
    assert!(!p.has_out("copy.env"), "nothing ran");
    assert!(p.history().is_empty(), "nothing recorded");

    // With the lock free, the same names in another case are the declared arguments.
    p.lumo_as("alice", &["unlock", "--env", "staging"]).code(0);
    let run: TaskRun = p
        .lumo(&[
            "run",
            "copy",
            "--env",
            "staging",
            "--arg",
            "SOURCE=prod",
            "--arg",
            "Target=users",
            "--arg",
            "mode=hard",
            "--arg",
            "batch=2.5",
            "--arg",
            "DRYRUN=true",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(run.message.as_deref(), Some("copied from prod"));
    let env = parse_env_dump(&p.read_out("copy.env"));
    let shown: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        shown,
        [
            ("LUMO_ARG_BATCH", "2.5"),
            ("LUMO_ARG_DRY_RUN", "true"),
            ("LUMO_ARG_MODE", "hard"),
            ("LUMO_ARG_SOURCE", "prod"),
            ("LUMO_ARG_TARGET", "users"),
        ]
    );
}

/// A default that does not fit its type or choices is a config error (exit 2, at its key path),
/// even for a deploy, which never passes `--arg`s.
#[test]
fn an_args_default_that_does_not_fit_is_a_config_error() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', environments: ['dev', 'prod'], tasks: { t: { runOn: [], command: 'true',
           args: { mode: { choices: ['soft', 'hard'], default: 'banana' },
                   from: { type: 'environment', default: 'qa' } } } } };",
    );
    p.lumo(&["deploy", "--env", "dev"]).code(2).stderr_has(&[
        "`tasks.t.args.mode.default`: must be one of the argument's `choices` (`soft`, `hard`), got \"banana\"",
        "`tasks.t.args.from.default`: must be one of the project's environments (`dev`, `prod`)",
    ]);
}

/// Without declared `environments`, an `environment` argument takes any valid environment name
/// but the run's own.
#[test]
fn an_environment_arg_without_declared_environments_takes_any_other_valid_name() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: { t: { runOn: [], command: 'echo \"from $LUMO_ARG_FROM\"',
           args: { from: { type: 'environment', required: true } } } } };",
    );
    p.deploy(&[], 0);
    let here = p
        .lumo(&["run", "t", "--env", "dev", "--arg", "from=dev", "--json"])
        .code(2)
        .json_error();
    assert!(
        here.message
            .contains("any environment name: a-z, 0-9 and `-`, up to 40 characters; not `dev`"),
        "{here:?}"
    );
    p.lumo(&["run", "t", "--env", "dev", "--arg", "from=Prod DB"])
        .code(2)
        .stderr_has(&["`from` takes the name of another environment of this project"]);
    let run: TaskRun = p
        .lumo(&["run", "t", "--env", "dev", "--arg", "from=qa-2", "--json"])
        .code(0)
        .json();
    assert_eq!(run.message.as_deref(), Some("from qa-2"));
}
