//! Live output on the `aws` provider (PRODUCT.md §9), end to end on the emulators: the CLI
//! invokes the runner with `InvokeWithResponseStream`, the harness relays what the real runner
//! streams as Lambda's event stream (`PayloadChunk`s with their CRCs, then `InvokeComplete`),
//! and the SDK's own decoder reads it. What a user watching a deploy notices: lines appear as
//! the task prints them, in order, masked; past the response's size limit the CLI says where
//! the rest is, and the full log is in S3.
//!
//! The runner of this test binary's harness streams at most 1 MiB
//! (`LUMO_RUNNER_STREAM_LIMIT`), so the limit is reached with 2 MB of output. Without the
//! emulator venv every test here says SKIPPED and passes; with `CI=true` a missing emulator
//! fails them.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use support::RunStatus;
use support::aws::AwsProject;

const STREAM_LIMIT: u64 = 1024 * 1024;

fn stream_project() -> Option<AwsProject> {
    AwsProject::with_harness_args(&["--lambda-env", "LUMO_RUNNER_STREAM_LIMIT=1048576"])
}

macro_rules! stream_project {
    () => {
        match stream_project() {
            Some(project) => project,
            None => return,
        }
    };
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Runs `lumo deploy` and reads its stderr (where task output goes) line by line as it comes:
/// each line with the wall-clock time it arrived. Returns them with the exit code.
fn deploy_watching(a: &AwsProject) -> (Vec<(u128, String)>, i32) {
    let mut child =
        a.p.std_command(support::ACTOR, &["deploy", "--env", "dev"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    for line in stderr.lines() {
        lines.push((now_ms(), line.unwrap()));
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (lines, code)
}

/// Regression for issue 11: on `aws` a task's output appeared only when it ended.
#[test]
fn output_arrives_while_the_task_runs_in_order_and_masked() {
    let a = stream_project!();
    // A line every 500 ms for 4 s, each with the time it was printed; in the middle the secret
    // printed in two writes 600 ms apart (two reads of the pipe, two frames if unmasked).
    a.config("{ ticker: {} }").task(
        "ticker",
        r#"
for i in 1 2 3 4 5 6 7 8; do
  echo "tick $i $(date +%s%3N)"
  if [ "$i" = 4 ]; then
    printf 'secret=%s' "$(printf %s "$TOKEN" | cut -c1-7)"
    sleep 0.6
    printf '%s\n' "$(printf %s "$TOKEN" | cut -c8-)"
  fi
  sleep 0.5
done
echo "ticked"
"#,
    );
    let (lines, code) = deploy_watching(&a);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(code, 0, "{}", text.join("\n"));

    let ticks: Vec<(u128, u32, u128)> = lines
        .iter()
        .filter_map(|(arrived, line)| {
            let at = line.find("tick ")?;
            let mut words = line[at + 5..].split_whitespace();
            let n = words.next()?.parse().ok()?;
            let printed = words.next()?.parse().ok()?;
            Some((*arrived, n, printed))
        })
        .collect();
    assert_eq!(
        ticks.iter().map(|t| t.1).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>(),
        "every line, in order:\n{}",
        text.join("\n")
    );
    let (arrived, _, printed) = ticks[0];
    let latency = arrived.saturating_sub(printed);
    assert!(
        latency <= 1500,
        "the first line was shown {latency} ms after the task printed it"
    );
    // Live, not at the end: the first line was shown long before the last was printed.
    assert!(
        arrived + 2000 < ticks[7].2,
        "first line shown at {arrived}, last printed at {}",
        ticks[7].2
    );
    let all = text.join("\n");
    assert!(all.contains("secret=***"), "{all}");
    assert!(
        !all.contains("tok-9f8e7d6c5b") && !all.contains("tok-9f8"),
        "{all}"
    );

    let runs = a.p.history();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].message.as_deref(), Some("ticked"));
    let logs = a.p.logs(&runs[0].id);
    let log = logs.output.unwrap();
    assert!(
        log.contains("tick 8 ") && log.contains("secret=***"),
        "{log}"
    );
}

#[test]
fn past_the_stream_limit_the_cli_points_at_the_full_log_in_s3() {
    let a = stream_project!();
    // 2 MB of output: twice this runner's stream limit.
    a.config("{ chatty: {} }").task(
        "chatty",
        r#"
i=0
while [ $i -lt 20000 ]; do
  printf 'line %05d %s\n' $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
  i=$((i+1))
done
echo "all printed"
"#,
    );
    let (lines, code) = deploy_watching(&a);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        code,
        0,
        "{}",
        &text[text.len().saturating_sub(20)..].join("\n")
    );
    let runs = a.p.history();
    let run_id = &runs[0].id;
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    assert_eq!(runs[0].message.as_deref(), Some("all printed"));

    let note = text
        .iter()
        .find(|l| l.contains("live output stops here"))
        .unwrap_or_else(|| panic!("no note where the live output stops"));
    assert!(
        note.contains(&format!("`lumo logs {run_id}`")) && note.contains("S3"),
        "{note}"
    );
    let shown = text.iter().filter(|l| l.contains(" xxxxxxxx")).count();
    assert!(
        shown > 1000 && (shown as u64) * 100 < STREAM_LIMIT,
        "{shown} lines shown live"
    );
    assert!(!text.iter().any(|l| l.contains("line 19999")));

    // The full log is in S3, whole.
    let objects = a.objects();
    let (_, log) = objects
        .iter()
        .find(|(key, _)| key.contains("/logs/") && key.ends_with(&format!("{run_id}.log")))
        .unwrap_or_else(|| {
            panic!(
                "no log object; keys: {:?}",
                objects.iter().map(|o| &o.0).collect::<Vec<_>>()
            )
        });
    let log = String::from_utf8_lossy(log);
    assert_eq!(
        log.lines().filter(|l| l.starts_with("line ")).count(),
        20000
    );
    assert!(log.ends_with("all printed\n"));
}

/// On `aws` the log reaches S3 when the run ends: `--follow` of a running run says so, waits,
/// and shows the whole log then.
#[test]
fn logs_follow_of_a_running_aws_run_shows_the_log_when_it_ends() {
    let a = stream_project!();
    a.config("{ slow: {} }")
        .task("slow", "echo first; sleep 4; echo last");
    let mut deploy =
        a.p.std_command(support::ACTOR, &["deploy", "--env", "dev"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let started = SystemTime::now();
    let run_id = loop {
        let runs = a.p.history();
        if let Some(run) = runs.iter().find(|r| r.status == RunStatus::Running) {
            break run.id.clone();
        }
        assert!(
            started.elapsed().unwrap().as_secs() < 60,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let follow = a.p.lumo(&["logs", &run_id, "--follow"]).code(0).clone();
    assert_eq!(deploy.wait().unwrap().code(), Some(0));
    assert!(
        follow.stderr.contains("on aws the log of run `")
            && follow
                .stderr
                .contains("is available when the run ends; showing it then"),
        "{}",
        follow.show()
    );
    assert_eq!(follow.stdout, "first\nlast\n", "{}", follow.show());
}
