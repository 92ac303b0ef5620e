//! Snapshots of the text users read (PRODUCT.md §7: output is a contract): `deploy` (a first
//! deploy, an update, a failing task with the rest skipped), `run` (success and failure),
//! `tasks`, `history`, `status`, and the main errors — each as the command line, its exit code,
//! stdout and stderr, in one reviewed file under `tests/e2e_local/snapshots/`.
//!
//! Why snapshots here when the other modules check fragments: a fragment check passes when a
//! column moves, a line doubles or a hint disappears; a snapshot shows any change to what a
//! user reads in review. Paths, times, durations, run and deployment ids, hashes, pids and the
//! host name are filtered, so a snapshot changes only when the text does.
//!
//! Other modules snapshot through [`snapshot`] too where a whole output reads better than its
//! fragments (`lumo tasks` with args, `--dry-run`, `lumo logs` of a skipped run, …).
//!
//! lumo runs here without `NO_COLOR`: its stderr is a pipe, as in a CI log, and must carry no
//! colour codes even so (checked in [`shown`]).

use crate::support::{Outcome, TestProject};

/// A project with a task on every trigger kind: `migrate` on every deploy, `seed` only on the
/// first, and `purge` only by hand, with a required arg, a default and a confirmation.
fn shop() -> TestProject {
    let p = TestProject::new();
    p.config(
        r#"export default {
  projectName: 'shop',
  environments: ['dev', 'prod'],
  tasks: {
    migrate: { description: 'applies the migrations' },
    seed: { runOn: ['deploy'], dependsOn: ['migrate'] },
    purge: {
      runOn: [],
      description: 'drops a cache namespace',
      args: {
        target: { required: true, description: 'the namespace' },
        mode: { default: 'soft' },
      },
      confirm: 'This drops the cache',
    },
  },
};"#,
    )
    .task(
        "migrate",
        "echo 'applying 2 migrations'\necho 'migrated to 0002'",
    )
    .task("seed", "echo 'seeded 3 users'")
    .task(
        "purge",
        r#"if [ "$LUMO_ARG_TARGET" = missing ]; then
  echo "no namespace \`$LUMO_ARG_TARGET\`" >&2
  exit 3
fi
echo "purged $LUMO_ARG_TARGET ($LUMO_ARG_MODE)""#,
    );
    p
}

/// `lumo <args>` in `p` as the suites' actor, like [`TestProject::lumo`] but with `NO_COLOR`
/// unset.
fn lumo(p: &TestProject, args: &[&str]) -> Outcome {
    lumo_as(p, crate::support::ACTOR, args)
}

