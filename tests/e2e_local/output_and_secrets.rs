//! What a task prints: stdout and stderr kept in order, megabytes stored in full, the log
//! written while the run goes on, and secrets masked wherever they could show or be stored.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::support::{self, Logs, RunStatus, TestProject};

#[test]
fn output_keeps_stdout_and_stderr_in_order_and_the_message_is_the_last_line() {
    let p = TestProject::new();
    p.config("export default { projectName: 'order-out', tasks: { talk: {}, silent: {} } };");
    p.task("talk", "echo out-1\necho err-1 >&2\necho out-2\necho err-2 >&2\necho\necho 'the last word'\necho '   '")
        .task("silent", "true");
    let report = p.deploy(&[], 0);
    assert_eq!(
        report.task("talk").message.as_deref(),
        Some("the last word")
    );
    let logs = p.logs(report.task("talk").run_id.as_deref().unwrap());
    assert_eq!(
        logs.output.as_deref(),
        Some("out-1\nerr-1\nout-2\nerr-2\n\nthe last word\n   \n")
    );
    assert_eq!(logs.run.output_bytes, 43);
    assert_eq!(report.task("silent").status, RunStatus::Succeeded);

    p.task("silent", "exit 7");
    let report = p.deploy(&[], 1);
    assert_eq!(report.task("talk").status, RunStatus::Succeeded);
    assert_eq!(
        report.task("silent").message.as_deref(),
        Some("exit code 7")
    );
}

#[test]
fn megabytes_of_output_are_stored_in_full_and_the_tail_is_kept() {
    const LINE: &str = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0";
    assert_eq!(LINE.len(), 99);
    let p = TestProject::new();
    p.config("export default { projectName: 'chatty', tasks: { chatty: {} } };");
    // 50,000 lines of 100 bytes, then the last line: 5,000,008 bytes.
    p.task(
        "chatty",
        &format!("yes '{LINE}' | head -n 50000\necho 'THE END'"),
    );
    let expected_bytes = 50_000 * 100 + "THE END\n".len();

    let deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    let report: support::DeployReport = deploy.json();
    let line = report.task("chatty");
    assert_eq!(line.status, RunStatus::Succeeded);
    assert_eq!(line.message.as_deref(), Some("THE END"));
    // Streamed to the terminal as it ran, line by line.
    assert!(
        deploy.stderr.matches(LINE).count() >= 50_000,
        "every line streamed to stderr"
    );

    let run_id = line.run_id.clone().unwrap();
    let logs = p.lumo(&["logs", &run_id]).code(0).clone();
    assert_eq!(
        logs.stdout_bytes, expected_bytes,
        "`lumo logs` prints the whole output"
    );
    assert!(logs.stdout.ends_with(&format!("{LINE}\nTHE END\n")));

    let run = &p.history()[0];
    assert_eq!(run.output_bytes, expected_bytes as u64);
    let tail = run.output_tail.clone().unwrap_or_default();
    assert!(
        !tail.is_empty() && tail.len() <= 4096,
        "tail of {} bytes",
        tail.len()
    );
    assert!(tail.ends_with(&format!("{LINE}\nTHE END\n")), "{tail}");
    let logs_json: Logs = p.logs(&run_id);
    assert!(logs_json.complete);
    assert_eq!(logs_json.output.map(|o| o.len()), Some(expected_bytes));
}

