//! Judging how a task run went (PRODUCT.md §4 "Outcome"): its exit status and result file
//! become a status, a one-line message and `data`; a run cut short or never started gets the
//! message that says so.
//!
//! Pure apart from reading the result file, so every rule here is the same on a laptop and in
//! Lambda, and testable without a process.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::MAX_RESULT_FILE_BYTES;
use super::output::OutputSummary;
use super::stop::Cut;
use crate::contract::{Entry, RunStatus, TaskResult};
use crate::mask::Masker;
use crate::task_run::RunOutcome;

/// The outcome of a task that never ran: recorded like any failed run.
pub(super) fn not_started(
    entry: &Entry,
    reason: &str,
    masker: &Masker,
    at: SystemTime,
) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed,
        exit_code: None,
        signal: None,
        message: masker.mask_str(&format!("could not start `{}`: {reason}", entry.label())),
        data: None,
        output_tail: String::new(),
        output_bytes: 0,
        started_at: at,
        ended_at: at,
    }
}

/// The outcome of a run that was cut short: its result file is not read (a task stopped
/// half-way may have written one it no longer stands behind).
pub(super) fn cut_short(
    cut: Cut,
    exit: ExitStatus,
    timeout: Duration,
    output: &OutputSummary,
    started_at: SystemTime,
    ended_at: SystemTime,
) -> RunOutcome {
    let (status, message) = match cut {
        Cut::TimedOut => (
            RunStatus::TimedOut,
            format!("timed out after {}", format_duration(timeout)),
        ),
        Cut::Stopped => (RunStatus::Failed, "stopped before it ended".to_string()),
    };
    RunOutcome {
        status,
        exit_code: exit.code(),
        signal: exit.signal(),
        message,
        data: None,
        output_tail: output.tail.clone(),
        output_bytes: output.bytes,
        started_at,
        ended_at,
    }
}

/// A result file that is not a valid `TaskResult`.
#[derive(Debug)]
pub(super) struct InvalidResult {
    /// Why not, for a script's author (serde's words, or the check that failed).
    reason: String,
    /// What the file held, when it could be read: for a Node handler it is what the handler
    /// returned, written by lumo's entry, and the message shows it.
    text: Option<String>,
}

impl InvalidResult {
    fn unread(reason: impl Into<String>) -> InvalidResult {
        InvalidResult {
            reason: reason.into(),
            text: None,
        }
    }

    fn read(reason: impl Into<String>, bytes: &[u8]) -> InvalidResult {
        InvalidResult {
            reason: reason.into(),
            text: Some(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    /// The run's message: a script's author is told about the file and its contract; a
    /// handler's, about the value the handler returned and what a handler returns.
    fn message(&self, entry: &Entry, masker: &Masker) -> String {
        if !matches!(entry, Entry::Node(_)) {
            return format!(
                "result file is not a valid TaskResult: {}; a task writes \
                 {{\"success\": bool, \"message\": string, \"data\"?: object}} to LUMO_RESULT_FILE",
                self.reason
            );
        }
        const EXPECTED: &str =
            "a handler returns { success: boolean, message: string, data?: object }, or nothing";
        let Some(text) = &self.text else {
            return format!(
                "the handler's return value is not a TaskResult: {}; {EXPECTED}",
                self.reason
            );
        };
        let problems = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => result_object_problems(&fields),
            // Not an object (`42`, `"ok"`), or a function the entry wrote as its source: what
            // it returned says it all.
            _ => Vec::new(),
        };
        let problems = if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join(", "))
        };
        format!(
            "the handler returned {}{problems}; {EXPECTED}",
            shortened(&masker.mask_str(text))
        )
    }
}

/// What keeps a returned object from being a `TaskResult`, in the order of its fields.
fn result_object_problems(fields: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    match fields.get("success") {
        None => problems.push("no `success`".to_owned()),
        Some(Value::Bool(_)) => {}
        Some(other) => problems.push(format!("`success` is {}", json_kind(other))),
    }
    match fields.get("message") {
        None => problems.push("no `message`".to_owned()),
        Some(Value::String(_)) => {}
        Some(other) => problems.push(format!("`message` is {}", json_kind(other))),
    }
    match fields.get("data") {
        None | Some(Value::Null | Value::Object(_)) => {}
        Some(other) => problems.push(format!("`data` is {}", json_kind(other))),
    }
    for key in fields.keys() {
        if !matches!(key.as_str(), "success" | "message" | "data") {
            problems.push(format!("unknown key `{key}`"));
        }
    }
    problems
}

/// How much of a returned value a message quotes.
const QUOTED_VALUE_CHARS: usize = 60;

/// `text` on one line, cut to [`QUOTED_VALUE_CHARS`] with `…`. Cut after masking, so that a
/// secret is never cut into a part the masker no longer knows.
fn shortened(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(QUOTED_VALUE_CHARS) {
        Some((end, _)) => format!("{}…", &one_line[..end]),
        None => one_line,
    }
}

