//! End-to-end tests of Rust tasks (PRODUCT.md §2, §4): a crate under `functions/tasks/` using
//! the `lumo-task` SDK, built by `lumo deploy` with cargo and run under the task contract on the
//! `local` provider.
//!
//! Why a shared target directory: every project here is a fresh temp dir, but the crates they
//! build depend on the same SDK, so `CARGO_TARGET_DIR` points at one directory under the
//! workspace's target. The SDK and its dependencies are compiled once (by [`cargo_env`], before
//! the first `lumo` call, so no `lumo` run spends its time limit on them); each test then only
//! compiles its own small crate, and a second run of the suite compiles nothing.
//!
//! Why the environment is passed through by hand: the support module runs `lumo` with a clean
//! environment and a private `HOME`, so the cargo that lumo starts would find neither its
//! toolchain (rustup's `RUSTUP_HOME`) nor its registry cache (`CARGO_HOME`). The crates are
//! built offline against a copy of the workspace's `Cargo.lock`, which never touches the network.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::json;
use support::{DeploymentStatus, RunStatus, TaskContext, TaskRun, TestProject, Trigger};

/// A task crate that records the context it was handed in `out/<trigger>.context.json` and
/// then does what `config.mode` says: `ok` (the default), `fail` or `panic`.
const PROBE_MAIN: &str = r#"
use lumo_task::{TaskContext, TaskResult, json, serde_json};

/// Something to `.await`, so the handler is polled like a real one.
async fn describe(ctx: &TaskContext) -> String {
    let first = if ctx.deployment.is_first_deploy { " (first deploy)" } else { "" };
    format!("{} of {} {}{first}", ctx.trigger, ctx.deployment.environment, ctx.deployment.version)
}

async fn run(ctx: TaskContext) -> TaskResult {
    let out = ctx.config["out"].as_str().unwrap_or(".").to_owned();
    let seen = serde_json::to_string_pretty(&ctx).expect("a TaskContext serializes");
    std::fs::write(format!("{out}/{}.context.json", ctx.trigger), seen).expect("write out/");
    let mut files: Vec<String> = std::fs::read_dir(&ctx.working_directory)
        .expect("the working directory exists")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    std::fs::write(format!("{out}/{}.files", ctx.trigger), files.join("\n")).expect("write out/");
    let what = describe(&ctx).await;
    println!("probe saw the {what}");
    match ctx.config["mode"].as_str().unwrap_or("ok") {
        "fail" => TaskResult::fail(format!("probe was told to fail in {}", ctx.deployment.environment)),
        "panic" => panic!("probe was told to panic in {}", ctx.deployment.environment),
        _ => TaskResult::ok(format!("probe saw the {what}")).with_data(json!({
            "environment": ctx.deployment.environment,
            "version": ctx.deployment.version,
            "isFirstDeploy": ctx.deployment.is_first_deploy,
            "target": ctx.args.get("target"),
        })),
    }
}

lumo_task::main!(run);
"#;

/// A task crate that does not compile.
const BROKEN_MAIN: &str = r#"
use lumo_task::{TaskContext, TaskResult};

async fn run(_ctx: TaskContext) -> TaskResult {
    let rows: u32 = "not a number";
    TaskResult::ok(format!("{rows}"))
}

lumo_task::main!(run);
"#;

/// A shell task that appends its trigger to `out/<task>.log`.
const RECORDER: &str = r#"echo "$LUMO_TRIGGER" >> "@OUT@/$LUMO_TASK.log""#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The target directory every Rust task of this suite is built in: beside this test's own
/// profile directory (`<target>/<profile>/deps/e2e_rust_task-…` → `<target>/e2e-rust-task`),
/// so it follows `CARGO_TARGET_DIR` when the suite itself is built elsewhere (as CI does).
fn shared_target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", exe.display()));
    target.join("e2e-rust-task")
}