fn lumo_as(p: &TestProject, actor: &str, args: &[&str]) -> Outcome {
    let output = p
        .std_command(actor, args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    Outcome {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout_bytes: output.stdout.len(),
    }
}

/// What a user reads from one `lumo` call, as one text for a snapshot.
#[track_caller]
fn shown(out: &Outcome) -> String {
    assert!(
        !out.stdout.contains('\u{1b}') && !out.stderr.contains('\u{1b}'),
        "colour codes in piped output:\n{}",
        out.show()
    );
    format!(
        "$ lumo {}\nexit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        out.args.join(" "),
        out.code,
        out.stdout,
        out.stderr
    )
}

/// Escapes `text` for use as a literal in a filter's regex.
fn literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Replaces what differs from one run to the next with placeholders: the temporary directory,
/// timestamps, durations, ULIDs (run and deployment ids), hashes, pids and this host's name.
fn filters(p: &TestProject) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let tmp = p.tmp().to_path_buf();
    let mut tmps = vec![tmp.display().to_string()];
    if let Ok(canonical) = std::fs::canonicalize(&tmp) {
        tmps.insert(0, canonical.display().to_string());
    }
    for dir in tmps {
        settings.add_filter(&literal(&dir), "[TMP]");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() {
        settings.add_filter(&format!(r"\b(from|on) {}\)", literal(host)), "$1 [HOST])");
    }
    settings.add_filter(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\b", "[TIME]");
    // Durations are right-aligned in tables: the padding goes with the number.
    settings.add_filter(r" +\b(\d+ms|\d+\.\ds|\d+m\d\ds)\b", " [DURATION]");
    settings.add_filter(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "[ULID]");
    settings.add_filter(r"\b[0-9a-f]{12,64}\b", "[HASH]");
    settings.add_filter(r"\bpid \d+\b", "pid [PID]");
    // Table rows pad their last column; editors and `git diff --check` strip trailing spaces
    // from the committed files, so they are not part of the contract.
    settings.add_filter(r"(?m)[ \t]+$", "");
    // The command line is the snapshot's first line already.
    settings.set_omit_expression(true);
    settings
}

/// Snapshots `out` as `name` with `p`'s filters. Other topic modules use it too, where the
/// whole text says more than fragments of it; their snapshots sit beside these, named
/// `e2e_local__text_output__<name>.snap`.
#[track_caller]
pub(crate) fn snapshot(p: &TestProject, name: &str, out: &Outcome) {
    let text = shown(out);
    filters(p).bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn deploy_first_then_update() {
    let p = shop();
    let first = lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]);
    snapshot(&p, "deploy_first", &first);
    let update = lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v2"]);
    snapshot(&p, "deploy_update", &update);
}

#[test]
fn deploy_with_a_failing_task_skips_the_rest() {
    let p = TestProject::new();
    p.config(
        r#"export default {
  projectName: 'shop',
  tasks: {
    migrate: {},
    warm: { dependsOn: ['migrate'] },
    notify: {},
  },
};"#,
    )
    .task(
        "migrate",
        "echo 'applying 0003_orders.sql' >&2\necho 'relation \"orders\" already exists' >&2\nexit 3",
    )
    .task("warm", "echo warmed")
    .task("notify", "echo notified");
    let failed = lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]);
    snapshot(&p, "deploy_failing_task", &failed);
}

#[test]
fn run_success_and_failure() {
    let p = shop();
    lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]).code(0);
    let ok = lumo(
        &p,
        &[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=users",
            "--yes",
        ],
    );
    snapshot(&p, "run_success", &ok);
    let failed = lumo(
        &p,
        &[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=missing",
            "--yes",
        ],
    );
    snapshot(&p, "run_failure", &failed);
}

#[test]
fn tasks_history_and_status() {
    let p = shop();
    snapshot(&p, "tasks", &lumo(&p, &["tasks", "--env", "dev"]));
    snapshot(&p, "history_empty", &lumo(&p, &["history", "--env", "dev"]));
    lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]).code(0);
    lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v2"]).code(0);
    lumo(
        &p,
        &[
            "run",
            "purge",
            "--env",
            "dev",
            "--arg",
            "target=users",
            "--yes",
        ],
    )
    .code(0);
    snapshot(&p, "history", &lumo(&p, &["history", "--env", "dev"]));
    snapshot(&p, "status", &lumo(&p, &["status", "--env", "dev"]));
}

#[test]
fn error_invalid_config_with_several_problems() {
    let p = shop();
    p.config(
        r#"export default {
  projectName: 'shop',
  tasks: {
    migrate: { timeout: 0, runOn: ['sometimes'] },
    seed: { dependsOn: ['nope'] },
    migrat: {},
  },
};"#,
    );
    let out = lumo(&p, &["deploy", "--env", "dev"]);
    snapshot(&p, "error_invalid_config", &out);
}

#[test]
fn error_unknown_env_and_only() {
    let p = shop();
    let env = lumo(&p, &["deploy", "--env", "staging"]);
    snapshot(&p, "error_unknown_env", &env);
    let only = lumo(&p, &["deploy", "--env", "dev", "--only", "migrat"]);
    snapshot(&p, "error_unknown_only", &only);
}

#[test]
fn error_locked_environment() {
    let p = shop();
    lumo_as(
        &p,
        "alice",
        &["lock", "--env", "dev", "--reason", "release freeze"],
    )
    .code(0);
    let out = lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]);
    snapshot(&p, "error_locked_environment", &out);
}

#[test]
fn error_missing_required_arg() {
    let p = shop();
    lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]).code(0);
    let out = lumo(&p, &["run", "purge", "--env", "dev", "--yes"]);
    snapshot(&p, "error_missing_required_arg", &out);
}

