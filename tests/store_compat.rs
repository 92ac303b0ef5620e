//! Stores written by an older lumo open with this one (issue 8: "data outlives code").
//!
//! `tests/fixtures/store-v1-15aa6e6/` holds a `.lumo/` written by lumo 15aa6e6, the last
//! release before the store had a schema version, and what that lumo printed for `history` and
//! `status` (see its README). Each test works on a copy in a temp dir, so the fixture itself is
//! never migrated. The aws half writes items in the shape 15aa6e6 wrote them straight into a
//! table on the emulators and reads them back through the CLI.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{DeploymentStatus, RunStatus, TestProject, Trigger};

const FIXTURE: &str = "store-v1-15aa6e6";
/// The secret of the fixture project: it must never show, in old records or new ones.
const SECRET: &str = "fixture-secret-42";
/// Fields a record gained after 15aa6e6: absent from the fixture's expected output, present
/// (with their defaults for old records) in today's.
const NEW_RUN_FIELDS: &[&str] = &["kind", "args"];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(FIXTURE)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temp project holding the fixture's project files and its `.lumo/`.
fn old_store() -> TestProject {
    let p = TestProject::new();
    let fixture = fixture_dir();
    copy_tree(&fixture.join("project"), p.root());
    copy_tree(&fixture.join("lumo-dir"), &p.lumo_dir());
    p
}

fn expected(name: &str) -> Value {
    let path = fixture_dir().join("expected").join(name);
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

/// `run` without the fields records gained since 15aa6e6, after checking what an old record
/// reads as in them: a task run, with no arguments recorded.
fn as_old_run(mut run: Value) -> Value {
    let object = run.as_object_mut().unwrap();
    for field in NEW_RUN_FIELDS {
        if let Some(value) = object.remove(*field) {
            match *field {
                "kind" => assert_eq!(value, json!("task"), "an old run is a task run"),
                "args" => assert_eq!(value, json!({}), "an old run recorded no arguments"),
                _ => {}
            }
        }
    }
    run
}

fn runs_as_old(runs: &Value) -> Value {
    Value::Array(
        runs.as_array()
            .unwrap()
            .iter()
            .cloned()
            .map(as_old_run)
            .collect(),
    )
}

#[test]
fn history_of_an_old_store_reads_as_its_lumo_showed_it() {
    let p = old_store();
    let history: Value = p
        .lumo(&["history", "--env", "dev", "--json", "--limit", "1000"])
        .code(0)
        .json();
    let old = expected("history.json");
    assert_eq!(history["env"], old["env"]);
    assert_eq!(runs_as_old(&history["runs"]), old["runs"]);
    assert_eq!(history["runs"].as_array().unwrap().len(), 7);
}

#[test]
fn status_of_an_old_store_reads_as_its_lumo_showed_it() {
    let p = old_store();
    let mut status: Value = p.lumo(&["status", "--env", "dev", "--json"]).code(0).json();
    let mut old = expected("status.json");
    let runs = runs_as_old(&status["lastRuns"]);
    status["lastRuns"] = runs;
    assert_eq!(status, old.take());
    let typed = p.status();
    assert_eq!(typed.state.version.as_deref(), Some("v2"));
    assert_eq!(typed.state.previous_version.as_deref(), Some("v1"));
    let kinds: Vec<&str> = typed
        .recent_events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["unlocked", "locked"]);
}

#[test]
fn logs_of_old_runs_read_masked_with_their_records() {
    let p = old_store();
    let history = p.history();
    let purge = history.iter().find(|r| r.task == "purge").unwrap();
    assert_eq!(purge.trigger, Trigger::Manual);
    assert_eq!(
        purge.data,
        Some(json!({ "target": "users", "token": "***" }))
    );

    let raw = p.lumo(&["logs", &purge.id]).code(0).stdout.clone();
    assert_eq!(raw, "purging users (hard) with token ***\n");

    let failed: Vec<_> = history.iter().filter(|r| r.task == "fail").collect();
    assert_eq!(failed.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2]);
    let logs = p.logs(&failed[1].id);
    assert_eq!(logs.run.status, RunStatus::Failed);
    assert_eq!(logs.run.exit_code, Some(3));
    assert_eq!(
        logs.output.as_deref(),
        Some("about to fail, token ***\n"),
        "the whole log of the old run"
    );
    assert!(logs.complete);
}

#[test]
fn the_next_deploy_of_an_old_store_updates_from_its_recorded_version() {
    let p = old_store();
    let report = p.deploy(&["--deploy-version", "v3"], 0);
    assert!(
        !report.is_first_deploy,
        "the old store records v2: an update"
    );
    assert_eq!(report.previous_version.as_deref(), Some("v2"));
    assert_eq!(report.status, Some(DeploymentStatus::Succeeded));
    assert_eq!(report.task("migrate").status, RunStatus::Succeeded);

    let history = p.history();
    assert_eq!(history.len(), 9, "7 old runs and 2 new ones");
    let hello = history.last().unwrap();
    assert_eq!(hello.task, "hello");
    assert_eq!(hello.trigger, Trigger::Update);
    assert_eq!(hello.previous_version.as_deref(), Some("v2"));
    assert_eq!(
        hello.message.as_deref(),
        Some("hello from hello at v3 (first deploy: false)")
    );
    let status = p.status();
    assert_eq!(status.state.version.as_deref(), Some("v3"));
    assert_eq!(status.state.previous_version.as_deref(), Some("v2"));
    assert!(
        TestProject::files_containing(&p.lumo_dir(), SECRET).is_empty(),
        "the secret is stored nowhere"
    );
}