/// The cargo manifest of a task crate named `name` using the SDK of this workspace.
fn manifest(name: &str) -> String {
    let sdk = workspace_root().join("sdk");
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nlumo-task = {{ path = {sdk:?} }}\n\n\
         # Its own workspace, whatever lies above the temp dir.\n[workspace]\n"
    )
}

/// Writes the crate `functions/tasks/<name>/` with `main_rs` into `p`.
fn rust_task(p: &TestProject, name: &str, main_rs: &str) {
    let dir = format!("functions/tasks/{name}");
    p.write(&format!("{dir}/Cargo.toml"), manifest(name));
    p.write(&format!("{dir}/src/main.rs"), main_rs);
    // Resolved offline against the workspace's lock file: no registry access, and the same
    // dependency versions as the SDK is tested with.
    let lock = fs::read(workspace_root().join("Cargo.lock")).unwrap();
    p.write(&format!("{dir}/Cargo.lock"), lock);
}

/// What the cargo that lumo starts needs from this process's environment, with the SDK and
/// its dependencies already compiled in the shared target directory (once per test process).
fn cargo_env() -> &'static [(String, String)] {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let mut env = vec![
            (
                "CARGO_HOME".to_owned(),
                std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo")),
            ),
            (
                "RUSTUP_HOME".to_owned(),
                std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup")),
            ),
            (
                "CARGO_TARGET_DIR".to_owned(),
                shared_target_dir().display().to_string(),
            ),
            ("CARGO_NET_OFFLINE".to_owned(), "true".to_owned()),
            ("CARGO_TERM_COLOR".to_owned(), "never".to_owned()),
        ];
        // The toolchain this suite was built with, so the tasks are built with it too.
        for name in ["RUSTUP_TOOLCHAIN", "CARGO"] {
            if let Ok(value) = std::env::var(name) {
                env.push((name.to_owned(), value));
            }
        }
        warm_up(&env);
        env
    })
}

/// Builds a probe crate at a fixed place in the shared target directory, as lumo would, so
/// the dependencies every task crate shares are compiled before any `lumo` runs.
fn warm_up(env: &[(String, String)]) {
    let dir = shared_target_dir().join("warm-up");
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("Cargo.toml"), manifest("warm-up")).unwrap();
    fs::write(dir.join("src/main.rs"), PROBE_MAIN).unwrap();
    fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = env
        .iter()
        .find(|(k, _)| k == "CARGO")
        .map_or("cargo", |(_, v)| v.as_str());
    let output = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building the SDK for the Rust tasks failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A project whose `lumo` runs can build Rust tasks.
fn project() -> TestProject {
    let mut p = TestProject::new();
    for (key, value) in cargo_env() {
        p.set_env(key, value);
    }
    p
}

fn seen(p: &TestProject, trigger: &str) -> TaskContext {
    serde_json::from_str(&p.read_out(&format!("{trigger}.context.json"))).unwrap()
}

