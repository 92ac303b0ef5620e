//! Task scripts and checks shared by several topic modules of `e2e_local`: a task that records
//! what it was handed, one that records that it ran, and the check that a broken config is
//! refused the same way in text and JSON without writing anything.

use std::fs;
use std::path::Path;

use super::{TaskContext, TestProject};

/// A task that records everything it is handed, by trigger: stdin, the context file, the
/// `LUMO_*` variables and its own env, its working directory and the files in it.
pub const OBSERVER: &str = r#"
tag="$LUMO_TRIGGER"
cat > "@OUT@/$tag.stdin.json"
cp "$LUMO_CONTEXT_FILE" "@OUT@/$tag.file.json"
env | grep -E '^(LUMO_|CUSTOM_VAR=)' | sort > "@OUT@/$tag.env"
pwd -P > "@OUT@/$tag.pwd"
find . -type f | sort > "@OUT@/$tag.files"
"#;

/// A task that appends its trigger to `out/<task>.log` (task names here have no `/`).
pub const RECORDER: &str = r#"echo "$LUMO_TRIGGER" >> "@OUT@/$LUMO_TASK.log""#;

/// The `TaskContext` a task saved under `tag` (see [`OBSERVER`]), read from its stdin and from
/// `$LUMO_CONTEXT_FILE`, which must agree.
pub fn context(p: &TestProject, tag: &str) -> TaskContext {
    let from_stdin: TaskContext =
        serde_json::from_str(&p.read_out(&format!("{tag}.stdin.json"))).unwrap();
    let from_file: TaskContext =
        serde_json::from_str(&p.read_out(&format!("{tag}.file.json"))).unwrap();
    assert_eq!(
        from_stdin, from_file,
        "stdin and $LUMO_CONTEXT_FILE hold the same TaskContext"
    );
    from_stdin
}

/// A minimal valid task file for the config-error projects.
pub fn with_task(p: &TestProject, name: &str) {
    p.task(name, "echo ok");
}

/// `lumo deploy --env dev` (then with `--json`) fails with exit 2, names the config file and
/// every fragment, and leaves no `.lumo/` behind.
#[track_caller]
pub fn assert_invalid(p: &TestProject, fragments: &[&str]) {
    assert_invalid_with(
        p,
        &["deploy", "--env", "dev"],
        &p.root().join("lumo.config.js"),
        fragments,
    );
}

#[track_caller]
pub fn assert_invalid_with(p: &TestProject, args: &[&str], config: &Path, fragments: &[&str]) {
    let shown_path = fs::canonicalize(config.parent().unwrap())
        .unwrap()
        .join(config.file_name().unwrap());
    let shown_path = shown_path.display().to_string();
    let text = p.lumo(args).code(2).clone();
    assert!(text.stdout.is_empty(), "nothing on stdout: {}", text.show());
    text.stderr_has(&["error:", &shown_path])
        .stderr_has(fragments);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = p.lumo(&json_args).code(2).clone();
    let error = json.json_error();
    assert_eq!(error.kind, "invalid");
    let whole = format!(
        "{}\n{}\n{}",
        error.message,
        error.causes.join("\n"),
        error.hint.clone().unwrap_or_default()
    );
    for fragment in fragments.iter().chain([&shown_path.as_str()]) {
        assert!(
            whole.contains(fragment),
            "the JSON error should contain {fragment:?}: {whole}"
        );
    }
    assert!(
        !p.lumo_dir().exists(),
        "`.lumo/` was created: {:?}",
        fs::read_dir(p.lumo_dir()).map(|d| d.count())
    );
    assert!(
        fs::read_dir(p.out()).unwrap().next().is_none(),
        "a task ran"
    );
}
