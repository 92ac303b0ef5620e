//! Watching a deployment from CI (issue 11): the one shape of a task's outcome in every `--json`
//! document, a failed task's message that is its error rather than its last line, and the
//! failure summary pointing at `lumo logs`.

use serde_json::Value;

use crate::support::{self, ACTOR, OUTCOME_KEYS, RunStatus, TaskRun, TestProject};

/// A task that dies as an uncaught Node.js error does: the error, its stack, then Node's
/// version as the last line. It fails only once `out/fail` exists.
const NODE_LIKE_FAILURE: &str = r#"
if [ ! -e @OUT@/fail ]; then echo "migrated"; exit 0; fi
echo "applying 0003_orders.sql"
echo 'Error: relation "orders" already exists' >&2
echo '    at migrate (file:///bundle/handler.mjs:3:11)' >&2
echo '' >&2
echo 'Node.js v20.20.2' >&2
exit 1
"#;

const ERROR_MESSAGE: &str = r#"exit code 1: Error: relation "orders" already exists"#;

fn project() -> TestProject {
    let p = TestProject::new();
    p.config(
        r#"export default {
          projectName: 'shop',
          tasks: { migrate: {}, warm: { dependsOn: ['migrate'] } },
        };"#,
    );
    p.task("migrate", NODE_LIKE_FAILURE)
        .task("warm", "echo warmed");
    p
}

/// The object of a task's outcome has every key of the shared shape.
#[track_caller]
fn assert_outcome_keys(what: &str, outcome: &Value) {
    let object = outcome
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {outcome}"));
    for key in OUTCOME_KEYS {
        assert!(
            object.contains_key(key),
            "{what} lacks `{key}`: {outcome:#}"
        );
    }
}

#[test]
fn a_failed_tasks_outcome_has_one_shape_in_deploy_run_and_history() {
    let p = project();
    p.deploy(&["--deploy-version", "v1"], 0);
    std::fs::write(p.out().join("fail"), "").unwrap();

    let deploy = p.lumo(&["deploy", "--env", "dev", "--json", "--deploy-version", "v2"]);
    deploy.code(1);
    let deploy_doc: Value = deploy.json();
    let report: support::DeployReport = deploy.json();
    let migrate = report.task("migrate");
    assert_eq!(migrate.status, RunStatus::Failed);
    assert_eq!(migrate.message.as_deref(), Some(ERROR_MESSAGE));
    assert_eq!(migrate.exit_code, Some(1));
    assert_eq!(migrate.actor.as_deref(), Some(ACTOR));
    assert_eq!(migrate.attempt, Some(1));
    assert!(migrate.started_at.is_some() && migrate.ended_at.is_some());
    assert!(migrate.log_ref.is_some(), "{migrate:?}");
    assert!(
        migrate
            .output_tail
            .as_deref()
            .is_some_and(|t| t.contains("Node.js v20.20.2") && t.contains("applying")),
        "{migrate:?}"
    );
    assert_eq!(report.task("warm").status, RunStatus::Skipped);
    for task in deploy_doc["tasks"].as_array().unwrap() {
        assert_outcome_keys("deploy --json task", task);
    }

    let run = p.lumo(&["run", "migrate", "--env", "dev", "--json"]);
    run.code(1);
    assert_outcome_keys("run --json", &run.json::<Value>());
    let manual: TaskRun = run.json();
    assert_eq!(manual.message.as_deref(), Some(ERROR_MESSAGE));
    assert_eq!(manual.exit_code, Some(1));
    assert_eq!(manual.run_id, manual.id);

    let history = p.lumo(&["history", "--env", "dev", "--json"]);
    let history_doc: Value = history.code(0).json();
    for run in history_doc["runs"].as_array().unwrap() {
        assert_outcome_keys("history --json run", run);
    }
    let runs = p.history();
    let deployed = runs
        .iter()
        .find(|r| Some(&r.id) == migrate.run_id.as_ref())
        .unwrap();
    // The same run reads the same in the deployment's report and in the history.
    assert_eq!(
        (&deployed.message, deployed.exit_code, &deployed.log_ref),
        (&migrate.message, migrate.exit_code, &migrate.log_ref)
    );
    assert_eq!(deployed.output_tail, migrate.output_tail);
}

