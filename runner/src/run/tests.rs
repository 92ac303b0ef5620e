//! `run_bundle` end to end: a real zip, verified, unpacked, run, and cleaned up.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::bundle::tests::{ZipItem, manifest_json, write_zip};
use crate::contract::{DeploymentInfo, Entry, MANIFEST_PATH, RunStatus, TaskContext, Trigger};
use crate::executor::DiscardOutput;

fn bundle_run(dir: &Path, entry: Entry, files: &[(&str, &[u8], u32)]) -> BundleRun {
    let zip = dir.join("bundle.zip");
    let manifest = manifest_json(&entry);
    let mut items = vec![ZipItem::File {
        name: MANIFEST_PATH,
        body: &manifest,
        mode: 0o644,
    }];
    for (name, body, mode) in files {
        items.push(ZipItem::File {
            name,
            body,
            mode: *mode,
        });
    }
    write_zip(&zip, &items);
    let sha256 = bundle::sha256_file(&zip).unwrap();
    let context = TaskContext {
        deployment: DeploymentInfo {
            is_first_deploy: false,
            previous_version: Some("v1".into()),
            environment: "prod".into(),
            version: "v2".into(),
        },
        config: json!({}),
        args: BTreeMap::new(),
        working_directory: String::new(),
        task: "t".into(),
        run_id: "run-1".into(),
        trigger: Trigger::Update,
    };
    BundleRun {
        spec: TaskSpec::new(context, Duration::from_secs(20)),
        bundle: Some(BundleFile {
            zip,
            hash: BundleHash::parse(&sha256).unwrap(),
            stat: None,
        }),
        work_root: dir.join("runs"),
        kill_grace: Duration::from_millis(300),
        log_file: None,
        stop: None,
        unpack_cache: None,
    }
}

#[tokio::test]
async fn runs_the_bundle_entry_in_its_unpacked_directory_then_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let script = b"#!/bin/sh\nread -r ctx\necho \"$ctx\" > \"$LUMO_CONTEXT_FILE.copy\"\ncat migrations/0001.sql\npwd\n";
    let mut run = bundle_run(
        dir.path(),
        Entry::Program("run.sh".into()),
        &[
            ("run.sh", script, 0o755),
            ("migrations/0001.sql", b"create table t();\n", 0o644),
        ],
    );
    run.log_file = Some(dir.path().join("run.log"));
    let mut seen = Vec::new();
    let outcome = run_bundle(run, &mut seen).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let seen = String::from_utf8(seen).unwrap();
    let bundle_dir = fs::canonicalize(dir.path().join("runs"))
        .unwrap()
        .join("run-1/bundle");
    assert_eq!(
        seen,
        format!("create table t();\n{}\n", bundle_dir.display())
    );
    assert_eq!(outcome.message, bundle_dir.display().to_string());
    assert_eq!(
        fs::read_to_string(dir.path().join("run.log")).unwrap(),
        seen
    );
    // The run directory is gone, the work root stays.
    assert!(!dir.path().join("runs/run-1").exists());
    assert!(dir.path().join("runs").exists());
}

#[tokio::test]
async fn context_names_the_absolute_bundle_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = bundle_run(
        dir.path(),
        Entry::Command("cat > ../../context-seen.json".into()),
        &[],
    );
    let outcome = run_bundle(run, &mut DiscardOutput).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let seen: TaskContext =
        serde_json::from_slice(&fs::read(dir.path().join("runs/context-seen.json")).unwrap())
            .unwrap();
    let expected = fs::canonicalize(dir.path().join("runs"))
        .unwrap()
        .join("run-1/bundle");
    assert_eq!(Path::new(&seen.working_directory), expected);
    assert_eq!(seen.trigger, Trigger::Update);
    assert_eq!(seen.deployment.previous_version.as_deref(), Some("v1"));
}

#[tokio::test]
async fn sha_mismatch_refuses_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = bundle_run(dir.path(), Entry::Command("touch ../../ran".into()), &[]);
    let bundle = run.bundle.as_mut().unwrap();
    let actual = bundle.hash.to_string();
    bundle.hash = BundleHash::parse(&"0".repeat(64)).unwrap();
    let err = run_bundle(run, &mut DiscardOutput).await.unwrap_err();
    match &err {
        RunnerError::HashMismatch {
            expected,
            actual: a,
            ..
        } => {
            assert_eq!(expected, &"0".repeat(64));
            assert_eq!(a, &actual);
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains("bundle.zip"), "{err}");
    assert!(!dir.path().join("runs/ran").exists());
    assert!(!dir.path().join("runs/run-1").exists());
}