#[test]
fn rust_task_is_built_and_sees_its_context_and_its_data_is_recorded() {
    let p = project();
    p.config(
        r#"export default {
          projectName: 'rust-probe',
          tasks: {
            probe: {
              config: { out: '@OUT@' },
              args: { target: { description: 'what to probe', default: 'everything' } },
            },
          },
        };"#,
    );
    rust_task(&p, "probe", PROBE_MAIN);

    let first = p.deploy(&["--deploy-version", "v1"], 0);
    let line = first.task("probe");
    assert_eq!(line.status, RunStatus::Succeeded);
    assert_eq!(
        line.message.as_deref(),
        Some("probe saw the deploy of dev v1 (first deploy)")
    );
    let ctx = seen(&p, "deploy");
    assert!(ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.version, "v1");
    assert_eq!(ctx.deployment.previous_version, None);
    assert_eq!(ctx.deployment.environment, "dev");
    assert_eq!((ctx.task.as_str(), ctx.trigger), ("probe", Trigger::Deploy));
    assert_eq!(Some(&ctx.run_id), line.run_id.as_ref());
    assert_eq!(
        p.out_lines("deploy.files"),
        ["lumo-bundle.json", "task"],
        "the working directory is the unpacked bundle: the binary as `task`, and the manifest"
    );

    let history = p.history();
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].data,
        Some(json!({
            "environment": "dev", "version": "v1", "isFirstDeploy": true, "target": "everything"
        })),
        "the handler's data is recorded (a deployment run gets the args' defaults)"
    );
    let logs = p.logs(&history[0].id);
    assert!(
        logs.output
            .unwrap_or_default()
            .contains("probe saw the deploy of dev v1 (first deploy)"),
        "the task's stdout is kept"
    );

    p.deploy(&["--deploy-version", "v2"], 0);
    let ctx = seen(&p, "update");
    assert!(!ctx.deployment.is_first_deploy);
    assert_eq!(ctx.deployment.version, "v2");
    assert_eq!(ctx.deployment.previous_version.as_deref(), Some("v1"));

    let manual: TaskRun = p
        .lumo(&[
            "run",
            "probe",
            "--env",
            "dev",
            "--arg",
            "target=sessions",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(manual.trigger, Trigger::Manual);
    assert_eq!(manual.status, RunStatus::Succeeded);
    let ctx = seen(&p, "manual");
    assert_eq!(ctx.trigger, Trigger::Manual);
    assert_eq!(ctx.args.get("target").map(String::as_str), Some("sessions"));
    assert_eq!(ctx.deployment.version, "v2");
    assert_eq!(
        manual.data.as_ref().and_then(|d| d.get("target")),
        Some(&json!("sessions"))
    );

    let defaulted: TaskRun = p
        .lumo(&["run", "probe", "--env", "dev", "--json"])
        .code(0)
        .json();
    assert_eq!(
        defaulted.data.as_ref().and_then(|d| d.get("target")),
        Some(&json!("everything")),
        "a manual run gets the arg's default"
    );

    // cargo's progress is shown, but not with `--quiet`.
    let loud = p.lumo(&["build"]).code(0).stderr.clone();
    assert!(loud.contains("Finished"), "{loud}");
    let quiet = p.lumo(&["build", "--quiet"]).code(0).stderr.clone();
    assert!(!quiet.contains("Finished"), "{quiet}");
    assert!(!quiet.contains("Compiling"), "{quiet}");
}

#[test]
fn a_handler_returning_fail_fails_the_deploy() {
    let p = project();
    p.config(
        r#"export default {
          projectName: 'rust-fail',
          tasks: { probe: { config: { out: '@OUT@', mode: 'fail' } }, after: {} },
        };"#,
    );
    rust_task(&p, "probe", PROBE_MAIN);
    p.task("after", RECORDER);

    let report = p.deploy(&["--deploy-version", "v1"], 1);
    assert_eq!(report.status, Some(DeploymentStatus::Failed));
    let line = report.task("probe");
    assert_eq!(line.status, RunStatus::Failed);
    let message = line.message.clone().unwrap_or_default();
    assert!(
        message.contains("probe was told to fail in dev"),
        "{message}"
    );
    assert_eq!(report.task("after").status, RunStatus::Skipped);
    assert!(!p.has_out("after.log"), "a skipped task does not run");

    let run = &p.history()[0];
    assert_eq!(
        (run.task.as_str(), run.status),
        ("probe", RunStatus::Failed)
    );
    assert_eq!(run.exit_code, Some(1), "the SDK exits 1 on a failed result");
    assert_eq!(p.status().state.version, None);
}

