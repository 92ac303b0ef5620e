//! Reading a run's output back: `lumo logs RUN_ID` and `--tail N`.

use crate::support::{Logs, TestProject};

#[test]
fn logs_tail_shows_the_last_lines_in_text_and_json() {
    let p = TestProject::new();
    p.config("export default { projectName: 'logs', tasks: { talk: {} } };")
        .task("talk", "for i in 1 2 3 4 5; do echo \"line $i\"; done");
    p.deploy(&[], 0);
    let run_id = p.history()[0].id.clone();

    let whole = p.lumo(&["logs", &run_id]).code(0).clone();
    assert_eq!(whole.stdout, "line 1\nline 2\nline 3\nline 4\nline 5\n");

    let tail = p.lumo(&["logs", &run_id, "--tail", "2"]).code(0).clone();
    assert_eq!(tail.stdout, "line 4\nline 5\n", "{}", tail.show());

    let more_than_there_are = p.lumo(&["logs", &run_id, "--tail", "50"]).code(0).clone();
    assert_eq!(more_than_there_are.stdout, whole.stdout);

    let json: Logs = p
        .lumo(&["logs", &run_id, "--tail", "1", "--json"])
        .code(0)
        .json();
    assert_eq!(json.output.as_deref(), Some("line 5\n"));

    let not_a_number = p.lumo(&["logs", &run_id, "--tail", "some"]).code(2).clone();
    not_a_number.stderr_has(&["--tail"]);
}

/// A run id may be shortened to any unique prefix (as git and docker take them), in any case; a
/// prefix several runs start with is an error listing them (exit 2), one no run starts with is
/// "no run"; `--env` looks in one environment only; a character no run id has is named.
#[test]
fn a_unique_prefix_of_a_run_id_finds_the_run() {
    let p = TestProject::new();
    p.config("export default { projectName: 'logs', tasks: { one: {}, two: {} } };")
        .task("one", "echo from one")
        .task("two", "echo from two");
    p.deploy(&[], 0);
    let runs = p.history();
    let (one, two) = (&runs[0].id, &runs[1].id);
    let shared = one
        .chars()
        .zip(two.chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        shared > 0,
        "ids made in the same second share their time: {one} {two}"
    );

    let unique = &one[..shared + 1];
    let by_prefix = p.lumo(&["logs", unique]).code(0).clone();
    assert_eq!(by_prefix.stdout, "from one\n", "{}", by_prefix.show());
    let lower = unique.to_ascii_lowercase();
    let json: Logs = p.lumo(&["logs", &lower, "--json"]).code(0).json();
    assert_eq!(&json.run.id, one);

    let ambiguous = p.lumo(&["logs", &one[..shared]]).code(2).clone();
    ambiguous.stderr_has(&["ambiguous", one, two, "2 runs"]);
    assert!(ambiguous.stdout.is_empty());
    let error = p
        .lumo(&["logs", &one[..shared], "--json"])
        .code(2)
        .json_error();
    assert_eq!(error.kind, "invalid");
    assert!(error.message.contains(two.as_str()), "{error:?}");

    let none = p.lumo(&["logs", "zzzz"]).code(2).clone();
    none.stderr_has(&["no run of project `logs` has an id starting with `ZZZZ`"]);
    let too_long = format!("{one}0");
    p.lumo(&["logs", &too_long])
        .code(2)
        .clone()
        .stderr_has(&["is not a run id", "26 letters and digits"]);
    // `--env` narrows the lookup to one environment, declared or not.
    p.lumo(&["logs", unique, "--env", "prod"])
        .code(2)
        .clone()
        .stderr_has(&["no run of project `logs` in `prod` has an id starting with"]);
    p.lumo(&["logs", one, "--env", "prod"])
        .code(2)
        .clone()
        .stderr_has(&[&format!("no run `{one}` in project `logs` in `prod`")]);
    let in_dev = p.lumo(&["logs", unique, "--env", "dev"]).code(0).clone();
    assert_eq!(in_dev.stdout, "from one\n", "{}", in_dev.show());
    p.lumo(&["logs", unique, "--env", "Prod"])
        .code(2)
        .clone()
        .stderr_has(&["invalid environment name `Prod`"]);
    // Crockford base32, a ULID's alphabet, has no I, L, O or U.
    p.lumo(&["logs", "01kbo"])
        .code(2)
        .clone()
        .stderr_has(&["`01kbo` is not a run id", "`o` is never in one"]);
}