#[test]
fn quiet_failure_shows_the_error_the_run_id_and_the_logs_command() {
    let p = project();
    std::fs::write(p.out().join("fail"), "").unwrap();
    let out = p.lumo(&["-q", "deploy", "--env", "dev"]);
    out.code(1);
    assert!(!out.stderr.contains("applying"), "{}", out.show());
    let run_id = p.history()[0].id.clone();
    for fragment in [
        ERROR_MESSAGE,
        &format!("`migrate` failed (run {run_id}); its full output: `lumo logs {run_id}`"),
    ] {
        assert!(out.stdout.contains(fragment), "{fragment}\n{}", out.show());
    }
    assert!(!out.stdout.contains("Node.js v20"), "{}", out.show());
}

/// A GitHub Actions job, as lumo sees one: the step summary file and `GITHUB_ACTIONS=true`.
fn github_env(p: &TestProject) -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let summary = p.tmp().join("step_summary.md");
    let env = vec![
        ("GITHUB_ACTIONS", "true".to_string()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
        ("CI", "true".to_string()),
    ];
    (summary, env)
}

#[test]
fn a_failed_deploy_under_github_actions_writes_the_summary_and_annotations() {
    let p = project();
    std::fs::write(p.out().join("fail"), "").unwrap();
    let (summary, env) = github_env(&p);
    // Earlier steps of the job wrote to the summary: lumo appends.
    std::fs::write(&summary, "## Build\n\nok\n\n").unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = p.lumo_with_env(&["deploy", "--env", "dev", "--deploy-version", "v1"], &env);
    out.code(1);
    let runs = p.history();
    let migrate = runs.iter().find(|r| r.task == "migrate").unwrap();
    let id = &migrate.id;

    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("## Build\n\nok\n\n"), "{text}");
    for fragment in [
        "### ❌ lumo: `shop` deployed to `dev`: failed",
        "version `v1`",
        "| Task | Status | Duration | Message | Run |",
        &format!(
            "| `migrate` | ❌ failed | {} | {ERROR_MESSAGE} | `{id}` |",
            crate::support::format_ms(migrate.duration_ms.unwrap())
        ),
        "| `warm` | ⏭️ skipped |  | not started: `migrate` did not succeed |",
        &format!("- `migrate` failed; its full output: `lumo logs {id}`"),
    ] {
        assert!(
            text.contains(fragment),
            "summary lacks {fragment:?}:\n{text}"
        );
    }

    let annotations: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(
        annotations,
        [format!(
            "::error title=lumo deploy%3A migrate failed in dev::{ERROR_MESSAGE}%0Arun {id}; full output: lumo logs {id}"
        )],
        "{}",
        out.show()
    );
}

#[test]
fn outside_github_actions_there_is_no_summary_and_no_annotation() {
    let p = project();
    std::fs::write(p.out().join("fail"), "").unwrap();
    let out = p.lumo_with_env(&["deploy", "--env", "dev"], &[("CI", "true")]);
    out.code(1);
    assert!(!out.stderr.contains("::error"), "{}", out.show());
    assert!(!p.tmp().join("step_summary.md").exists());
    // GITHUB_ACTIONS set to anything but `true` is not GitHub Actions either.
    let out = p.lumo_with_env(&["deploy", "--env", "dev"], &[("GITHUB_ACTIONS", "false")]);
    assert!(!out.stderr.contains("::error"), "{}", out.show());
}

/// A JUnit report parsed as GitLab's reader sees it: `testsuites` / `testsuite` / `testcase`
/// with `name`, `classname` and `time`, and a `failure` (with `message`) or `skipped` inside.
#[derive(Debug)]
struct JunitCase {
    name: String,
    classname: String,
    time: f64,
    /// The failure's `message` and text.
    failure: Option<(String, String)>,
    skipped: bool,
}

