//! Stores written by an older lumo open with this one (issue 8: "data outlives code").
//!
//! `tests/fixtures/store-v1-15aa6e6/` holds a `.lumo/` written by lumo 15aa6e6, the last
//! release before the store had a schema version, and what that lumo printed for `history` and
//! `status` (see its README). Each test works on a copy in a temp dir, so the fixture itself is
//! never migrated. The aws half writes items in the shape 15aa6e6 wrote them straight into a
//! table on the emulators and reads them back through the CLI.

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

mod support;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use support::aws::block_on;
use support::{DeploymentStatus, RunStatus, TestProject, Trigger};

const FIXTURE: &str = "store-v1-15aa6e6";
/// The secret of the fixture project: it must never show, in old records or new ones.
const SECRET: &str = "fixture-secret-42";
/// Fields a record gained after 15aa6e6: absent from the fixture's expected output, present
/// (with their defaults for old records) in today's. `runId` is the record's `id` again, under
/// the name every task outcome in a `--json` document has (issue 11).
const NEW_RUN_FIELDS: &[&str] = &["kind", "args", "fromSource", "runId", "command"];

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
    assert_eq!(
        object.get("runId"),
        object.get("id"),
        "runId is the run's id"
    );
    for field in NEW_RUN_FIELDS {
        if let Some(value) = object.remove(*field) {
            match *field {
                "kind" => assert_eq!(value, json!("task"), "an old run is a task run"),
                "args" => assert_eq!(value, json!({}), "an old run recorded no arguments"),
                "fromSource" => assert_eq!(value, json!(false), "an old run ran a deployed bundle"),
                "command" => assert_eq!(value, Value::Null, "an old run is no `exec`"),
                _ => {}
            }
        }
    }
    as_recorded(run)
}