/// `--follow` shows a running task's output as it is written, and returns when the run ends.
#[test]
fn logs_follow_sees_the_lines_of_a_running_task_and_ends_with_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let p = TestProject::new();
    p.config("export default { projectName: 'logs', tasks: { slow: {} } };")
        .task(
            "slow",
            "for i in 1 2 3 4 5 6 7 8; do echo \"line $i\"; sleep 0.4; done; echo done",
        );
    let mut deploy = p
        .std_command(crate::support::ACTOR, &["deploy", "--env", "dev"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waited = Instant::now();
    let run_id = loop {
        let runs = p.history();
        if let Some(run) = runs.first() {
            break run.id.clone();
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let deploy_ended = std::thread::spawn(move || {
        let status = deploy.wait().unwrap();
        (Instant::now(), status.code())
    });

    let mut follower = p
        .std_command(crate::support::ACTOR, &["logs", &run_id[..12], "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(follower.stdout.take().unwrap()).lines() {
        lines.push((Instant::now(), line.unwrap()));
    }
    let follower_status = follower.wait().unwrap();
    let (deploy_end, deploy_code) = deploy_ended.join().unwrap();
    assert_eq!(deploy_code, Some(0));
    assert!(follower_status.success(), "{follower_status:?}");

    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let mut expected: Vec<String> = (1..=8).map(|i| format!("line {i}")).collect();
    expected.push("done".into());
    assert_eq!(text, expected, "the whole output, once, in order");
    assert!(
        lines[0].0 < deploy_end,
        "the first line came while the task ran, not after"
    );
    let finished = Instant::now();
    assert!(
        finished.duration_since(deploy_end) < Duration::from_secs(3),
        "--follow returned {:?} after the run ended",
        finished.duration_since(deploy_end)
    );
}

/// Regression (issue 11's check): `--tail -1` got clap's generic "unexpected argument '-1'
/// found", naming no flag. A negative or non-number value of every numeric flag now names the
/// flag and says what it takes, exit 2, before anything runs.
#[test]
fn a_negative_or_non_number_numeric_flag_names_the_flag_and_what_it_takes() {
    let p = TestProject::new();
    p.config("export default { projectName: 'flags', tasks: { talk: {} } };")
        .task("talk", "echo ran >> @OUT@/ran");
    for (args, flag, allowed) in [
        (
            &["logs", "01KBQZ", "--tail", "-1"][..],
            "--tail",
            "a whole number of lines, 0 or more",
        ),
        (&["logs", "01KBQZ", "--tail", "ten"], "--tail", "0 or more"),
        (&["history", "--limit", "-5"], "--limit", "from 1 to 10000"),
        (
            &["deploy", "--concurrency", "-1"],
            "--concurrency",
            "from 1 to 64",
        ),
        (&["deploy", "--wait", "-1"], "--wait", "not a negative one"),
        (&["deploy", "--wait", "-5s"], "--wait", "not a negative one"),
        (
            &["exec", "--timeout", "-1m", "--", "true"],
            "--timeout",
            "not a negative one",
        ),
        (
            &["exec", "--timeout", "-1", "--", "true"],
            "--timeout",
            "not a negative one",
        ),
    ] {
        let refused = p.lumo(args).code(2).clone();
        refused.stderr_has(&[flag, allowed]);
        assert!(
            !refused.stderr.contains("unexpected argument"),
            "{}",
            refused.show()
        );
    }
    assert!(!p.has_out("ran"), "a task ran despite a bad flag");
}

/// A run that printed nothing leaves no log file (the log is created at the first output, so
/// a deploy of many quiet tasks creates no file a task); its output reads back as empty, not
/// as lost, in text and JSON, with and without `--tail`.
#[test]
fn a_run_that_printed_nothing_has_an_empty_log_not_a_lost_one() {
    let p = TestProject::new();
    p.config("export default { projectName: 'logs', tasks: { quiet: {}, talk: {} } };")
        .task("quiet", "exit 0")
        .task("talk", "echo spoken");
    p.deploy(&[], 0);
    let runs = p.history();
    let quiet = runs.iter().find(|r| r.task == "quiet").unwrap().id.clone();
    let talk = runs.iter().find(|r| r.task == "talk").unwrap().id.clone();
    let logs = p.lumo_dir().join("logs");
    assert!(!logs.join(format!("{quiet}.log")).exists());
    assert!(logs.join(format!("{talk}.log")).exists());

    let text = p.lumo(&["logs", &quiet]).code(0).clone();
    assert_eq!(text.stdout, "", "{}", text.show());
    assert!(!text.stderr.contains("not stored"), "{}", text.show());
    let tail = p.lumo(&["logs", &quiet, "--tail", "5"]).code(0).clone();
    assert_eq!(tail.stdout, "", "{}", tail.show());
    assert!(!tail.stderr.contains("not stored"), "{}", tail.show());
    let json: Logs = p.lumo(&["logs", &quiet, "--json"]).code(0).json();
    assert_eq!(json.output.as_deref(), Some(""));
    assert!(json.complete);

    // A log that is gone for another reason is still said to be missing.
    std::fs::remove_file(logs.join(format!("{talk}.log"))).unwrap();
    let lost = p.lumo(&["logs", &talk]).code(0).clone();
    assert!(lost.stderr.contains("not stored"), "{}", lost.show());
    assert_eq!(lost.stdout, "spoken\n");
}