/// The suite's `tests`, `failures`, `skipped` counts and its cases; panics unless the file is
/// well-formed XML of that structure.
fn parse_junit(xml: &str) -> ([u32; 3], Vec<JunitCase>) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites", "{xml}");
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1, "{xml}");
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert!(suite.attribute("name").is_some_and(|n| !n.is_empty()));
    let count = |name: &str| -> u32 { suite.attribute(name).unwrap().parse().unwrap() };
    let counts = [count("tests"), count("failures"), count("skipped")];
    let cases = suite
        .children()
        .filter(|n| n.is_element())
        .map(|case| {
            assert_eq!(case.tag_name().name(), "testcase");
            let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
            JunitCase {
                name: case.attribute("name").unwrap().to_string(),
                classname: case.attribute("classname").unwrap().to_string(),
                time: case.attribute("time").unwrap().parse().unwrap(),
                failure: child("failure").map(|f| {
                    (
                        f.attribute("message").unwrap().to_string(),
                        f.text().unwrap_or("").to_string(),
                    )
                }),
                skipped: child("skipped").is_some(),
            }
        })
        .collect();
    (counts, cases)
}

#[test]
fn junit_reports_each_task_run_of_a_failed_deploy_and_of_a_run() {
    let p = project();
    // Colour codes and a control character in the output must not break the XML.
    p.task(
        "migrate",
        &format!("printf '\\033[31mred\\033[0m \\001 <&>\\n' >&2\n{NODE_LIKE_FAILURE}"),
    );
    p.deploy(&["--deploy-version", "v1"], 0);
    std::fs::write(p.out().join("fail"), "").unwrap();
    let reports = p.tmp().join("reports");
    std::fs::create_dir(&reports).unwrap();
    let junit = reports.join("lumo.xml");
    let junit_arg = junit.display().to_string();

    p.lumo(&[
        "deploy",
        "--env",
        "dev",
        "--deploy-version",
        "v2",
        "--junit",
        &junit_arg,
    ])
    .code(1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let (counts, cases) = parse_junit(&xml);
    assert_eq!(counts, [2, 1, 1], "{xml}");
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["migrate", "warm"]);
    assert!(
        cases
            .iter()
            .all(|c| c.classname == "lumo.shop.dev" && c.time >= 0.0)
    );
    let (message, text) = cases[0].failure.clone().unwrap();
    assert_eq!(message, ERROR_MESSAGE);
    assert!(
        text.contains("Node.js v20.20.2") && text.contains("red \u{fffd} <&>"),
        "{text}"
    );
    assert!(text.contains("full output: lumo logs "), "{text}");
    assert!(cases[1].skipped && cases[1].failure.is_none(), "{cases:?}");
    // Written whole, by a rename: nothing else is left beside the report.
    let left: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("lumo.xml")]);

    // A manual run is a suite of one case, and replaces the file.
    p.lumo(&["run", "warm", "--env", "dev", "--junit", &junit_arg])
        .code(0);
    let (counts, cases) = parse_junit(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(counts, [1, 0, 0]);
    assert_eq!(cases[0].name, "warm");
    assert!(cases[0].failure.is_none() && !cases[0].skipped);
}

#[test]
fn a_junit_path_that_cannot_be_written_is_refused_before_anything_runs() {
    let p = project();
    let missing = p.tmp().join("no-such-dir").join("lumo.xml");
    let out = p.lumo(&[
        "deploy",
        "--env",
        "dev",
        "--junit",
        &missing.display().to_string(),
    ]);
    out.code(2)
        .stderr_has(&["`--junit ", "no-such-dir` does not exist"]);
    assert!(
        !p.lumo_dir().join("bundles").exists(),
        "nothing was bundled"
    );
    let out = p.lumo(&[
        "deploy",
        "--env",
        "dev",
        "--junit",
        &p.tmp().display().to_string(),
    ]);
    out.code(2).stderr_has(&["is a directory"]);
    // A directory that exists but takes no new file (procfs refuses even root) is refused up
    // front too, rather than found out after the deployment as a warning.
    let out = p.lumo(&["deploy", "--env", "dev", "--junit", "/proc/lumo.xml"]);
    out.code(2)
        .stderr_has(&["`--junit /proc/lumo.xml`: cannot write in directory `/proc`"]);
    assert!(
        !p.lumo_dir().join("bundles").exists(),
        "nothing was bundled"
    );
}

