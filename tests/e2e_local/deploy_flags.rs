//! Deploy flags: `--dry-run`, `--only`, `--concurrency`, `--quiet`.

use crate::support::local::RECORDER;
use crate::support::{RunStatus, TestProject};
use crate::text_output::snapshot;

#[test]
fn dry_run_says_why_each_task_runs_or_not_and_changes_nothing() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'dry',
          tasks: { migrate: {}, 'first-only': { runOn: ['deploy'] }, seed: { runOn: ['change'] }, purge: { runOn: [] } },
        };"#,
    );
    for name in ["migrate", "first-only", "seed", "purge"] {
        p.task(name, RECORDER);
    }

    let dry = p.deploy(&["--dry-run", "--deploy-version", "v1"], 0);
    assert!(dry.dry_run);
    assert_eq!((dry.status, dry.deployment_id.as_deref()), (None, None));
    assert!(dry.is_first_deploy);
    assert_eq!(
        dry.with_status(RunStatus::WouldRun),
        ["migrate", "first-only", "seed"]
    );
    assert_eq!(dry.with_status(RunStatus::NotRun), ["purge"]);
    assert!(
        dry.task("migrate").reason.contains("first deploy"),
        "{:?}",
        dry.task("migrate")
    );
    assert!(
        dry.task("seed").reason.contains("change"),
        "{:?}",
        dry.task("seed")
    );
    assert!(dry.task("purge").reason.contains("manual only"));
    // "Dry run: …" and each task's decision with its reason, `purge` "manual only".
    let text = p
        .lumo(&["deploy", "--env", "dev", "--dry-run"])
        .code(0)
        .clone();
    snapshot(&p, "dry_run_first_deploy", &text);

    assert!(
        ["migrate", "first-only", "seed"]
            .iter()
            .all(|t| !p.has_out(&format!("{t}.log"))),
        "nothing ran"
    );
    // Regression: a dry run used to leave `.lumo/` behind (bundles and an empty store); so did
    // `status` and `history` on a project never deployed.
    let status = p.status();
    assert!(p.history().is_empty());
    assert!(!p.lumo_dir().exists(), "a dry run or a read wrote `.lumo/`");
    assert!(status.last_deployment.is_none(), "no deployment recorded");
    assert_eq!(status.state.version, None);
    assert!(p.history().is_empty());

    p.deploy(&["--deploy-version", "v1"], 0);
    let dry = p.deploy(&["--dry-run", "--deploy-version", "v2"], 0);
    assert!(!dry.is_first_deploy);
    assert_eq!(dry.previous_version.as_deref(), Some("v1"));
    assert_eq!(dry.with_status(RunStatus::WouldRun), ["migrate"]);
    assert!(
        dry.task("migrate").reason.contains("update from `v1`"),
        "{:?}",
        dry.task("migrate")
    );
    assert!(
        dry.task("first-only").reason.contains("update"),
        "{:?}",
        dry.task("first-only")
    );
    assert!(
        dry.task("seed").reason.contains("unchanged"),
        "{:?}",
        dry.task("seed")
    );
    // A changed task is told from its new bundle, built aside: the project's bundles and
    // their cache are as the deploy left them.
    let bundles = |p: &TestProject| {
        let mut names: Vec<_> = std::fs::read_dir(p.lumo_dir().join("bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        // Absent when the files were too new to be cached, as here.
        let cache = std::fs::read(p.lumo_dir().join("bundle-cache.json")).ok();
        (names, cache)
    };
    let deployed = bundles(&p);
    p.task("seed", &format!("{RECORDER}\n# changed\n"));
    let dry = p.deploy(&["--dry-run", "--deploy-version", "v2"], 0);
    assert_eq!(dry.with_status(RunStatus::WouldRun), ["migrate", "seed"]);
    assert!(
        dry.task("seed").reason.contains("changed"),
        "{:?}",
        dry.task("seed")
    );
    assert!(bundles(&p) == deployed, "a dry run changed `.lumo/bundles`");
    let status = p.status();
    assert_eq!(status.state.version.as_deref(), Some("v1"));
    assert_eq!(
        status.last_deployment.map(|d| d.version),
        Some("v1".to_string())
    );
    assert_eq!(p.history().len(), 3);
}

#[test]
fn only_limits_the_deploy_and_an_unknown_name_gets_a_suggestion() {
    let p = TestProject::new();
    p.config("export default { projectName: 'only', tasks: { migrate: {}, 'warm-cache': {}, notify: {} } };");
    for name in ["migrate", "warm-cache", "notify"] {
        p.task(name, RECORDER);
    }
    let unknown = p
        .lumo(&["deploy", "--env", "dev", "--only", "warm-cach"])
        .code(2)
        .clone();
    unknown.stderr_has(&["warm-cach", "did you mean `warm-cache`?"]);
    assert!(!p.lumo_dir().exists(), "an invalid `--only` writes nothing");

    let report = p.deploy(&["--only", "warm-cache,notify"], 0);
    assert_eq!(
        report.with_status(RunStatus::Succeeded),
        ["warm-cache", "notify"]
    );
    assert_eq!(report.with_status(RunStatus::NotRun), ["migrate"]);
    assert!(
        report.task("migrate").reason.contains("--only"),
        "{:?}",
        report.task("migrate")
    );
    assert!(!p.has_out("migrate.log"));
    assert_eq!(p.out_lines("notify.log"), ["deploy"]);
}

#[test]
fn concurrency_runs_independent_tasks_side_by_side_and_respects_depends_on() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'parallel',
          tasks: { 'slow-a': {}, 'slow-b': {}, 'after-a': { dependsOn: ['slow-a'] } },
        };"#,
    );
    let body = r#"date +%s%N > "@OUT@/$LUMO_TASK.start"
sleep 0.7
date +%s%N > "@OUT@/$LUMO_TASK.end""#;
    for name in ["slow-a", "slow-b", "after-a"] {
        p.task(name, body);
    }
    p.deploy(&["--concurrency", "2"], 0);
    let time = |task: &str, edge: &str| -> u128 {
        p.read_out(&format!("{task}.{edge}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (a, b, after) = (
        (time("slow-a", "start"), time("slow-a", "end")),
        (time("slow-b", "start"), time("slow-b", "end")),
        time("after-a", "start"),
    );
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "slow-a {a:?} and slow-b {b:?} overlap"
    );
    assert!(
        after >= a.1,
        "after-a started at {after}, before slow-a ended at {}",
        a.1
    );

    let runs = p.history();
    assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
}

#[test]
fn quiet_hides_task_output_and_progress() {
    let p = TestProject::new();
    p.config("export default { projectName: 'quiet', tasks: { hello: {} } };");
    p.task("hello", "echo 'hello-marker-line'");
    let loud = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    loud.stderr_has(&["hello-marker-line"]);
    let quiet = p
        .lumo(&["deploy", "--env", "dev", "--quiet"])
        .code(0)
        .clone();
    assert!(
        !quiet.stderr.contains("hello-marker-line"),
        "{}",
        quiet.show()
    );
    assert!(
        quiet.stderr.trim().is_empty(),
        "nothing but errors on stderr with --quiet:\n{}",
        quiet.stderr
    );
    assert!(
        quiet.stdout.contains("succeeded"),
        "the result is still printed"
    );
    // The output is still recorded.
    let run = &p.history()[1];
    let logs = p.lumo(&["logs", &run.id]).code(0).clone();
    assert_eq!(logs.stdout, "hello-marker-line\n");
}