#[test]
fn secrets_are_masked_in_every_output_and_never_stored() {
    const SECRET: &str = "tok-5ecr3t-Zq9Xw7";
    let mut p = TestProject::new();
    p.set_env("E2E_API_TOKEN", SECRET);
    p.config(
        r#"export default {
          projectName: 'secrets',
          secrets: {
            apiToken: { value: () => process.env.E2E_API_TOKEN, description: 'token for the cache API' },
          },
          tasks: { leak: {} },
        };"#,
    );
    // The script never holds the secret itself (it is bundled into `.lumo/`): it reads it from
    // the environment and prints it whole, in two writes split mid-value, on stderr, and in
    // its result's message and data.
    p.task(
        "leak",
        r#"echo "plain: $API_TOKEN"
first=$(printf '%s' "$API_TOKEN" | cut -c1-8)
rest=$(printf '%s' "$API_TOKEN" | cut -c9-)
printf 'split: %s' "$first"
sleep 0.3
printf '%s end\n' "$rest"
echo "on stderr: $API_TOKEN" >&2
printf '{"success": true, "message": "used %s", "data": {"token": "%s", "nested": {"list": ["x%sy"]}}}' "$API_TOKEN" "$API_TOKEN" "$API_TOKEN" > "$LUMO_RESULT_FILE""#,
    );

    let text = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    let json_deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    // The most talkative lumo there is: `--verbose` notes and every trace event.
    let verbose = p
        .lumo_with_env(
            &["deploy", "--env", "dev", "--verbose"],
            &[("LUMO_LOG", "trace")],
        )
        .code(0)
        .clone();
    for shown in [
        &text.stdout,
        &text.stderr,
        &json_deploy.stdout,
        &json_deploy.stderr,
        &verbose.stdout,
        &verbose.stderr,
    ] {
        assert!(!shown.contains(SECRET), "secret shown:\n{shown}");
    }
    text.stderr_has(&["plain: ***", "split: *** end", "on stderr: ***"]);
    let report: support::DeployReport = json_deploy.json();
    let leak = report.task("leak");
    assert_eq!(leak.message.as_deref(), Some("used ***"));
    assert_eq!(
        leak.data,
        Some(json!({ "token": "***", "nested": { "list": ["x***y"] } }))
    );

    let runs = p.history();
    assert_eq!(runs.len(), 3);
    for run in &runs {
        assert_eq!(run.message.as_deref(), Some("used ***"));
        let logs = p.lumo(&["logs", &run.id]).code(0).clone();
        assert!(
            logs.stdout.contains("split: *** end") && logs.stdout.contains("on stderr: ***"),
            "{}",
            logs.stdout
        );
        let logs_json = p.lumo(&["logs", &run.id, "--json"]).code(0).clone();
        for shown in [&logs.stdout, &logs.stderr, &logs_json.stdout] {
            assert!(!shown.contains(SECRET), "secret in logs:\n{shown}");
        }
    }
    for args in [
        &["history", "--env", "dev", "--json"][..],
        &["status", "--env", "dev", "--json"],
        &["status", "--env", "dev"],
        &["history", "--env", "dev"],
    ] {
        let out = p.lumo(args).code(0).clone();
        assert!(
            !out.stdout.contains(SECRET) && !out.stderr.contains(SECRET),
            "secret in `lumo {}`",
            args.join(" ")
        );
    }
    let manual = p
        .lumo(&["run", "leak", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert!(!manual.stdout.contains(SECRET) && !manual.stderr.contains(SECRET));

    let stored = TestProject::files_containing(&p.lumo_dir(), SECRET);
    assert!(stored.is_empty(), "the secret is stored in {stored:?}");
    assert!(
        p.lumo_dir().join("lumo.db").is_file(),
        "the grep covered the database"
    );
}

/// Regression: only serde_json's way of escaping a secret inside JSON was masked. A task
/// printing JSON with Python's `json.dumps` (non-ASCII as `\u00e4`) or Go's `encoding/json`
/// (`<>&` as `\u003c`) showed and stored the secret; and a secret returned as a number in the
/// result's `data` was stored as it was.
#[test]
fn secrets_in_ascii_escaped_json_and_in_numbers_are_masked_and_never_stored() {
    const UNICODE: &str = "pässwörd-ünï";
    const UNICODE_PY: &str = r"p\u00e4ssw\u00f6rd-\u00fcn\u00ef";
    const UNICODE_UPPER: &str = r"p\u00E4ssw\u00F6rd-\u00FCn\u00EF";
    const HTML: &str = "a<b>&c=d";
    const HTML_GO: &str = r"a\u003cb\u003e\u0026c=d";
    const PIN: &str = "987654321";
    let mut p = TestProject::new();
    p.set_env("E2E_UNICODE_PW", UNICODE)
        .set_env("E2E_HTML_TOKEN", HTML)
        .set_env("E2E_PIN", PIN);
    p.config(
        r#"export default {
          projectName: 'escaped-secrets',
          secrets: {
            unicodePw: { value: () => process.env.E2E_UNICODE_PW },
            htmlToken: { value: () => process.env.E2E_HTML_TOKEN },
            pin: { value: () => process.env.E2E_PIN },
          },
          tasks: { leak: {} },
        };"#,
    );
    // The task escapes the secrets from its environment as those encoders do (the script
    // holds no secret: it is bundled into `.lumo/`), prints them whole and split across two
    // writes, and returns them in its result, the pin as a number.
    p.task(
        "leak",
        r#"py=$(printf '%s' "$UNICODE_PW" | sed 's/ä/\\u00e4/g; s/ö/\\u00f6/g; s/ü/\\u00fc/g; s/ï/\\u00ef/g')
upper=$(printf '%s' "$py" | sed 's/u00e4/u00E4/g; s/u00f6/u00F6/g; s/u00fc/u00FC/g; s/u00ef/u00EF/g')
go=$(printf '%s' "$HTML_TOKEN" | sed 's/</\\u003c/g; s/>/\\u003e/g; s/&/\\u0026/g')
echo "python: {\"p\": \"$py\"}"
echo "java: {\"p\": \"$upper\"}"
echo "go: {\"t\":\"$go\"}"
printf 'split: %s' "$(printf '%s' "$py" | cut -c1-9)"
sleep 0.3
printf '%s | %s' "$(printf '%s' "$py" | cut -c10-)" "$(printf '%s' "$go" | cut -c1-8)"
sleep 0.3
printf '%s end\n' "$(printf '%s' "$go" | cut -c9-)"
printf '{"success": true, "message": "used %s and %s", "data": {"p": "%s", "t": "%s", "n": %s}}' "$py" "$go" "$py" "$go" "$PIN" > "$LUMO_RESULT_FILE""#,
    );
    let needles = [UNICODE, UNICODE_PY, UNICODE_UPPER, HTML, HTML_GO, PIN];
    let assert_masked = |what: &str, shown: &str| {
        for needle in needles {
            assert!(!shown.contains(needle), "{needle} in {what}:\n{shown}");
        }
    };

    let text = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    assert_masked("deploy", &format!("{}{}", text.stdout, text.stderr));
    text.stderr_has(&[
        r#"python: {"p": "***"}"#,
        r#"java: {"p": "***"}"#,
        r#"go: {"t":"***"}"#,
        "split: *** | *** end",
    ]);
    let json_deploy = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert_masked(
        "deploy --json",
        &format!("{}{}", json_deploy.stdout, json_deploy.stderr),
    );
    let report: support::DeployReport = json_deploy.json();
    let leak = report.task("leak");
    assert_eq!(leak.message.as_deref(), Some("used *** and ***"));
    assert_eq!(
        leak.data,
        Some(json!({ "p": "***", "t": "***", "n": "***" }))
    );
    let manual = p
        .lumo(&["run", "leak", "--env", "dev", "--json"])
        .code(0)
        .clone();
    assert_masked("run --json", &format!("{}{}", manual.stdout, manual.stderr));

    for run in p.history() {
        for args in [&["logs", &run.id][..], &["logs", &run.id, "--json"]] {
            let logs = p.lumo(args).code(0).clone();
            assert_masked("logs", &format!("{}{}", logs.stdout, logs.stderr));
        }
    }
    for args in [
        &["history", "--env", "dev", "--json"][..],
        &["status", "--env", "dev", "--json"],
    ] {
        let out = p.lumo(args).code(0).clone();
        assert_masked(&args.join(" "), &format!("{}{}", out.stdout, out.stderr));
    }
    for needle in needles {
        let stored = TestProject::files_containing(&p.lumo_dir(), needle);
        assert!(stored.is_empty(), "{needle} is stored in {stored:?}");
    }
    assert!(p.lumo_dir().join("lumo.db").is_file());
}