/// Regression (issue 11's check): a JUnit report that could not be written at the end of a
/// run was reported under lumo's temporary file (`… at path ".lumo-junit-x7Kq.tmp"`) instead of
/// `--junit PATH`. The warning names PATH and the reason; no temporary file is left behind; the
/// deployment's exit code still says how it went.
#[test]
fn a_junit_report_that_cannot_be_written_at_the_end_names_its_path_and_leaves_nothing() {
    let p = TestProject::new();
    p.config("export default { projectName: 'ci', tasks: { gone: {}, taken: {} } };")
        .task("gone", "rm -rf @OUT@/reports")
        .task("taken", "mkdir -p @OUT@/reports/lumo.xml/inside");
    let reports = p.out().join("reports");
    let junit = reports.join("lumo.xml");
    let junit_arg = junit.display().to_string();
    let warning = format!("cannot write the JUnit report `{junit_arg}`: ");

    // The report's directory is gone by the end of the run.
    std::fs::create_dir_all(&reports).unwrap();
    let out = p
        .lumo(&[
            "deploy", "--env", "dev", "--only", "gone", "--junit", &junit_arg,
        ])
        .code(0)
        .clone();
    out.stderr_has(&[&warning, "No such file or directory"]);
    assert!(!out.stderr.contains(".lumo-junit"), "{}", out.show());

    // The report's path has become a directory: the rename fails after the file was written.
    std::fs::create_dir_all(&reports).unwrap();
    let out = p
        .lumo(&[
            "deploy", "--env", "dev", "--only", "taken", "--junit", &junit_arg,
        ])
        .code(0)
        .clone();
    out.stderr_has(&[&warning]);
    assert!(!out.stderr.contains(".lumo-junit"), "{}", out.show());
    let left: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["lumo.xml"], "a half-written report was left behind");
}

/// `--color` flag, environment variables, whether stderr is coloured.
type ColourCase = (&'static str, &'static [(&'static str, &'static str)], bool);

#[test]
fn colour_is_forced_or_disabled_by_each_variable_and_the_flag() {
    let p = TestProject::new();
    p.config("export default { projectName: 'paint' };");
    p.task("hello", "echo hello");
    // (flag, variables, coloured?): the flag wins, then NO_COLOR, then the forcing variables;
    // stderr here is a pipe, so `auto` alone is plain.
    let cases: [ColourCase; 9] = [
        ("auto", &[], false),
        ("auto", &[("NO_COLOR", "1")], false),
        ("auto", &[("FORCE_COLOR", "1")], true),
        ("auto", &[("CLICOLOR_FORCE", "1")], true),
        ("auto", &[("FORCE_COLOR", "0")], false),
        ("auto", &[("NO_COLOR", "1"), ("FORCE_COLOR", "1")], false),
        ("always", &[("NO_COLOR", "1")], true),
        ("never", &[("FORCE_COLOR", "1")], false),
        ("never", &[("CLICOLOR_FORCE", "1")], false),
    ];
    for (flag, vars, coloured) in cases {
        let mut cmd = p.command(&["deploy", "--env", "dev", "--color", flag]);
        cmd.env_remove("NO_COLOR").envs(vars.iter().copied());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.contains("\u{1b}["),
            coloured,
            "--color {flag} with {vars:?}:\n{stderr}"
        );
        assert!(!out.stdout.contains(&0x1b), "stdout is never painted");
    }
    let out = p.lumo(&["deploy", "--env", "dev", "--color", "sometimes"]);
    out.code(2).stderr_has(&["--color", "always", "never"]);
}

/// Every `lumo …` command line of a CI example (a `run:` or `script:` line starting with
/// `lumo`): its words.
fn example_commands(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .trim_start_matches("run: ")
        })
        .filter(|l| l.starts_with("lumo "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn the_ci_examples_call_commands_and_flags_lumo_has() {
    let p = TestProject::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "examples/github-actions/deploy.yml",
        "examples/gitlab-ci/.gitlab-ci.yml",
    ] {
        let text = std::fs::read_to_string(repo.join(file)).unwrap();
        let commands = example_commands(&text);
        let verbs: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
        assert_eq!(verbs, ["deploy", "run"], "{file}");
        for words in &commands {
            let help = p.lumo(&[words[1].as_str(), "--help"]);
            help.code(0);
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    help.stdout.contains(&format!("{flag} "))
                        || help.stdout.contains(&format!("{flag}\n")),
                    "{file}: `lumo {}` has no `{flag}`:\n{}",
                    words[1],
                    help.stdout
                );
            }
            assert!(words.iter().any(|w| w == "--junit"), "{file}: {words:?}");
        }
    }
}

