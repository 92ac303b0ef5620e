//! Getting started: `lumo init` and `lumo build` (a scaffold that deploys, is never overwritten
//! and leaves nothing behind when it fails; zips whose SHA-256 is the printed hash, built
//! reproducibly), and `lumo completions` for the shell.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::{BuildReport, DeploymentStatus, InitReport, RunStatus, TestProject};
use crate::text_output::snapshot;

#[test]
fn init_in_an_empty_directory_then_deploy_works() {
    let p = TestProject::new();
    // What was created, and the next step: `lumo deploy --env dev`.
    let init = p.lumo(&["init"]).code(0).clone();
    snapshot(&p, "init", &init);
    assert!(p.root().join("lumo.config.js").is_file());
    let report = p.deploy(&[], 0);
    assert_eq!(report.status, Some(DeploymentStatus::Succeeded));
    assert_eq!(report.project, "project", "named after the directory");
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.status == RunStatus::Succeeded)
            && !report.tasks.is_empty()
    );
    let gitignore = fs::read_to_string(p.root().join(".gitignore")).unwrap();
    assert!(
        gitignore.lines().any(|l| l.trim() == ".lumo/"),
        "{gitignore}"
    );
}

#[test]
fn init_twice_refuses_and_overwrites_nothing() {
    let p = TestProject::new();
    p.lumo(&["init"]).code(0);
    let config = p.root().join("lumo.config.js");
    fs::write(
        &config,
        "// edited by hand\nexport default { projectName: 'mine' };\n",
    )
    .unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = walk(dir)
            .into_iter()
            .map(|f| (f.clone(), fs::read(&f).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(p.root());
    let again = p.lumo(&["init"]).code(2).clone();
    again.stderr_has(&["already exists"]);
    let error = p.lumo(&["init", "--json"]).code(2).json_error();
    assert!(error.message.contains("lumo.config.js"));
    assert_eq!(snapshot(p.root()), before, "nothing was touched");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn build_out_writes_zips_whose_sha256_is_the_printed_hash_and_is_reproducible() {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'build',
          tasks: { migrate: { copyAssets: [{ from: 'migrations' }] }, report: { command: 'du -sk .' } },
        };"#,
    )
    .write("migrations/0001.sql", "create table a (id int);")
    .write("migrations/0002.sql", "create table b (id int);")
    .task("migrate", "echo migrate")
    .executable("functions/tasks/db/seed.sh", "#!/bin/sh\necho seed\n");

    let out_dir = p.tmp().join("dist");
    let first: BuildReport = p
        .lumo(&["build", "--out", out_dir.to_str().unwrap(), "--json"])
        .code(0)
        .json();
    let names: Vec<&str> = first.bundles.iter().map(|b| b.task.as_str()).collect();
    assert_eq!(names, ["migrate", "report", "db/seed"]);
    for bundle in &first.bundles {
        let zip = out_dir.join(format!("{}.zip", bundle.task));
        let bytes = fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, bundle.sha256, "sha256 of {}", zip.display());
        assert_eq!(bytes.len() as u64, bundle.size);
    }
    let migrate = &first.bundles[0];
    assert!(
        migrate.files >= 3 && migrate.unpacked_size > 0,
        "{migrate:?}"
    );

    // Touch every input (new mtimes, same bytes): the same hashes.
    std::thread::sleep(Duration::from_millis(1100));
    p.write("migrations/0001.sql", "create table a (id int);");
    p.task("migrate", "echo migrate");
    let text = p.lumo(&["build"]).code(0).clone();
    let second: BuildReport = p.lumo(&["build", "--json"]).code(0).json();
    for (a, b) in first.bundles.iter().zip(&second.bundles) {
        assert_eq!((&a.task, &a.sha256), (&b.task, &b.sha256));
        assert!(
            text.stdout.contains(&a.sha256),
            "the text output shows {}",
            a.sha256
        );
    }
    // A fresh copy of the project in another directory builds the same bytes too.
    let copy = TestProject::new();
    copy.config(&fs::read_to_string(p.root().join("lumo.config.js")).unwrap())
        .write("migrations/0001.sql", "create table a (id int);")
        .write("migrations/0002.sql", "create table b (id int);")
        .task("migrate", "echo migrate")
        .executable("functions/tasks/db/seed.sh", "#!/bin/sh\necho seed\n");
    let third: BuildReport = copy.lumo(&["build", "--json"]).code(0).json();
    let hashes = |r: &BuildReport| {
        r.bundles
            .iter()
            .map(|b| b.sha256.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&first), hashes(&third));
}

/// Regression: `lumo init` that failed to write `.gitignore` (a directory) exited 4 but left
/// `lumo.config.js` and `functions/tasks/hello.sh` behind, so a second `lumo init` refused.
/// A failure now leaves the directory as it was.
#[test]
fn a_failed_init_leaves_nothing_behind() {
    let p = TestProject::new();
    let dir = p.tmp().join("fresh");
    fs::create_dir_all(dir.join(".gitignore")).unwrap();
    p.lumo_in(&dir, &["init"])
        .code(4)
        .stderr_has(&["/.gitignore`", "Is a directory"]);
    let left = || {
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(left(), [".gitignore"]);

    // A failure after the first file is written (here `functions` is a file) removes it again.
    fs::remove_dir(dir.join(".gitignore")).unwrap();
    fs::write(dir.join("functions"), "not a directory").unwrap();
    p.lumo_in(&dir, &["init"])
        .code(4)
        .stderr_has(&["functions"]);
    assert_eq!(left(), ["functions"]);

    fs::remove_file(dir.join("functions")).unwrap();
    let init: InitReport = p.lumo_in(&dir, &["init", "--json"]).code(0).json();
    assert_eq!(init.created.len(), 3, "{init:?}");
    assert_eq!(left(), [".gitignore", "functions", "lumo.config.js"]);
}

/// `lumo completions bash|zsh|fish` prints a script for that shell naming lumo's commands and
/// flags (generated from the same definition lumo parses with); another shell is a usage error.
#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    let p = TestProject::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef lumo"),
        ("fish", "complete -c lumo"),
    ] {
        let out = p.lumo(&["completions", shell]).code(0).clone();
        assert!(out.stdout.contains(marker), "{shell}: {}", out.show());
        for word in ["deploy", "logs", "tail", "provider"] {
            assert!(out.stdout.contains(word), "{shell} completes {word}");
        }
        assert!(out.stderr.is_empty(), "{}", out.show());
    }
    p.lumo(&["completions", "powershell"])
        .code(2)
        .clone()
        .stderr_has(&["bash", "zsh", "fish"]);
}