/// Reads the task's result file: `Ok(None)` when the task wrote none, `Err` when what it wrote
/// is not a valid `TaskResult`.
pub(super) async fn read_result_file(path: &Path) -> Result<Option<TaskResult>, InvalidResult> {
    // A stat on the runtime's thread: handing it to a blocking thread costs more than it does
    // (most tasks write no result file).
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InvalidResult::unread(format!("could not read it: {e}"))),
    };
    // Opening a FIFO would block until someone writes to it, and nobody will.
    if !metadata.is_file() {
        return Err(InvalidResult::unread("it is not a regular file"));
    }
    if metadata.len() > MAX_RESULT_FILE_BYTES {
        return Err(InvalidResult::unread(format!(
            "it is larger than {} MiB",
            MAX_RESULT_FILE_BYTES / (1024 * 1024)
        )));
    }
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| InvalidResult::unread(format!("could not read it: {e}")))?;
    let mut bytes = Vec::new();
    // The length checked above may have grown since; never read more than the limit.
    file.take(MAX_RESULT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| InvalidResult::unread(format!("could not read it: {e}")))?;
    if bytes.len() as u64 > MAX_RESULT_FILE_BYTES {
        return Err(InvalidResult::unread(format!(
            "it is larger than {} MiB",
            MAX_RESULT_FILE_BYTES / (1024 * 1024)
        )));
    }
    if bytes.trim_ascii().is_empty() {
        return Err(InvalidResult::read("the file is empty", &bytes));
    }
    let result: TaskResult =
        serde_json::from_slice(&bytes).map_err(|e| InvalidResult::read(e.to_string(), &bytes))?;
    match &result.data {
        None | Some(Value::Object(_)) => Ok(Some(result)),
        Some(other) => Err(InvalidResult::read(
            format!("`data` must be an object, not {}", json_kind(other)),
            &bytes,
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns how the task ended into a status and a message (PRODUCT.md §4 "Outcome").
///
/// `entry` is what ran: a Node handler's failure is told by lumo's own entry script, whose
/// result file carries the thrown error's message along with its exit code 1.
pub(super) fn judge(
    entry: &Entry,
    exit: ExitStatus,
    result: Result<Option<TaskResult>, InvalidResult>,
    output: &OutputSummary,
    masker: &Masker,
    started_at: SystemTime,
    ended_at: SystemTime,
) -> RunOutcome {
    let (result, invalid_result) = match result {
        Ok(result) => (result, None),
        Err(reason) => (None, Some(reason)),
    };
    let mut task_message = match (&invalid_result, &result) {
        (Some(invalid), _) => invalid.message(entry, masker),
        (None, Some(result)) => result.message.clone(),
        (None, None) => output.last_line.clone().unwrap_or_default(),
    };
    let (status, cause) = match (exit.code(), exit.signal()) {
        (Some(0), _) => {
            let succeeded = invalid_result.is_none() && result.as_ref().is_none_or(|r| r.success);
            let status = if succeeded {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            };
            (status, None)
        }
        // A handler that threw: the error's message is the run's (PRODUCT.md §4), as it is
        // for a returned `success: false`; the exit code is still recorded. A handler's own
        // `process.exit(1)` writes no result file, so it reads as any exit code.
        (Some(crate::node::ENTRY_FAILED_EXIT_CODE), _)
            if matches!(entry, Entry::Node(_)) && result.as_ref().is_some_and(|r| !r.success) =>
        {
            (RunStatus::Failed, None)
        }
        (Some(code), _) => (RunStatus::Failed, Some(format!("exit code {code}"))),
        (None, Some(signal)) => (
            RunStatus::Failed,
            Some(format!("killed by signal {}", signal_name(signal))),
        ),
        (None, None) => (
            RunStatus::Failed,
            Some("ended without an exit status".to_owned()),
        ),
    };
    // A failed task's own result file speaks for it; without one, the line that says what went
    // wrong does, rather than whatever was printed after it.
    if status == RunStatus::Failed
        && result.is_none()
        && invalid_result.is_none()
        && let Some(line) = super::error_line::error_line(&output.tail)
    {
        task_message = line;
    }
    let message = match (cause, task_message.is_empty()) {
        (Some(cause), true) => cause,
        (Some(cause), false) => format!("{cause}: {task_message}"),
        (None, false) => task_message,
        (None, true) => format!("exit code {}", exit.code().unwrap_or(0)),
    };
    RunOutcome {
        status,
        exit_code: exit.code(),
        signal: exit.signal(),
        message: masker.mask_str(&message),
        data: result
            .and_then(|r| r.data)
            .map(|data| masker.mask_json(&data)),
        output_tail: output.tail.clone(),
        output_bytes: output.bytes,
        started_at,
        ended_at,
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("{signal}"), |s| s.as_str().to_owned())
}

/// `120s`, `1.5s`, or `300ms` for timeouts under a second.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        // Tenths are plenty for a human, and `1.9889999999999999s` is not one.
        format!("{:.1}s", d.as_secs_f64())
    }
}
