//! Lumo Framework handlers run through lumo's Node entry and the executor, on real Node.js with
//! hand-made bundles (a `handler.mjs` written as the bundler would write it): what a user sees
//! for each way a handler can end.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::contract::{DeploymentInfo, Entry, RunStatus, TaskContext, Trigger};
use crate::executor::{TaskProcess, become_subreaper, execute};
use crate::task_run::{RunOutcome, TaskSpec};

struct Bundle {
    _dir: tempfile::TempDir,
    work: PathBuf,
    scratch: PathBuf,
}

fn run_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("01NODE{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A bundle whose `handler.mjs` is `source`.
fn bundle(source: &str) -> Bundle {
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("bundle");
    let scratch = dir.path().join("scratch");
    fs::create_dir(&work).unwrap();
    fs::create_dir(&scratch).unwrap();
    fs::write(work.join("handler.mjs"), source).unwrap();
    Bundle {
        _dir: dir,
        work,
        scratch,
    }
}

impl Bundle {
    fn process(&self) -> TaskProcess {
        let context = TaskContext {
            deployment: DeploymentInfo {
                is_first_deploy: false,
                previous_version: Some("v1".into()),
                environment: "staging".into(),
                version: "v2".into(),
            },
            config: json!({ "batch": 10 }),
            args: BTreeMap::new(),
            working_directory: self.work.to_string_lossy().into_owned(),
            task: "database/migrate".into(),
            run_id: run_id(),
            trigger: Trigger::Update,
        };
        let mut p = TaskProcess::new(
            TaskSpec::new(context, Duration::from_secs(20)),
            Entry::Node("handler.mjs".into()),
            self.work.clone(),
            self.scratch.clone(),
        );
        p.kill_grace = Duration::from_millis(300);
        p
    }

    fn pid(&self, name: &str) -> i32 {
        fs::read_to_string(self.work.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

async fn run(process: TaskProcess) -> (RunOutcome, String) {
    let mut seen = Vec::new();
    let outcome = execute(process, &mut seen).await.unwrap();
    (outcome, String::from_utf8(seen).unwrap())
}

fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 1..]
        .trim_start()
        .chars()
        .next();
    !matches!(state, Some('Z' | 'X'))
}

#[tokio::test]
async fn run_gets_the_lumo_context_and_its_result_is_recorded() {
    let b = bundle(
        r#"
export const run = async (ctx) => {
  console.log('Updating from version ' + ctx.deployment.previousVersion);
  console.error('to stderr');
  return {
    success: true,
    message: `Setup complete for ${ctx.deployment.environment}`,
    data: { first: ctx.deployment.isFirstDeploy, batch: ctx.config.batch,
            cwd: process.cwd() === ctx.workingDirectory, task: ctx.task, trigger: ctx.trigger },
  };
};
"#,
    );
    let (outcome, output) = run(b.process()).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.message, "Setup complete for staging");
    assert_eq!(
        outcome.data,
        Some(json!({"first": false, "batch": 10, "cwd": true,
                     "task": "database/migrate", "trigger": "update"}))
    );
    assert_eq!(output, "Updating from version v1\nto stderr\n");
    // lumo's entry is not in the bundle.
    let names: Vec<_> = fs::read_dir(&b.work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["handler.mjs"]);
}

#[tokio::test]
async fn a_default_export_or_handler_is_called_when_there_is_no_run() {
    let cases = [
        "export default async (ctx) => ({ success: true, message: 'default ' + ctx.task });",
        "export default { handler: async (ctx) => ({ success: true, message: 'object ' + ctx.task }) };",
        // What a bundled CommonJS module looks like: its exports object as the default.
        "export default { run(ctx) { return { success: true, message: 'cjs ' + this.tag + ' ' + ctx.task }; }, tag: 'x' };",
        "export async function handler(ctx) { return { success: true, message: 'handler ' + ctx.task }; }",
    ];
    let expected = ["default", "object", "cjs x", "handler"];
    for (source, word) in cases.iter().zip(expected) {
        let (outcome, _) = run(bundle(source).process()).await;
        assert_eq!(
            outcome.status,
            RunStatus::Succeeded,
            "{source}: {outcome:?}"
        );
        assert_eq!(
            outcome.message,
            format!("{word} database/migrate"),
            "{source}"
        );
    }
}

#[tokio::test]
async fn a_module_without_a_handler_fails_saying_what_to_export() {
    let (outcome, _) = run(bundle("export const helper = 1;").process()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome
            .message
            .contains("`handler.mjs` exports no task handler (it exports `helper`)")
            && outcome.message.contains("export `run`"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_throw_fails_with_its_message_and_the_stack_in_the_output() {
    for source in [
        "export const run = async () => { throw new Error('database is down'); };",
        "export const run = () => Promise.reject(new Error('database is down'));",
        "export const run = () => { throw new Error('database is down'); };",
    ] {
        let (outcome, output) = run(bundle(source).process()).await;
        assert_eq!(outcome.status, RunStatus::Failed, "{source}");
        // Exit code 1, as Node gives an uncaught error, but the message is the error's own,
        // not "exit code 1: …".
        assert_eq!(outcome.exit_code, Some(1), "{source}");
        assert_eq!(outcome.message, "database is down", "{source}");
        assert!(
            output.contains("Error: database is down\n    at ") && output.contains("handler.mjs"),
            "{source}: {output}"
        );
    }
}

#[tokio::test]
async fn an_unhandled_rejection_and_process_exit_are_outcomes() {
    let (outcome, output) = run(bundle(
        "export const run = async () => { Promise.reject(new Error('forgotten')); \
         await new Promise((r) => setTimeout(r, 5000)); return { success: true, message: 'no' }; };",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, Some(1));
    assert_eq!(outcome.message, "unhandled promise rejection: forgotten");
    assert!(output.contains("Error: forgotten"), "{output}");

    let (outcome, _) = run(bundle(
        "export const run = async () => { console.log('giving up'); process.exit(3); };",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.message, "exit code 3: giving up");
}

/// Regression: Node ends a process with nothing left in its event loop even while the
/// handler's promise is pending, and the run was recorded `succeeded`.
#[tokio::test]
async fn a_handler_whose_promise_can_never_settle_fails() {
    let (outcome, _) = run(bundle(
        "export const run = async () => { console.log('waiting'); await new Promise(() => {}); };",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.exit_code, Some(1));
    assert_eq!(
        outcome.message,
        "the handler never finished: it awaited a promise that nothing was left to settle"
    );
}

#[tokio::test]
async fn returning_nothing_follows_the_rule_for_tasks_without_a_result() {
    let (outcome, _) = run(bundle(
        "export const run = async () => { console.log('warmed 3 caches'); };",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.message, "warmed 3 caches");
}

/// Regression: a handler's bad return value got the script's message ("result file is not a
/// valid TaskResult … writes … to LUMO_RESULT_FILE"), which names neither what it returned nor
/// what a handler returns.
#[tokio::test]
async fn a_return_value_that_is_not_a_task_result_says_what_it_returned_and_what_is_expected() {
    const EXPECTED: &str =
        "a handler returns { success: boolean, message: string, data?: object }, or nothing";
    let cases = [
        ("42", "the handler returned 42"),
        ("'ok'", r#"the handler returned "ok""#),
        (
            "{ succes: true }",
            r#"the handler returned {"succes":true} (no `success`, no `message`, unknown key `succes`)"#,
        ),
        (
            "{ success: 'yes' }",
            r#"the handler returned {"success":"yes"} (`success` is a string, no `message`)"#,
        ),
        (
            "{ success: true, message: 'x', data: [1] }",
            r#"the handler returned {"success":true,"message":"x","data":[1]} (`data` is an array)"#,
        ),
        ("() => 1", "the handler returned () => 1"),
    ];
    for (value, says) in cases {
        let source = format!("export const run = async () => ({value});");
        let (outcome, _) = run(bundle(&source).process()).await;
        assert_eq!(outcome.status, RunStatus::Failed, "{source}: {outcome:?}");
        assert_eq!(outcome.message, format!("{says}; {EXPECTED}"), "{source}");
        assert_eq!(outcome.data, None);
    }

    // What it returned is shortened, and masked before it is cut, so that no part of a
    // secret shows.
    let b = bundle(
        "export const run = async () => ({ success: true, messages: 'ok ' + process.env.API_KEY + ' ' + 'x'.repeat(200) });",
    );
    let mut process = b.process();
    process
        .spec
        .secrets
        .insert("API_KEY".into(), "s3cr3t-hyphen-key".into());
    let (outcome, _) = run(process).await;
    assert!(
        outcome
            .message
            .starts_with(r#"the handler returned {"success":true,"messages":"ok *** xxx"#),
        "{}",
        outcome.message
    );
    assert!(
        outcome
            .message
            .contains("x… (no `message`, unknown key `messages`)"),
        "{}",
        outcome.message
    );
    assert!(!outcome.message.contains("s3cr3t"));
    assert!(outcome.message.len() < 300, "{}", outcome.message);

    // A value JSON cannot hold is said by the entry itself.
    let (outcome, _) = run(bundle(
        "export const run = async () => ({ success: true, message: 'x', data: 1n });",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome.message.contains("cannot be written as JSON"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_handler_that_settled_does_not_wait_for_what_it_left_open() {
    let started = Instant::now();
    let (outcome, _) = run(bundle(
        "export const run = async () => { setInterval(() => {}, 1000); \
         return { success: true, message: 'pool left open' }; };",
    )
    .process())
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn secrets_are_masked_in_console_output_and_the_result() {
    let b = bundle(
        "export const run = async () => { console.log('key=' + process.env.API_KEY); \
         return { success: true, message: 'used ' + process.env.API_KEY, data: { k: process.env.API_KEY } }; };",
    );
    let mut process = b.process();
    process
        .spec
        .secrets
        .insert("API_KEY".into(), "s3cr3t-hyphen-key".into());
    let (outcome, output) = run(process).await;
    assert_eq!(output, "key=***\n");
    assert_eq!(outcome.message, "used ***");
    assert_eq!(outcome.data, Some(json!({"k": "***"})));
}

#[tokio::test]
async fn a_handler_outliving_its_timeout_leaves_no_node_process() {
    let b = bundle(
        r#"
import { writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
export const run = async () => {
  writeFileSync('node.pid', String(process.pid));
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  writeFileSync('child.pid', String(child.pid));
  console.log('working…');
  await new Promise(() => {});
};
"#,
    );
    let mut process = b.process();
    process.spec.timeout = Duration::from_millis(1500);
    let (outcome, output) = run(process).await;
    assert_eq!(outcome.status, RunStatus::TimedOut);
    assert_eq!(outcome.message, "timed out after 1.5s");
    assert!(output.contains("working…"), "{output}");
    assert!(!is_alive(b.pid("node.pid")));
    assert!(!is_alive(b.pid("child.pid")));
}

#[tokio::test]
async fn a_module_that_fails_to_load_names_itself() {
    let (outcome, output) = run(bundle("export const run = ;").process()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(
        outcome
            .message
            .starts_with("could not load `handler.mjs`: "),
        "{}",
        outcome.message
    );
    assert!(output.contains("SyntaxError"), "{output}");
}

#[tokio::test]
async fn a_missing_module_is_not_started() {
    let b = bundle("");
    fs::remove_file(b.work.join("handler.mjs")).unwrap();
    let (outcome, _) = run(b.process()).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(
        outcome.message,
        "could not start `handler.mjs`: the bundle has no file `handler.mjs`"
    );
}