/// Regression: a run's log was written only when the run ended (a 64 KiB buffer), so the log
/// on disk was empty while the task ran, and stayed empty once lumo was killed (`kill -9`).
#[test]
fn the_log_holds_the_output_while_the_task_runs_and_after_lumo_is_killed() {
    const LINE: &str = "printed before the long wait";
    let p = TestProject::new();
    p.config("export default { projectName: 'live-log', tasks: { slow: { timeout: 120 } } };");
    p.task(
        "slow",
        &format!("echo $$ > \"@OUT@/slow.pid\"\necho '{LINE}'\nsleep 300"),
    );
    let mut lumo = p
        .std_command(support::ACTOR, &["deploy", "--env", "dev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let logs_dir = p.lumo_dir().join("logs");
    let logged = || -> Option<(PathBuf, String)> {
        fs::read_dir(&logs_dir).ok()?.flatten().find_map(|entry| {
            let text = fs::read_to_string(entry.path()).ok()?;
            text.contains(LINE).then(|| (entry.path(), text))
        })
    };
    // Far less than the task's sleep: only a log written while the task runs passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut found = logged();
    while found.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        found = logged();
    }
    let still_running = lumo.try_wait().unwrap().is_none();
    // `lumo logs` shows it too while the run goes on (its record has no log ref yet).
    let live_logs = found.as_ref().map(|(path, _)| {
        let run_id = path.file_stem().unwrap().to_str().unwrap().to_string();
        p.logs(&run_id)
    });
    lumo.kill().unwrap();
    lumo.wait().unwrap();
    let after_kill = found
        .as_ref()
        .map(|(path, _)| fs::read_to_string(path).unwrap());
    // The task outlives the killed lumo: stop its group.
    if let Ok(pid) = p.read_out("slow.pid").trim().parse::<i32>() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }

    let (_, text) = found.expect("the log never held the line while the task ran");
    assert!(still_running, "lumo ended before the check");
    assert_eq!(text, format!("{LINE}\n"));
    assert_eq!(after_kill.as_deref(), Some(text.as_str()), "after kill -9");
    let live_logs = live_logs.unwrap();
    assert_eq!(
        live_logs.output.as_deref(),
        Some(text.as_str()),
        "{live_logs:?}"
    );
}