#[test]
fn a_panicking_handler_is_failed_with_the_panic_message() {
    let p = project();
    p.config(
        r#"export default {
          projectName: 'rust-panic',
          tasks: { probe: { config: { out: '@OUT@', mode: 'panic' } } },
        };"#,
    );
    rust_task(&p, "probe", PROBE_MAIN);

    let report = p.deploy(&["--deploy-version", "v1"], 1);
    let line = report.task("probe");
    assert_eq!(line.status, RunStatus::Failed);
    let message = line.message.clone().unwrap_or_default();
    assert!(
        message.contains("the task panicked: probe was told to panic in dev"),
        "{message}"
    );
    let run = &p.history()[0];
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.exit_code, Some(1));
    assert!(
        run.message
            .as_deref()
            .unwrap_or_default()
            .contains("probe was told to panic in dev"),
        "{run:?}"
    );
    assert!(p.has_out("deploy.context.json"), "the handler did run");
}

#[test]
fn a_crate_that_does_not_compile_stops_the_deploy_before_anything_runs() {
    let p = project();
    p.config(
        r#"export default {
          projectName: 'rust-broken',
          tasks: { first: {}, broken: {} },
        };"#,
    );
    p.task("first", RECORDER);
    rust_task(&p, "broken", BROKEN_MAIN);

    let out = p.lumo(&["deploy", "--env", "dev", "--deploy-version", "v1"]);
    out.code(2).stderr_has(&[
        "functions/tasks/broken",
        "`cargo build` of this Rust task failed",
        // cargo's own diagnostics reach the user too.
        "mismatched types",
    ]);
    assert!(
        !p.has_out("first.log"),
        "no task ran, not even the one declared before the broken crate"
    );
    assert!(p.history().is_empty(), "nothing was recorded");
    assert!(p.status().last_deployment.is_none());

    let json = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(2)
        .json_error();
    assert!(json.message.contains("functions/tasks/broken"), "{json:?}");

    // `--quiet` silences cargo's progress, never its errors.
    p.lumo(&["deploy", "--env", "dev", "--quiet"])
        .code(2)
        .stderr_has(&["`cargo build` of this Rust task failed", "mismatched types"]);
}

/// A plain `lumo run` notes when the working copy differs from the deployed bundle, and for a
/// crate that meant a `cargo build` on every run, changed or not. Regression: an unchanged
/// crate is judged by its files' stats and costs no cargo call; an edit still asks cargo and
/// still warns.
#[test]
fn a_plain_run_of_an_unchanged_crate_runs_no_cargo_and_an_edit_still_warns() {
    let mut p = project();
    p.config(
        r#"export default {
          projectName: 'rust-drift',
          tasks: { probe: { runOn: [], config: { out: '@OUT@' } } },
        };"#,
    );
    rust_task(&p, "probe", PROBE_MAIN);
    p.deploy(&["--deploy-version", "v1"], 0);
    // A cargo that records each call, then builds as the real one does.
    let real = cargo_env()
        .iter()
        .find(|(k, _)| k == "CARGO")
        .map_or_else(|| "cargo".to_owned(), |(_, v)| v.clone());
    let calls = p.tmp().join("cargo-calls");
    let shim = p.tmp().join("cargo-shim");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.set_env("CARGO", shim.to_str().unwrap());
    let cargo_calls = || {
        fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Files changed in the last 2 s are never trusted by their stats (`RACY_WINDOW`).
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let first = p.lumo(&["run", "probe", "--env", "dev"]);
    first.code(0);
    assert!(!first.stderr.contains("changed since"), "{}", first.show());
    let after_first = cargo_calls();
    for _ in 0..2 {
        let again = p.lumo(&["run", "probe", "--env", "dev"]);
        again.code(0);
        assert!(!again.stderr.contains("changed since"), "{}", again.show());
    }
    assert_eq!(
        cargo_calls(),
        after_first,
        "an unchanged crate was built again to compare it"
    );

    p.write(
        "functions/tasks/probe/src/main.rs",
        PROBE_MAIN.replace("probe saw the", "probe now sees the"),
    );
    p.lumo(&["run", "probe", "--env", "dev"])
        .code(0)
        .stderr_has(&[
            "`functions/tasks/probe` changed since the deployed bundle of task `probe`",
            "`--from-source` runs the working copy",
        ]);
    assert_eq!(cargo_calls(), after_first + 1, "the edited crate was built");
}