/// The README's CLI summary lists every flag of every command, and each flag it lists is in
/// the command's `--help` (issue 11's check: `lumo logs --env` was missing from a summary; the
/// README lacked `run --wait`, `lock --wait` and `init --name`). Global flags are documented
/// once, below the summary.
#[test]
fn the_readme_cli_summary_and_each_commands_help_list_the_same_flags() {
    use clap::CommandFactory;

    let p = TestProject::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let summary = readme
        .split("## CLI\n\n```\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has a `## CLI` summary in a code block");
    // `lumo lock … / lumo unlock …` shares a line.
    let documented = |verb: &str| -> String {
        summary
            .lines()
            .flat_map(|line| line.split(" / "))
            .map(|part| part.split(" # ").next().unwrap_or(part))
            .find(|part| part.split_whitespace().nth(1) == Some(verb))
            .unwrap_or_else(|| panic!("the README's CLI summary has no `lumo {verb}`"))
            .to_string()
    };
    let cli = lumo_cli::args::Cli::command();
    for command in cli.get_subcommands() {
        let verb = command.get_name();
        let line = documented(verb);
        let help = p.lumo(&[verb, "--help"]).code(0).stdout.clone();
        for arg in command.get_arguments().filter(|a| !a.is_global_set()) {
            let Some(long) = arg.get_long() else { continue };
            let flag = format!("--{long}");
            let is_flag = |text: &str| {
                text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|w| w == flag)
            };
            assert!(is_flag(&line), "README: `{line}` lacks `{flag}`");
            assert!(
                is_flag(&help),
                "`lumo {verb} --help` lacks `{flag}`:\n{help}"
            );
        }
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            // `--` alone is `exec`'s separator before its command.
            if let Some(long) = word.strip_prefix("--").filter(|l| !l.is_empty()) {
                assert!(
                    command.get_arguments().any(|a| a.get_long() == Some(long)),
                    "README: `lumo {verb}` has no `--{long}`"
                );
            }
        }
    }
}