/// Output is printed a pipe read (up to 64 KiB) at a time, not a line at a time: a secret split
/// between two reads is still masked, stdout and stderr lines keep their order, a progress bar
/// that only returns the carriage is one line, and a long line without a newline is all shown.
#[test]
fn output_streamed_in_batches_keeps_masking_order_and_whole_lines() {
    const SECRET: &str = "tok-b4tch-5ecr3t";
    let mut p = TestProject::new();
    p.set_env("E2E_BATCH_TOKEN", SECRET);
    p.config(
        r#"export default {
          projectName: 'batches',
          secrets: { token: { value: () => process.env.E2E_BATCH_TOKEN } },
          tasks: { chatty: {} },
        };"#,
    );
    // 20,000 lines of growing length (over 600 KB, many reads), odd ones on stderr; a read
    // boundary falls inside some secret. Then a carriage-return-only progress bar and 100 KiB
    // with no newline at all.
    p.task(
        "chatty",
        r#"awk -v s="$TOKEN" 'BEGIN { for (i = 0; i < 20000; i++) { pad = substr("................", 1, i % 17); line = "line " i " " pad s; if (i % 2) print line > "/dev/stderr"; else print line; fflush() } }'
printf 'p10\rp50\rp100\r\n'
head -c 102400 /dev/zero | tr '\0' x"#,
    );
    let run = p.lumo(&["deploy", "--env", "dev"]).code(0).clone();
    assert!(!run.stderr.contains(SECRET), "the secret was shown");
    assert!(
        !run.stderr.contains("tok-b4"),
        "part of the secret was shown"
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("chatty │ "))
        .collect();
    let numbered: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered.len(), 20_000);
    for (i, line) in numbered.iter().enumerate() {
        let pad = ".".repeat(i % 17);
        assert_eq!(*line, format!("line {i} {pad}***"));
    }
    assert!(lines.contains(&"p10\rp50\rp100"), "{lines:?}");
    let xs: usize = lines
        .iter()
        .filter(|l| l.starts_with('x'))
        .map(|l| {
            assert!(l.bytes().all(|b| b == b'x'));
            l.len()
        })
        .sum();
    assert_eq!(xs, 102_400, "the unterminated line is shown in full");
}

/// `githubAPIToken` is `GITHUB_API_TOKEN` since handlers came (the Lumo Framework's rule); a
/// shell task written against lumo 0.1's `GITHUB_APITOKEN` still gets its secret after an upgrade.
#[test]
fn an_acronym_secret_is_also_handed_over_under_its_old_spelling() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'acronyms', tasks: { check: {} },
          secrets: { githubAPIToken: { value: 'gh-token-value' } } };",
    );
    p.task(
        "check",
        "test \"$GITHUB_API_TOKEN\" = gh-token-value || { echo 'new spelling missing'; exit 1; }\n\
         test \"$GITHUB_APITOKEN\" = gh-token-value || { echo 'old spelling missing'; exit 1; }\n\
         echo both spellings",
    );
    let report = p.deploy(&[], 0);
    assert_eq!(
        report.task("check").message.as_deref(),
        Some("both spellings")
    );
}
