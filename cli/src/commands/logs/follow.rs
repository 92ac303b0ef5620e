//! `lumo logs RUN_ID --follow`: the output of a run still going, as it is written, until the
//! run ends (as `tail -f`, `docker logs -f` and `kubectl logs -f` follow theirs).
//!
//! On `local` the runner writes the log file as the task prints (`executor/output.rs`), so the
//! file is read as it grows, and the run's record says when to stop. On `aws` the runner
//! uploads the log to S3 only when the run ends (output streams live to the CLI that started
//! the run, not to the store), so `--follow` says so and shows the log then.

use std::io::{self, Read};
use std::time::Duration;

use lumo_runner::contract::RunStatus;

use super::last_lines;
use crate::backend::records::TaskRun;
use crate::backend::{Backend, LogReader};
use crate::commands::Context;
use crate::config::Provider;
use crate::error::CliError;
use crate::project::Project;

/// How often the growing log is read again once it is read to its end.
const LOG_POLL: Duration = Duration::from_millis(100);
/// How often the run's record is read to see whether it ended (local: a file read).
const RECORD_POLL: Duration = Duration::from_millis(400);
/// How often a run on `aws` is looked at (one DynamoDB read).
const AWS_RECORD_POLL: Duration = Duration::from_secs(2);

/// Shows the output of `run` (running) as it comes and returns once the run has ended and its
/// log is shown whole; `tail` lines of what was already written first, when asked.
pub(super) async fn follow(
    ctx: &Context,
    project: &Project,
    backend: &Backend,
    run: TaskRun,
    tail: Option<usize>,
) -> Result<(), CliError> {
    if project.config.provider == Provider::Aws {
        return follow_until_uploaded(ctx, backend, run, tail).await;
    }
    let mut log = backend.audit.open_log(&run).await?;
    if let (Some(n), Some(reader)) = (tail, log.as_mut()) {
        // The last lines of what is there now; the rest as it comes.
        let mut start = Vec::new();
        read_available(reader, &mut start, &run)?;
        print(ctx, last_lines(&start, n))?;
    }
    let mut since_record = Duration::ZERO;
    loop {
        if let Some(reader) = log.as_mut() {
            copy_available(ctx, reader, &run)?;
        } else {
            // The runner has not created the file yet.
            log = backend.audit.open_log(&run).await?;
        }
        if since_record >= RECORD_POLL {
            since_record = Duration::ZERO;
            let ended = !matches!(
                backend.audit.run(&run.id).await?.map(|r| r.status),
                Some(RunStatus::Running)
            );
            if ended {
                // What the task wrote last, after the record said it ended.
                if log.is_none() {
                    log = backend.audit.open_log(&run).await?;
                }
                if let Some(reader) = log.as_mut() {
                    copy_available(ctx, reader, &run)?;
                }
                return Ok(());
            }
        }
        tokio::time::sleep(LOG_POLL).await;
        since_record += LOG_POLL;
    }
}

/// On `aws`: waits for the run to end, then shows its log as `lumo logs` does.
async fn follow_until_uploaded(
    ctx: &Context,
    backend: &Backend,
    run: TaskRun,
    tail: Option<usize>,
) -> Result<(), CliError> {
    ctx.printer.status(format!(
        "on aws the log of run `{}` is available when the run ends; showing it then",
        run.id
    ));
    let ended = loop {
        tokio::time::sleep(AWS_RECORD_POLL).await;
        match backend.audit.run(&run.id).await? {
            Some(r) if r.status == RunStatus::Running => continue,
            Some(r) => break r,
            None => break run,
        }
    };
    match backend.audit.read_log(&ended).await? {
        Some(bytes) => print(ctx, tail.map_or(&bytes[..], |n| last_lines(&bytes, n))),
        None => {
            ctx.printer.warn(format!(
                "the full output of run `{}` is not stored; showing its tail",
                ended.id
            ));
            let text = ended.output_tail.unwrap_or_default().into_bytes();
            print(ctx, tail.map_or(&text[..], |n| last_lines(&text, n)))
        }
    }
}

/// Prints what the log has beyond what was read, a block at a time, as it is (a line may come
/// in two pieces).
fn copy_available(ctx: &Context, log: &mut LogReader, run: &TaskRun) -> Result<(), CliError> {
    let mut block = vec![0u8; 64 * 1024];
    loop {
        match log.read(&mut block) {
            Ok(0) => return Ok(()),
            Ok(n) => print(ctx, &block[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(run, e)),
        }
    }
}

fn read_error(run: &TaskRun, e: io::Error) -> CliError {
    CliError::new(
        crate::error::ExitKind::Backend,
        format!("cannot read the log of run `{}`: {e}", run.id),
    )
}

/// Reads `log` to its current end into `into`.
fn read_available(log: &mut LogReader, into: &mut Vec<u8>, run: &TaskRun) -> Result<(), CliError> {
    let mut block = [0u8; 64 * 1024];
    loop {
        match log.read(&mut block) {
            Ok(0) => return Ok(()),
            Ok(n) => into.extend_from_slice(&block[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(run, e)),
        }
    }
}

fn print(ctx: &Context, bytes: &[u8]) -> Result<(), CliError> {
    if bytes.is_empty() {
        return Ok(());
    }
    ctx.printer
        .raw(bytes)
        .map_err(|e| CliError::new(crate::error::ExitKind::Backend, e))
}
