//! Config errors (PRODUCT.md §3, §8): exit 2, the file and key path named, every problem
//! reported at once, nothing written.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::TestProject;
use crate::support::local::{assert_invalid, assert_invalid_with, with_task};
use crate::text_output::snapshot;

#[test]
fn config_missing() {
    let p = TestProject::new();
    with_task(&p, "a");
    // Names `lumo.config.js` and points to `lumo init` and `--config PATH`.
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    snapshot(&p, "config_missing", &out);
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

/// Regression: a config entry naming a `_` helper (`_shared.ts`, anything in `_lib/`) read "no
/// task file", though the file is there: it is not a task by convention, and the error says so.
#[test]
fn config_naming_a_helper_file_says_underscore_names_are_not_tasks() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write(
        "functions/tasks/_shared.ts",
        "export const run = async () => ({ success: true, message: 'x' });",
    );
    p.write("functions/tasks/_lib/db.ts", "export const db = 1;");
    p.config("export default { projectName: 'p', tasks: { _shared: {}, '_lib/db': {} } };");
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    // Each is named as it is on disk: `_shared` is `_shared.ts`.
    for (key, helper, file) in [
        ("_shared", "_shared.ts", "functions/tasks/_shared.ts"),
        ("_lib/db", "_lib", "functions/tasks/_lib/db.ts"),
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("`tasks.{key}`")))
            .unwrap_or_else(|| panic!("no line for `tasks.{key}`: {}", out.show()));
        assert!(
            line.contains(&format!(
                "`{helper}` starts with `_`: by convention such files and folders are helpers \
                 for the tasks to import, not tasks, so `{file}` never runs"
            )) && !line.contains("no task file"),
            "{line}"
        );
    }
    assert!(!p.lumo_dir().exists());
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

/// Regression (adversarial run, issue 10): a cycle through every one of many tasks printed
/// them all on one line (1.3 MB for 100,000), after a check that took quadratic time.
#[test]
fn config_long_dependency_cycle_is_shown_shortened() {
    let p = TestProject::new();
    p.config(
        "const tasks = {};
         for (let i = 0; i < 5000; i++) tasks['t' + i] = { command: 'true', dependsOn: ['t' + ((i + 1) % 5000)] };
         export default { projectName: 'p', tasks };",
    );
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    out.stderr_has(&[
        "`tasks.t0.dependsOn`",
        "dependency cycle: t0 → t1 → t2 → t3 → t4 → t5 → … 4992 more … → t4998 → t4999 → t0",
    ]);
    assert!(out.stderr.len() < 1000, "{}", out.stderr);
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
    // What a secret's function threw may hold the secret, so only its kind is shown.
    assert_invalid(
        &p,
        &["`secrets.vaultToken.value`", "threw an Error", "not shown"],
    );
    for args in [
        &["deploy", "--env", "dev"][..],
        &["deploy", "--env", "dev", "--json"],
    ] {
        let out = p.lumo(args).code(2).clone();
        assert!(
            !out.stderr.contains("vault is sealed") && !out.stdout.contains("vault is sealed"),
            "what the function threw is never shown: {}",
            out.show()
        );
    }
    p.lumo(&["tasks"]).code(0);
}

#[test]
fn no_env_and_no_default_environment() {
    let p = TestProject::new();
    with_task(&p, "a");
    // Without `environment` a config means `dev`, as in the Lumo Framework — unless its
    // `environments` have no `dev`.
    p.config(
        "export default { projectName: 'p', environments: ['staging', 'prod'], tasks: { a: {} } };",
    );
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

/// Regression (adversarial run, issue 10): a FIFO among the assets hung `lumo deploy` for
/// ever (Ctrl-C could not stop it); an unreadable file was exit 4 "cannot write the bundle
/// store" without naming it. Both are config problems naming the file, before anything is
/// written.
#[test]
fn config_copy_assets_special_or_unreadable_files() {
    let p = TestProject::new();
    with_task(&p, "a");
    fs::create_dir(p.root().join("assets")).unwrap();
    p.write("assets/ok.txt", "fine");
    let made = std::process::Command::new("mkfifo")
        .arg(p.root().join("assets/pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    p.config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'assets' }] } } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[0].from`",
            "assets/pipe` is a FIFO (named pipe)",
            "only regular files and directories",
        ],
    );
    assert!(
        !p.lumo_dir().join("bundles").exists(),
        "nothing was written"
    );
}

#[test]
fn config_copy_assets_unreadable_file_is_named() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("secret.key", "k");
    let key = p.root().join("secret.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).unwrap();
    p.config("export default { projectName: 'p', tasks: { a: { copyAssets: [{ from: 'secret.key' }] } } };");
    // root reads any file, so as root lumo runs as `nobody` (CI runs as root): the project
    // must then be writable for it.
    let as_root = nix::unistd::Uid::effective().is_root();
    let mut cmd = if as_root {
        // `nobody` must reach the project and write `.lumo/` there (the tempdir is 0700).
        for entry in walkdir::WalkDir::new(p.tmp()) {
            let entry = entry.unwrap();
            if entry.path() != key {
                let mode = entry.metadata().unwrap().permissions().mode() | 0o777;
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        cmd.arg(assert_cmd::cargo::cargo_bin("lumo"));
        cmd
    } else {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("lumo"))
    };
    let out = cmd
        .args(["deploy", "--env", "dev", "--actor", "t"])
        .current_dir(p.root())
        .env("HOME", p.tmp())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`tasks.a.copyAssets[0].from`"), "{stderr}");
    assert!(
        stderr.contains("cannot read `secret.key`: Permission denied"),
        "{stderr}"
    );
    assert!(
        !p.lumo_dir().join("bundles").exists(),
        "nothing was written"
    );
}
