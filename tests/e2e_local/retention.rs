//! Retention (`retention` in the config, `lumo prune`): old logs and unused bundles leave
//! `.lumo/`, what the current deployment and the kept runs need stays, `--dry-run` changes
//! nothing, and a bad `retention` is a config error naming the key.

use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::support::TestProject;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PruneReport {
    dry_run: bool,
    logs: Vec<Removal>,
    bundles: Vec<Removal>,
    kept_logs: usize,
    kept_bundles: usize,
}

#[derive(Debug, Deserialize)]
struct Removal {
    path: String,
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Ages a file past the hour a fresh bundle is protected for (a deploy may not have recorded
/// it yet).
fn age(path: &Path) {
    let ok = std::process::Command::new("touch")
        .args(["-d", "3 hours ago"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn prune_removes_old_logs_and_unused_bundles_and_keeps_what_is_needed() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'retained', retention: { runs: 2, days: 30 },
           tasks: { t: { runOn: ['deploy', 'update'] } } };",
    );
    p.task("t", "echo first bundle");
    p.deploy(&["--deploy-version", "v1"], 0);
    let old_bundle = p.history()[0].bundle_hash.clone();
    p.task("t", "echo second bundle");
    p.deploy(&["--deploy-version", "v2"], 0);
    for _ in 0..3 {
        p.lumo(&["run", "t", "--env", "dev"]).code(0);
    }
    let runs = p.history();
    assert_eq!(runs.len(), 5);
    let current_bundle = runs[4].bundle_hash.clone();
    assert_ne!(old_bundle, current_bundle);
    let bundles = p.lumo_dir().join("bundles");
    let logs = p.lumo_dir().join("logs");
    for name in files(&bundles) {
        age(&bundles.join(name));
    }
    let before = (files(&logs), files(&bundles));
    assert_eq!(before.0.len(), 5, "{before:?}");

    let dry: PruneReport = p.lumo(&["prune", "--dry-run", "--json"]).code(0).json();
    assert!(dry.dry_run);
    let expected_logs: Vec<String> = runs[..3]
        .iter()
        .map(|r| format!("logs/{}.log", r.id))
        .collect();
    let listed: Vec<&str> = dry.logs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(listed, expected_logs, "the three oldest runs' logs");
    let listed: Vec<&str> = dry.bundles.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(listed, [format!("bundles/{old_bundle}.zip")]);
    assert_eq!((dry.kept_logs, dry.kept_bundles), (2, 1));
    assert_eq!(
        (files(&logs), files(&bundles)),
        before,
        "--dry-run changed nothing"
    );
    let text = p.lumo(&["prune", "--dry-run"]).code(0).stdout.clone();
    for fragment in [
        "Would remove 3 log(s)",
        "1 bundle(s)",
        "nothing was removed",
    ] {
        assert!(text.contains(fragment), "{text}");
    }

    let done: PruneReport = p.lumo(&["prune", "--json"]).code(0).json();
    assert!(!done.dry_run && done.logs.len() == 3 && done.bundles.len() == 1);
    let kept_logs: Vec<String> = runs[3..].iter().map(|r| format!("{}.log", r.id)).collect();
    assert_eq!(files(&logs), kept_logs);
    assert_eq!(files(&bundles), [format!("{current_bundle}.zip")]);
    // History rows stay; the current deployment still runs; a second prune finds nothing.
    assert_eq!(p.history().len(), 5);
    p.lumo(&["run", "t", "--env", "dev"]).code(0);
    let again: PruneReport = p.lumo(&["prune", "--json"]).code(0).json();
    assert_eq!(again.bundles.len(), 0);
    assert_eq!(again.logs.len(), 1, "the run just made pushes one more out");
}

#[test]
fn a_bad_retention_is_a_config_error_naming_the_key() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'retained', retention: { runs: 0, dayz: 30 }, tasks: {} };",
    );
    p.lumo(&["prune"]).code(2).stderr_has(&[
        "retention.runs",
        "from 1 to 1000000, got 0",
        "retention.dayz",
        "did you mean `days`",
    ]);
}
