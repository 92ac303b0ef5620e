//! What the caches behind a fast redeploy and a fast rerun must never change: a run sees its
//! bundle exactly as built, whatever an earlier run did to its working directory, and a
//! redeploy that reuses a bundle deploys the same bytes a cold build makes.

use crate::support::TestProject;

const CONFIG: &str = r#"export default {
  projectName: 'caches',
  tasks: {
    edit: { runOn: [], copyAssets: [{ from: 'data', to: 'data' }] },
  },
};"#;

/// Regression guard for the kept unpacked bundle (`.lumo/unpacked/`): a run that rewrites a
/// bundled file in place (same size, mtime restored), adds a file and chmods another must leave
/// the next run an untouched bundle, and so must a run that changes nothing.
#[test]
fn a_runs_changes_to_its_working_directory_never_reach_the_next_run() {
    let p = TestProject::new();
    p.config(CONFIG).write("data/seed.txt", "original").task(
        "edit",
        r#"{ cat data/seed.txt; echo; ls; ls -l edit.sh | cut -c1-10; } >> "@OUT@/seen.txt"
echo "--" >> "@OUT@/seen.txt"
if [ "${EDIT:-}" = 1 ]; then
  touch -r data/seed.txt ref.stamp
  printf 'CHANGED!' > data/seed.txt
  touch -r ref.stamp data/seed.txt
  rm ref.stamp
  echo extra > extra.txt
  chmod 600 edit.sh
fi"#,
    );
    p.deploy(&[], 0);
    let first = run_and_read(&p, &[("EDIT", "1")]);
    for env in [&[("EDIT", "1")][..], &[], &[]] {
        let seen = run_and_read(&p, env);
        assert_eq!(seen, first, "a later run saw another bundle");
    }
    assert!(first.contains("original"), "{first}");
    assert!(!first.contains("extra.txt"), "{first}");
    assert!(first.contains("-rwxr-xr-x"), "{first}");
}

fn run_and_read(p: &TestProject, env: &[(&str, &str)]) -> String {
    let _ = std::fs::remove_file(p.out().join("seen.txt"));
    p.lumo_with_env(&["run", "edit", "--env", "dev"], env)
        .code(0);
    p.read_out("seen.txt")
}

/// The stat cache (`.lumo/bundle-cache.json`): an unchanged redeploy reuses the bundle (and
/// says so in the debug log), an edit with the file's size and mtime restored is still seen,
/// and the bundle then deployed is byte for byte the one a build without the cache makes.
#[test]
fn a_redeploy_reuses_an_unchanged_bundle_and_rebuilds_a_changed_one_as_a_cold_build_would() {
    let p = TestProject::new();
    p.config(CONFIG)
        .write("data/seed.txt", "original")
        .task("edit", "true");
    // Files changed in the last 2 s are not cached (their next change might not show yet).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let debug = [("LUMO_LOG", "lumo=debug")];
    let hash = |out: &crate::support::Outcome| -> String {
        let report: serde_json::Value = out.json();
        report["bundles"][0]["sha256"].as_str().unwrap().to_string()
    };
    let cold = p
        .lumo_with_env(&["build", "--json"], &debug)
        .code(0)
        .clone();
    assert!(!cold.show().contains("reused"), "{}", cold.show());
    let warm = p
        .lumo_with_env(&["build", "--json"], &debug)
        .code(0)
        .clone();
    assert!(
        warm.show().contains("inputs unchanged, bundle"),
        "{}",
        warm.show()
    );
    assert_eq!(hash(&warm), hash(&cold));

    let seed = p.root().join("data/seed.txt");
    let mtime = std::fs::metadata(&seed).unwrap().modified().unwrap();
    std::fs::write(&seed, "CHANGED!").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&seed)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let edited = p
        .lumo_with_env(&["build", "--json"], &debug)
        .code(0)
        .clone();
    assert!(
        !edited.show().contains("inputs unchanged"),
        "{}",
        edited.show()
    );
    assert_ne!(hash(&edited), hash(&cold));
    std::fs::remove_file(p.lumo_dir().join("bundle-cache.json")).unwrap();
    let without_cache = p.lumo(&["build", "--json"]).code(0).clone();
    assert_eq!(hash(&without_cache), hash(&edited));
}
