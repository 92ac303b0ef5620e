//! The CLI contract (PRODUCT.md §7): exactly one JSON document on stdout with `--json`, usage
//! errors included, and the exit codes.

use std::fs;
use std::path::PathBuf;

use crate::support::local::RECORDER;
use crate::support::{
    self, BuildReport, DeploymentStatus, InitReport, Logs, Status, TaskList, TaskRun, TestProject,
};

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

/// `LUMO_CONFIG` and `LUMO_PROVIDER` stand for `--config` and `--provider` (a repo whose config
/// has another name, or a Lumo config run locally, would need the flags on every command); a
/// flag on the command line wins over its variable.
#[test]
fn lumo_config_and_lumo_provider_stand_for_their_flags() {
    let p = TestProject::new();
    p.config("export default { projectName: 'default-app', tasks: { hello: {} } };")
        .write(
            "lumo.other.js",
            "export default { projectName: 'other-app', provider: 'aws', region: 'eu-west-1', tasks: { hello: {} } };",
        )
        .task("hello", "echo hello");

    let from_env: support::DeployReport = p
        .lumo_with_env(
            &["deploy", "--env", "dev", "--json"],
            &[("LUMO_CONFIG", "lumo.other.js"), ("LUMO_PROVIDER", "local")],
        )
        .code(0)
        .json();
    assert_eq!(
        (from_env.project.as_str(), from_env.provider.as_str()),
        ("other-app", "local"),
        "the variables choose the config file and the provider"
    );

    let flags_win: support::DeployReport = p
        .lumo_with_env(
            &[
                "deploy",
                "--env",
                "dev",
                "--json",
                "--config",
                "lumo.config.js",
                "--provider",
                "local",
            ],
            &[("LUMO_CONFIG", "lumo.other.js"), ("LUMO_PROVIDER", "aws")],
        )
        .code(0)
        .json();
    assert_eq!(
        (flags_win.project.as_str(), flags_win.provider.as_str()),
        ("default-app", "local"),
        "--config and --provider win over LUMO_CONFIG and LUMO_PROVIDER"
    );

    let bad = p
        .lumo_with_env(&["tasks"], &[("LUMO_PROVIDER", "gcp")])
        .code(2)
        .clone();
    bad.stderr_has(&["gcp", "LUMO_PROVIDER", "local", "aws"]);
}

/// Regression (issue 11's check): a `LUMO_CONFIG` naming a missing file got "pass `--config
/// PATH`", though the user typed no path; and `LUMO_PROVIDER=aws` without an `aws` section was
/// reported as "required with `--provider aws`". Both now name the variable the value came
/// from; the typed flag is still named as the flag.
#[test]
fn a_bad_value_from_lumo_config_or_lumo_provider_names_the_variable() {
    let p = TestProject::new();
    p.config("export default { projectName: 'app', tasks: { hello: {} } };")
        .task("hello", "echo hello");

    let from_env = p
        .lumo_with_env(&["tasks"], &[("LUMO_CONFIG", "lumo.missing.js")])
        .code(2)
        .clone();
    from_env.stderr_has(&[
        "lumo.missing.js",
        "the environment variable `LUMO_CONFIG`",
        "unset LUMO_CONFIG",
    ]);
    assert!(
        !from_env.stderr.contains("pass `--config PATH`"),
        "{}",
        from_env.show()
    );
    let json = p
        .lumo_with_env(&["tasks", "--json"], &[("LUMO_CONFIG", "lumo.missing.js")])
        .code(2)
        .json_error();
    assert!(
        json.hint
            .as_deref()
            .is_some_and(|h| h.contains("`LUMO_CONFIG`")),
        "{:?}",
        json.hint
    );

    let typed = p
        .lumo(&["tasks", "--config", "lumo.missing.js"])
        .code(2)
        .clone();
    typed.stderr_has(&["lumo.missing.js", "pass `--config PATH`"]);
    assert!(!typed.stderr.contains("LUMO_CONFIG"), "{}", typed.show());

    p.lumo_with_env(&["deploy", "--env", "dev"], &[("LUMO_PROVIDER", "aws")])
        .code(2)
        .stderr_has(&["`aws.bucket`", "is required with `LUMO_PROVIDER=aws`"]);
    p.lumo(&["deploy", "--env", "dev", "--provider", "aws"])
        .code(2)
        .stderr_has(&["`aws.bucket`", "is required with `--provider aws`"]);
    assert!(!p.has_out("hello"), "a task ran with an unusable provider");
}