/// Runs `lumo <args>` on a pseudo-terminal (util-linux `script`), as a person at a terminal
/// would: what the terminal received (stdout and stderr together, with its redraws).
fn on_a_terminal(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut line = String::from(env!("CARGO_BIN_EXE_lumo"));
    for arg in args.iter().chain(&["--actor", ACTOR]) {
        line.push(' ');
        line.push_str(arg);
    }
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(p.root())
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", p.tmp())
        .env("LANG", "C.UTF-8")
        .env("TERM", "xterm-256color")
        .env("NO_COLOR", "1")
        .env("GIT_CEILING_DIRECTORIES", p.tmp())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `script` runs lumo on a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_shows_each_running_tasks_elapsed_time_and_place_but_ci_and_quiet_do_not() {
    let p = TestProject::new();
    p.config("export default { projectName: 'alive', tasks: { first: {}, second: {} } };");
    // Silent for over a second: only the live line shows the task is running.
    p.task("first", "sleep 1.3").task("second", "sleep 1.3");
    let shown = on_a_terminal(&p, &["deploy", "--env", "dev"], &[]);
    for fragment in [
        "first [1/2] 1s",
        "second [2/2] 1s",
        "✔ first succeeded",
        "✔ second succeeded",
    ] {
        assert!(
            shown.contains(fragment),
            "{fragment:?} not on the terminal:\n{shown}"
        );
    }
    let ci = on_a_terminal(&p, &["deploy", "--env", "dev"], &[("CI", "true")]);
    assert!(ci.contains("✔ first succeeded"), "{ci}");
    assert!(!ci.contains("[1/2]") && !ci.contains("first 1s"), "{ci}");
    let quiet = on_a_terminal(&p, &["-q", "deploy", "--env", "dev"], &[]);
    assert!(!quiet.contains("[1/2]") && !quiet.contains("✔"), "{quiet}");
    // A single manual run has no place among others, but its elapsed time.
    let run = on_a_terminal(&p, &["run", "first", "--env", "dev"], &[]);
    assert!(run.contains("first 1s") && !run.contains("[1/"), "{run}");
}

/// `lumo exec` reports as `lumo run` does (issue 12): `--junit` with one test case named by the
/// command line (a failure with the message and the output's tail), the step summary and one
/// `::error` annotation under GitHub Actions, and `--json` with every key of `run --json`.
#[test]
fn exec_reports_like_run_in_junit_the_step_summary_annotations_and_json() {
    let p = project();
    p.deploy(&["--deploy-version", "v1"], 0);
    let run_doc: Value = p
        .lumo(&["run", "warm", "--env", "dev", "--json"])
        .code(0)
        .json();
    let junit = p.tmp().join("exec.xml");
    let junit_arg = junit.display().to_string();
    let (summary, env) = github_env(&p);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let out = p.lumo_with_env(
        &[
            "exec",
            "--env",
            "dev",
            "--yes",
            "--json",
            "--junit",
            &junit_arg,
            "--",
            "sh",
            "-c",
            "echo go1; echo oops >&2; exit 3",
        ],
        &env,
    );
    out.code(1);
    let doc: Value = out.json();
    assert_outcome_keys("exec --json", &doc);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&doc),
        keys(&run_doc),
        "exec --json and run --json differ"
    );
    let exec: TaskRun = out.json();
    assert_eq!((exec.status, exec.exit_code), (RunStatus::Failed, Some(3)));
    let message = exec.message.clone().unwrap();
    assert!(message.contains("oops"), "{message}");
    let id = &exec.id;
    // As `lumo history` shows the run.
    let shown = "exec sh -c 'echo go1; echo oops >&2; exit 3'";

    let (counts, cases) = parse_junit(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(counts, [1, 1, 0]);
    assert_eq!(cases[0].name, shown);
    assert_eq!(cases[0].classname, "lumo.shop.dev");
    let (failure, text) = cases[0].failure.clone().unwrap();
    assert_eq!(failure, message);
    assert!(
        text.contains("go1") && text.contains(&format!("lumo logs {id}")),
        "{text}"
    );

    let md = std::fs::read_to_string(&summary).unwrap();
    for fragment in [
        format!("### ❌ lumo: `{shown}` in `dev`: failed"),
        "| ❌ failed |".to_string(),
        format!("`{id}` |"),
        format!("failed; its full output: `lumo logs {id}`"),
    ] {
        assert!(md.contains(&fragment), "summary lacks {fragment:?}:\n{md}");
    }
    let annotations: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(annotations.len(), 1, "{}", out.show());
    assert!(
        annotations[0].starts_with("::error title=lumo exec sh -c ")
            && annotations[0].contains("%3A failed in dev::")
            && annotations[0].ends_with(&format!("%0Arun {id}; full output: lumo logs {id}")),
        "{}",
        annotations[0]
    );

    // A command that succeeds is a passing case; no annotation.
    let ok = p.lumo_with_env(
        &[
            "exec", "--env", "dev", "--yes", "--junit", &junit_arg, "--", "echo", "fine",
        ],
        &env,
    );
    ok.code(0);
    assert!(!ok.stderr.contains("::error"), "{}", ok.show());
    let (counts, cases) = parse_junit(&std::fs::read_to_string(&junit).unwrap());
    assert_eq!(counts, [1, 0, 0]);
    assert_eq!(cases[0].name, "exec echo fine");
    assert!(cases[0].failure.is_none());
    // `--junit` is checked before anything runs, as for `run`.
    let missing = p.tmp().join("no-such-dir").join("x.xml");
    p.lumo(&[
        "exec",
        "--env",
        "dev",
        "--yes",
        "--junit",
        &missing.display().to_string(),
        "--",
        "true",
    ])
    .code(2)
    .stderr_has(&["no-such-dir` does not exist"]);
    assert_eq!(
        p.history().len(),
        5,
        "the refused exec was recorded as a run"
    );
}
