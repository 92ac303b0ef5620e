//! `lumo logs RUN_ID`: the full output of a run (raw on stdout), or with `--json` the run's
//! record and its output. A skipped run never started and has none.

use std::fmt;

use lumo_runner::contract::RunStatus;
use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::LogsArgs;
use crate::backend::records::TaskRun;
use crate::error::CliError;

pub async fn run(args: LogsArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let run_id = args.run_id.trim().to_ascii_uppercase();
    if run_id.len() != 26 || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CliError::invalid(format!(
            "`{}` is not a run id (26 letters and digits, as `lumo history` shows)",
            args.run_id
        )));
    }
    let backend = ctx.connect(&project).await?;
    let Some(run) = backend.audit.run(&run_id).await? else {
        return Err(CliError::invalid(format!(
            "no run `{run_id}` in project `{}`",
            project.config.project_name
        ))
        .hint("`lumo history --env ENV` lists recent runs"));
    };
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
    let log = backend.audit.read_log(&run).await?;
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
            Ok(Outcome::raw(
                run.output_tail.unwrap_or_default().into_bytes(),
            ))
        }
    }
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
