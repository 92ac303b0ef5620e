//! `lumo logs RUN_ID [--tail N]`: the full output of a run, or its last N lines (raw on stdout),
//! or with `--json` the run's record and that output. A skipped run never started and has none.
//! RUN_ID may be a unique prefix of the id ([`find_run`]), where the provider can look one up.

use std::fmt;

use lumo_runner::contract::RunStatus;
use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::LogsArgs;
use crate::backend::Backend;
use crate::backend::records::TaskRun;
use crate::error::CliError;
use crate::project::Project;

pub async fn run(args: LogsArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let id_or_prefix = run_id_or_prefix(&args.run_id)?;
    let backend = ctx.connect(&project).await?;
    let run = find_run(&backend, &project, &id_or_prefix).await?;
    let run_id = run.id.clone();
    if run.status == RunStatus::Skipped {
        // A skipped run never started: its whole output is empty, not lost.
        if ctx.printer.json {
            return Ok(Outcome::report(Logs {
                run,
                output: Some(String::new()),
                complete: true,
            }));
        }
        let why = run
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        ctx.printer.status(format!(
            "run `{run_id}` of `{}` was skipped{why} and never started, so it has no output",
            run.task
        ));
        return Ok(Outcome::nothing());
    }
    let mut log = backend.audit.read_log(&run).await?;
    if let (Some(n), Some(bytes)) = (args.tail, log.as_mut()) {
        let keep = last_lines(bytes, n).len();
        bytes.drain(..bytes.len() - keep);
    }
    if ctx.printer.json {
        let output = log
            .as_deref()
            .map(|l| String::from_utf8_lossy(l).into_owned());
        return Ok(Outcome::report(Logs {
            run,
            complete: output.is_some(),
            output,
        }));
    }
    match log {
        Some(bytes) => Ok(Outcome::raw(bytes)),
        None => {
            ctx.printer.warn(format!(
                "the full output of run `{run_id}` is not stored; showing its tail"
            ));
            let tail = run.output_tail.unwrap_or_default().into_bytes();
            let shown = match args.tail {
                Some(n) => last_lines(&tail, n).to_vec(),
                None => tail,
            };
            Ok(Outcome::raw(shown))
        }
    }
}

/// How long a run id is (a ULID).
const RUN_ID_LEN: usize = 26;
/// How many runs an ambiguous prefix lists.
const MAX_MATCHES_SHOWN: usize = 10;

/// A run id as typed: the whole id, or the start of one (as git and docker take them).
pub fn run_id_or_prefix(text: &str) -> Result<String, CliError> {
    let id = text.trim().to_ascii_uppercase();
    if id.is_empty() || id.len() > RUN_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CliError::invalid(format!(
            "`{text}` is not a run id (26 letters and digits, as `lumo history` shows) nor the \
             start of one"
        )));
    }
    Ok(id)
}

/// The run `id` names: the run with that whole id, or the one run whose id starts with it. A
/// prefix that several ids start with is an error listing them.
pub async fn find_run(backend: &Backend, project: &Project, id: &str) -> Result<TaskRun, CliError> {
    let no_run = || {
        CliError::invalid(format!(
            "no run `{id}` in project `{}`",
            project.config.project_name
        ))
        .hint("`lumo history --env ENV` lists recent runs")
    };
    if id.len() == RUN_ID_LEN {
        return backend.audit.run(id).await?.ok_or_else(no_run);
    }
    let mut matches = backend
        .audit
        .runs_by_id_prefix(id, MAX_MATCHES_SHOWN as u32 + 1)
        .await?;
    if matches.len() <= 1 {
        return matches.pop().ok_or_else(no_run);
    }
    let count = if matches.len() > MAX_MATCHES_SHOWN {
        format!("more than {MAX_MATCHES_SHOWN} runs")
    } else {
        format!("{} runs", matches.len())
    };
    let listed: Vec<String> = matches
        .iter()
        .take(MAX_MATCHES_SHOWN)
        .map(|r| format!("{}  {} on `{}`, {}", r.id, r.task, r.env, r.started_at))
        .collect();
    Err(CliError::invalid(format!(
        "the run id `{id}` is ambiguous: {count} start with it:\n  {}",
        listed.join("\n  ")
    ))
    .hint("type more of the run id"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Logs {
    pub run: TaskRun,
    /// The whole output; `None` when only the record's tail is left.
    pub output: Option<String>,
    pub complete: bool,
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.output
                .as_deref()
                .or(self.run.output_tail.as_deref())
                .unwrap_or(""),
        )
    }
}

/// The last `n` lines of `output`. A last line without a newline is a line; a trailing newline
/// does not start an empty one.
fn last_lines(output: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = output.strip_suffix(b"\n").unwrap_or(output);
    let mut newlines = 0;
    for (at, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            newlines += 1;
            if newlines == n {
                return &output[at + 1..];
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn last_lines_counts_a_final_line_without_a_newline_and_no_empty_one_after_a_newline() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\nc\n", 1), b"c\n");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\n\n\nb\n", 3), b"\n\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }
}