#[test]
fn exec_success_and_failure() {
    let p = shop();
    lumo(&p, &["deploy", "--env", "dev", "--deploy-version", "v1"]).code(0);
    let ok = lumo(
        &p,
        &[
            "exec",
            "--env",
            "dev",
            "--yes",
            "--in",
            "migrate",
            "--",
            "sh",
            "-c",
            "ls; echo 'it is 42'",
        ],
    );
    snapshot(&p, "exec_success", &ok);
    let failed = lumo(
        &p,
        &[
            "exec",
            "--env",
            "dev",
            "--yes",
            "--",
            "sh",
            "-c",
            "echo 'no such table' >&2; exit 3",
        ],
    );
    snapshot(&p, "exec_failure", &failed);
}

/// What the actor may do in an environment and why (issue 12), as `lumo tasks --env` and the
/// dry runs of `deploy` and `run` say it: the role and the key that gives it, each right with
/// the role it takes and where that is set, each task's MAY RUN, and for a dry run the real
/// command's error (a refusal, or no deployed bundle) instead of a refusal recorded later.
#[test]
fn rights_in_tasks_and_dry_runs() {
    let p = TestProject::new();
    p.config(
        r#"export default {
  projectName: 'shop',
  access: { dev: { maintainer: ['alice'], developer: ['*@ci.example.com'], exec: 'developer' } },
  tasks: {
    migrate: {},
    purge: {
      runOn: [],
      permission: 'maintainer',
      args: { target: { required: true }, mode: { default: 'soft' } },
      confirm: 'This drops the cache',
    },
  },
};"#,
    )
    .task("migrate", "echo migrated")
    .task("purge", "echo purged");
    let bot = "deploy@ci.example.com";
    snapshot(
        &p,
        "rights_tasks",
        &lumo_as(&p, bot, &["tasks", "--env", "dev"]),
    );
    snapshot(
        &p,
        "rights_tasks_no_role",
        &lumo_as(&p, "mallory", &["tasks", "--env", "dev"]),
    );
    snapshot(
        &p,
        "rights_deploy_dry_run_refused",
        &lumo_as(&p, "mallory", &["deploy", "--env", "dev", "--dry-run"]),
    );
    let purge = [
        "run",
        "purge",
        "--env",
        "dev",
        "--arg",
        "target=users",
        "--dry-run",
    ];
    snapshot(
        &p,
        "rights_run_dry_run_not_deployed",
        &lumo_as(&p, "alice", &purge),
    );
    lumo_as(&p, bot, &["deploy", "--env", "dev"]).code(0);
    snapshot(&p, "rights_run_dry_run_refused", &lumo_as(&p, bot, &purge));
    snapshot(
        &p,
        "rights_run_dry_run_allowed",
        &lumo_as(&p, "alice", &purge),
    );
    assert!(
        p.status().recent_events.is_empty(),
        "a dry run recorded a refusal"
    );
}

/// A problem lumo recovers from, reported deep inside it (here: the bundle cache cannot be
/// saved because `.lumo/bundle-cache.json` is a directory), reads like every other warning —
/// `warning: …`, no timestamp or level column — and `--verbose` keeps the full log format.
#[test]
fn a_recovered_problem_is_a_plain_warning_line() {
    let p = TestProject::new();
    p.config("export default { projectName: 'warn' };")
        .task("hello", "echo hi");
    // Files changed (ctime included) in the last 2 s are not cached, and then the cache is not
    // saved: let the project's files age past that.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    std::fs::create_dir_all(p.lumo_dir().join("bundle-cache.json/in-the-way"))
        .expect("make the cache path a directory");

    let out = p.lumo(&["deploy", "--env", "dev"]);
    out.code(0);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("bundle-cache.json"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.show());
    assert!(
        warnings[0].starts_with("warning: could not write `") && !warnings[0].contains("WARN"),
        "{}",
        out.show()
    );

    let verbose = p.lumo(&["deploy", "--env", "dev", "--verbose"]);
    verbose.code(0);
    assert!(
        verbose
            .stderr
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("bundle-cache.json")),
        "{}",
        verbose.show()
    );
}