#[tokio::test]
async fn an_unsafe_bundle_is_an_error_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = bundle_run(
        dir.path(),
        Entry::Command("touch ../../ran".into()),
        &[("../evil.sh", b"#!/bin/sh\n", 0o755)],
    );
    let err = run_bundle(run, &mut DiscardOutput).await.unwrap_err();
    assert!(
        matches!(err, RunnerError::Bundle(BundleError::UnsafeEntry { .. })),
        "{err}"
    );
    assert!(!dir.path().join("runs/ran").exists());
    assert!(!dir.path().join("runs/evil.sh").exists());
    assert!(!dir.path().join("runs/run-1").exists());
}

#[tokio::test]
async fn a_run_id_that_is_not_one_path_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = bundle_run(dir.path(), Entry::Command("true".into()), &[]);
    run.spec.context.run_id = "../escape".into();
    let err = run_bundle(run, &mut DiscardOutput).await.unwrap_err();
    assert!(matches!(err, RunnerError::InvalidRunId { .. }), "{err}");
}

#[tokio::test]
async fn a_failing_task_still_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = bundle_run(dir.path(), Entry::Command("echo nope; exit 7".into()), &[]);
    // Leftovers of an earlier attempt with the same id are cleared first.
    fs::create_dir_all(dir.path().join("runs/run-1/bundle/stale")).unwrap();
    run.spec.secrets.insert("TOKEN".into(), "nope".into());
    let outcome = run_bundle(run, &mut DiscardOutput).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.message, "exit code 7: ***");
    assert!(!dir.path().join("runs/run-1").exists());
}

/// `lumo exec --in TASK`: the command runs in the task's unpacked bundle instead of its entry,
/// with the run's secrets masked and an empty stdin (not the context).
#[tokio::test]
async fn an_argv_runs_instead_of_the_entry_inside_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = bundle_run(
        dir.path(),
        Entry::Command("touch ../../entry-ran".into()),
        &[
            ("migrations/0001.sql", b"select 1;", 0o644),
            ("bin/status", b"#!/bin/sh\necho \"status of $1\"\n", 0o755),
        ],
    );
    run.spec.secrets.insert("TOKEN".into(), "hush-42".into());
    run.spec.argv = Some(vec![
        "sh".into(),
        "-c".into(),
        "./bin/status db; cat migrations/0001.sql; echo \"token $TOKEN\"; wc -c; pwd".into(),
    ]);
    let mut seen = Vec::new();
    let outcome = run_bundle(run, &mut seen).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let seen = String::from_utf8(seen).unwrap();
    let bundle_dir = fs::canonicalize(dir.path().join("runs"))
        .unwrap()
        .join("run-1/bundle");
    assert_eq!(
        seen,
        format!(
            "status of db\nselect 1;token ***\n0\n{}\n",
            bundle_dir.display()
        ),
        "stdin is empty: `wc -c` counts 0"
    );
    assert!(
        !dir.path().join("entry-ran").exists(),
        "the entry did not run"
    );
    assert!(!dir.path().join("runs/run-1").exists());
}

/// `lumo exec` without `--in`: no bundle, an empty working directory, removed afterwards; a
/// program named by a relative path is the working directory's, a bare name is found on PATH.
#[tokio::test]
async fn an_argv_without_a_bundle_runs_in_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = bundle_run(dir.path(), Entry::Command("true".into()), &[]);
    run.bundle = None;
    run.spec.argv = Some(vec!["sh".into(), "-c".into(), "ls -A; pwd; exit 3".into()]);
    let mut seen = Vec::new();
    let outcome = run_bundle(run.clone(), &mut seen).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, Some(3));
    let work = fs::canonicalize(dir.path().join("runs"))
        .unwrap()
        .join("run-1/work");
    assert_eq!(
        String::from_utf8(seen).unwrap(),
        format!("{}\n", work.display())
    );
    assert!(!dir.path().join("runs/run-1").exists());

    run.spec.argv = Some(vec!["./missing".into()]);
    let outcome = run_bundle(run.clone(), &mut DiscardOutput).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome.message.contains("No such file"),
        "{}",
        outcome.message
    );

    run.spec.argv = Some(vec!["no-such-program-lumo".into()]);
    let outcome = run_bundle(run.clone(), &mut DiscardOutput).await.unwrap();
    assert!(
        outcome.message.contains("not on the runner's `PATH`"),
        "{}",
        outcome.message
    );

    run.spec.argv = None;
    let err = run_bundle(run, &mut DiscardOutput).await.unwrap_err();
    assert!(matches!(err, RunnerError::NothingToRun), "{err}");
}