/// `run` as a run's record reads, from the document `--json` shows today (its outcome's shape:
/// the id again as `runId`, no `data` when there is none).
fn as_recorded(mut run: Value) -> Value {
    let object = run.as_object_mut().unwrap();
    if let Some(run_id) = object.remove("runId") {
        assert_eq!(Some(&run_id), object.get("id"), "runId is the run's id");
    }
    object.entry("data").or_insert(Value::Null);
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

    // A run with no log file reads as empty output only when its record says it printed
    // nothing (a run of this lumo that stayed quiet); an old run that printed and whose log
    // is gone is still said to be missing, with the tail its record keeps.
    let hello = history.iter().find(|r| r.task == "hello").unwrap();
    fs::remove_file(p.lumo_dir().join(format!("logs/{}.log", hello.id))).unwrap();
    let gone = p.lumo(&["logs", &hello.id]).code(0).clone();
    assert!(gone.stderr.contains("not stored"), "{}", gone.show());
    assert!(!gone.stdout.is_empty(), "{}", gone.show());
    assert!(!p.logs(&hello.id).complete);
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

#[test]
fn a_new_manual_run_records_its_arguments_masked() {
    let p = old_store();
    let target = format!("{SECRET}-users");
    p.lumo(&[
        "run",
        "purge",
        "--env",
        "dev",
        "--arg",
        &format!("target={target}"),
        "--yes",
    ])
    .code(0);
    let history: Value = p
        .lumo(&["history", "--env", "dev", "--json", "--task", "purge"])
        .code(0)
        .json();
    let newest = &history["runs"][0];
    assert_eq!(newest["kind"], json!("task"));
    assert_eq!(
        newest["args"],
        json!({ "target": "***-users", "mode": "soft" }),
        "every argument the task got, the secret masked"
    );
    let logs: Value = p
        .lumo(&["logs", newest["id"].as_str().unwrap(), "--json"])
        .code(0)
        .json();
    assert_eq!(logs["run"]["args"], newest["args"]);
    assert_eq!(
        history["runs"][1]["args"],
        json!({}),
        "the run 15aa6e6 recorded has none"
    );
    assert!(TestProject::files_containing(&p.lumo_dir(), SECRET).is_empty());
}

#[test]
fn a_store_from_a_newer_lumo_is_refused_with_exit_4() {
    let p = old_store();
    let db = p.lumo_dir().join("lumo.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let out = p.lumo(&["history", "--env", "dev"]);
    out.code(4)
        .stderr_has(&["was written by a newer lumo;", "schema version is 999"]);
    let version: u32 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 999, "left as it was");
}

// ---- aws: items as 15aa6e6 wrote them ----

fn sv(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn nv(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

type Item = HashMap<String, AttributeValue>;

fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The items lumo 15aa6e6 wrote for a first deploy of `v1` that ran `hello`, and a lock event:
/// its record types serialized with `serde_dynamo` (camelCase, `None` as NULL, times as RFC
/// 3339) plus the keys, without the `schemaVersion`, `kind` and `args` later lumos write. The
/// run also carries an attribute no lumo knows yet.
fn items_of_15aa6e6(project: &str, hash: &str) -> (String, Vec<Item>) {
    let pk = sv(&format!("ENV#{project}#dev"));
    let (deployment, run, event) = (
        "01KBQZ6N0V6ZD5E6T6R0Y8WJ1A",
        "01KBQZ6N12C3M3JX0V4GQK5T2B",
        "01KBQZ6P0000000000000000EV",
    );
    let null = AttributeValue::Null(true);
    let bundles = AttributeValue::M(HashMap::from([("hello".to_string(), sv(hash))]));
    let items = vec![
        item(&[
            ("pk", pk.clone()),
            ("sk", sv(&format!("DEPLOY#{deployment}"))),
            ("id", sv(deployment)),
            ("project", sv(project)),
            ("env", sv("dev")),
            ("version", sv("v1")),
            ("previousVersion", null.clone()),
            ("isFirstDeploy", AttributeValue::Bool(true)),
            ("actor", sv("old-lumo")),
            ("status", sv("succeeded")),
            ("startedAt", sv("2026-12-06T10:00:00.000Z")),
            ("endedAt", sv("2026-12-06T10:00:02.000Z")),
            ("message", null.clone()),
            ("bundles", bundles.clone()),
        ]),
        item(&[
            ("pk", pk.clone()),
            ("sk", sv(&format!("RUN#{run}"))),
            ("gsi1pk", sv(&format!("TASK#{project}#dev#hello"))),
            ("gsi1sk", sv(run)),
            ("gsi2pk", sv(&format!("RUN#{run}"))),
            ("id", sv(run)),
            ("deploymentId", sv(deployment)),
            ("project", sv(project)),
            ("env", sv("dev")),
            ("task", sv("hello")),
            ("trigger", sv("deploy")),
            ("version", sv("v1")),
            ("previousVersion", null.clone()),
            ("bundleHash", sv(hash)),
            ("actor", sv("old-lumo")),
            ("status", sv("succeeded")),
            ("attempt", nv(1)),
            ("startedAt", sv("2026-12-06T10:00:01.000Z")),
            ("endedAt", sv("2026-12-06T10:00:01.500Z")),
            ("durationMs", nv(500)),
            ("exitCode", nv(0)),
            ("message", sv("hello from the old lumo")),
            ("dataRef", null.clone()),
            ("logRef", null.clone()),
            ("outputTail", sv("hello from the old lumo\n")),
            ("outputBytes", nv(24)),
            ("dataJson", sv(r#"{"greeted":1}"#)),
            ("attributeFromTheFuture", sv("ignored")),
        ]),
        item(&[
            ("pk", pk.clone()),
            ("sk", sv("STATE")),
            ("version", sv("v1")),
            ("previousVersion", null.clone()),
            ("deploymentId", sv(deployment)),
            ("deployedAt", sv("2026-12-06T10:00:02.000Z")),
            ("bundles", bundles),
        ]),
        item(&[
            ("pk", pk.clone()),
            ("sk", sv("TASK#hello")),
            ("task", sv("hello")),
            ("lastSuccessHash", sv(hash)),
            ("lastSuccessRun", sv(run)),
        ]),
        item(&[
            ("pk", pk),
            ("sk", sv(&format!("EVENT#{event}"))),
            ("id", sv(event)),
            ("project", sv(project)),
            ("env", sv("dev")),
            ("kind", sv("locked")),
            ("actor", sv("old-lumo")),
            ("at", sv("2026-12-06T09:59:00.000Z")),
            ("message", sv("reason: before the upgrade")),
        ]),
    ];
    (run.to_string(), items)
}

#[test]
fn dynamodb_items_written_by_15aa6e6_read_and_the_next_deploy_updates() {
    let a = aws_project!();
    a.config("{ hello: {}, purge: { runOn: [], args: { target: { required: true } } } }")
        .task("hello", "echo hello from the new lumo")
        .task("purge", "echo \"purging $LUMO_ARG_TARGET\"");
    // A hash as 15aa6e6 wrote one (a bundle's sha256, 64 lowercase hex digits), of a bundle
    // this lumo does not have.
    let old_hash = format!("{:0>64}", "01d");
    let (run_id, items) = items_of_15aa6e6(&a.name, &old_hash);
    block_on(async {
        let dynamo = aws_sdk_dynamodb::Client::new(&a.sdk().await);
        for item in items {
            dynamo
                .put_item()
                .table_name(&a.table)
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
    });

    let history: Value =
        a.p.lumo(&["history", "--env", "dev", "--json"])
            .code(0)
            .json();
    let runs = history["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], json!(run_id));
    assert_eq!(runs[0]["kind"], json!("task"));
    assert_eq!(runs[0]["args"], json!({}));
    assert_eq!(runs[0]["data"], json!({ "greeted": 1 }));
    assert_eq!(runs[0]["message"], json!("hello from the old lumo"));
    assert!(runs[0].get("attributeFromTheFuture").is_none());
    // A task's own history keeps runs from before `kind` was stored: they are task runs (the
    // query filters `exec` runs out, and must not filter these).
    let of_hello: Value =
        a.p.lumo(&["history", "--env", "dev", "--json", "--task", "hello"])
            .code(0)
            .json();
    assert_eq!(of_hello["runs"][0]["id"], json!(run_id), "{of_hello}");

    let status = a.p.status();
    assert_eq!(status.state.version.as_deref(), Some("v1"));
    assert_eq!(status.recent_events[0].kind, "locked");
    assert_eq!(status.last_deployment.unwrap().version, "v1");
    let logs = a.p.logs(&run_id);
    assert_eq!(logs.run.trigger, Trigger::Deploy);
    assert!(!logs.complete, "15aa6e6 wrote no log for this run");

    let report = a.p.deploy(&["--deploy-version", "v2"], 0);
    assert!(!report.is_first_deploy);
    assert_eq!(report.previous_version.as_deref(), Some("v1"));
    assert_eq!(report.task("hello").status, RunStatus::Succeeded);
    a.p.lumo(&[
        "run",
        "purge",
        "--env",
        "dev",
        "--arg",
        "target=tok-9f8e7d6c5b-users",
    ])
    .code(0);

    // What this lumo wrote carries its item version and the masked arguments; the old items
    // were left as they were.
    let items = a.items();
    let sk_of = |i: &Item| match i.get("sk") {
        Some(AttributeValue::S(sk)) => sk.clone(),
        _ => String::new(),
    };
    let old_run = items
        .iter()
        .find(|i| sk_of(i) == format!("RUN#{run_id}"))
        .unwrap();
    assert!(!old_run.contains_key("schemaVersion"));
    let purge = items
        .iter()
        .find(|i| sk_of(i).starts_with("RUN#") && i.get("task") == Some(&sv("purge")))
        .unwrap();
    assert_eq!(purge.get("schemaVersion"), Some(&nv(4)));
    assert_eq!(
        purge.get("args"),
        Some(&AttributeValue::M(HashMap::from([(
            "target".to_string(),
            sv("***-users")
        )])))
    );
    for i in items.iter().filter(|i| {
        let sk = sk_of(i);
        sk.starts_with("DEPLOY#") && !sk.ends_with("Z6N0V6ZD5E6T6R0Y8WJ1A")
            || sk == "STATE"
            || sk.starts_with("EVENT#") && !sk.ends_with("EV")
    }) {
        assert_eq!(i.get("schemaVersion"), Some(&nv(4)), "{i:?}");
    }
}

// ---- local: a store of version 2, as 6dd7867 wrote it ----

/// A temp project holding the version-2 fixture (`store-v2-6dd7867`).
fn v2_store() -> TestProject {
    let p = TestProject::new();
    let fixture = fixture_dir().with_file_name("store-v2-6dd7867");
    copy_tree(&fixture.join("project"), p.root());
    copy_tree(&fixture.join("lumo-dir"), &p.lumo_dir());
    p
}

/// Its history reads as 6dd7867 showed it (plus `command`, none for its runs), an `exec` is
/// recorded beside its runs with its masked command, and the next deploy updates from `v2`.
#[test]
fn a_store_of_version_2_reads_takes_an_exec_and_updates() {
    let p = v2_store();
    let history: Value = p
        .lumo(&["history", "--env", "dev", "--json", "--limit", "1000"])
        .code(0)
        .json();
    let mut runs = history["runs"].clone();
    for run in runs.as_array_mut().unwrap() {
        let command = run.as_object_mut().unwrap().remove("command");
        assert_eq!(command, Some(Value::Null), "a run of 6dd7867 is no `exec`");
        let from_source = run.as_object_mut().unwrap().remove("fromSource");
        assert_eq!(from_source, Some(Value::Bool(false)));
        *run = as_recorded(run.take());
    }
    let fixture = fixture_dir().with_file_name("store-v2-6dd7867");
    let old: Value =
        serde_json::from_str(&fs::read_to_string(fixture.join("expected/history.json")).unwrap())
            .unwrap();
    assert_eq!(runs, old["runs"]);

    let exec: Value = p
        .lumo(&[
            "exec", "--env", "dev", "--yes", "--json", "--", "echo", SECRET,
        ])
        .code(0)
        .json();
    assert_eq!(exec["kind"], json!("exec"));
    assert_eq!(exec["command"], json!(["echo", "***"]));
    let report = p.deploy(&["--deploy-version", "v3"], 0);
    assert_eq!(report.previous_version.as_deref(), Some("v2"));
    let history = p.history();
    assert_eq!(
        history.len(),
        5,
        "3 old runs, the exec and the update's run"
    );
    assert!(TestProject::files_containing(&p.lumo_dir(), SECRET).is_empty());
}