/// A run of the script `run.sh` from a tree kept in `dir/unpacked`.
fn kept_tree_run(dir: &Path, script: &[u8]) -> BundleRun {
    let mut run = bundle_run(
        dir,
        Entry::Program("run.sh".into()),
        &[("run.sh", script, 0o755)],
    );
    run.unpack_cache = Some(UnpackCache::new(dir.join("unpacked")));
    run
}

#[tokio::test]
async fn a_work_root_removed_between_runs_is_made_again() {
    // A work root removed between two runs (by hand, by a task) is made again for the next,
    // which can then write its result there.
    let dir = tempfile::tempdir().unwrap();
    let script = b"#!/bin/sh\n\
        echo '{\"success\":true,\"message\":\"from the result\"}' > \"$LUMO_RESULT_FILE\"\n";
    let run = kept_tree_run(dir.path(), script);
    for round in 0..3 {
        let outcome = run_bundle(run.clone(), &mut Vec::new()).await.unwrap();
        assert_eq!(
            outcome.status,
            RunStatus::Succeeded,
            "round {round}: {outcome:?}"
        );
        assert_eq!(outcome.message, "from the result", "round {round}");
        fs::remove_dir_all(&run.work_root).unwrap();
    }
}

/// A run from a kept tree makes no directory of its own: its result file sits in the work root
/// named after the run, its context is in memory (readable by the task and what it starts, for
/// as long as the run lasts), and everything named after the run is gone when it ends, what the
/// task wrote beside its result included. Another run's files there are left alone.
#[tokio::test]
async fn a_run_from_a_kept_tree_creates_no_directory_and_leaves_nothing_in_the_work_root() {
    let dir = tempfile::tempdir().unwrap();
    let script = b"#!/bin/sh\n\
        echo \"$LUMO_CONTEXT_FILE\"\n\
        echo \"$LUMO_RESULT_FILE\"\n\
        sh -c 'grep -q \"\\\"runId\\\":\\\"run-1\\\"\" \"$LUMO_CONTEXT_FILE\"' || exit 9\n\
        cmp -s - \"$LUMO_CONTEXT_FILE\" || exit 8\n\
        { echo changed >&0; } 2>/dev/null && exit 7\n\
        echo half > \"$LUMO_RESULT_FILE.tmp\"\n\
        echo '{\"success\":true,\"message\":\"from the result\"}' > \"$LUMO_RESULT_FILE\"\n";
    let run = kept_tree_run(dir.path(), script);
    let work_root = dir.path().join("runs");
    fs::create_dir_all(&work_root).unwrap();
    // Another run's scratch file, and one whose id starts with this one's.
    fs::write(work_root.join("run-2.result.json"), "{}").unwrap();
    fs::write(work_root.join("run-10.result.json"), "{}").unwrap();
    for _ in 0..2 {
        let mut seen = Vec::new();
        let outcome = run_bundle(run.clone(), &mut seen).await.unwrap();
        assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
        assert_eq!(outcome.message, "from the result");
        let seen = String::from_utf8(seen).unwrap();
        let (context_file, result_file) = seen.trim_end().split_once('\n').unwrap();
        let root = std::path::absolute(&work_root).unwrap();
        assert_eq!(
            result_file,
            root.join("run-1.result.json").to_str().unwrap()
        );
        assert!(
            !Path::new(context_file).starts_with(dir.path()),
            "{context_file}"
        );
        assert!(
            fs::read(context_file).map_or(true, |left| !left.contains(&b'{')),
            "{context_file} is emptied with the run"
        );
        let mut left: Vec<_> = fs::read_dir(&work_root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["run-10.result.json", "run-2.result.json"]);
    }
}
