//! One task run inside the function: the bundle already fetched, it runs through
//! [`run_bundle`] as on `local` under a timeout that ends before the function's deadline, with
//! the CLI's cancel object watched; then its artifacts are placed and the response is made.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::artifacts::{Artifacts, upload_artifacts};
use super::cancel::CancelWatch;
use super::{InvokeError, RUNNER_VERSION, RunnerConfig};
use crate::contract::RunStatus;
use crate::executor::{ExecError, OutputObserver, format_duration};
use crate::ids::BundleHash;
use crate::invoke::{InvokeRequest, InvokeResponse, RESPONSE_VERSION};
use crate::run::{BundleFile, BundleRun, RunnerError, run_bundle};
use crate::task_run::RunOutcome;

/// The longest message returned (a task's result file may hold a message of megabytes).
pub const MESSAGE_MAX_BYTES: usize = 64 * 1024;

/// Runs the task from `zip` (with the hash it must have; `None` for a command run without a
/// bundle), its masked output to `output` as it comes, and uploads what it produced.
pub(super) async fn run_once(
    config: &RunnerConfig,
    request: &InvokeRequest,
    zip: Option<(&Path, &BundleHash)>,
    deadline: SystemTime,
    output: &mut dyn OutputObserver,
) -> Result<InvokeResponse, InvokeError> {
    // The full output only goes to a file when there is somewhere to upload it; the response
    // carries the tail either way.
    let log = match request.log_upload {
        Some(_) => {
            let dir = config.logs_dir();
            Some(
                TempLog::create(&dir)
                    .map_err(|source| InvokeError::LogFile { path: dir, source })?,
            )
        }
        None => None,
    };
    let requested = request.spec.timeout;
    let (timeout, lowered) = effective_timeout(
        requested,
        deadline,
        SystemTime::now(),
        config.deadline_margin + config.kill_grace,
    );
    let cancel = request
        .cancel_url
        .clone()
        .map(|url| CancelWatch::start(url, config.cancel_poll));
    let mut spec = request.spec.clone();
    spec.timeout = timeout;
    let run = BundleRun {
        spec,
        bundle: zip.map(|(zip, hash)| BundleFile {
            zip: zip.to_owned(),
            hash: hash.clone(),
            stat: None,
        }),
        work_root: config.work_dir(),
        kill_grace: config.kill_grace,
        log_file: log.as_ref().map(|log| log.path.clone()),
        stop: cancel.as_ref().map(|watch| watch.stop.clone()),
        // The function's `/tmp` is small and a run's tree is its largest file set: unpacked
        // per run, the zip itself is cached (`cache.rs`).
        unpack_cache: None,
    };
    let ran = run_bundle(run, output).await;
    drop(cancel);
    let (mut outcome, log_error) = split_log_error(ran).map_err(|source| InvokeError::Run {
        task: request.spec.task().to_owned(),
        source,
    })?;
    if lowered && outcome.status == RunStatus::TimedOut {
        outcome.message = format!(
            "{} (the task's timeout of {} was lowered to end before the runner function's own)",
            outcome.message,
            format_duration(requested)
        );
    }
    let log_path = log
        .as_ref()
        .filter(|_| log_error.is_none())
        .map(|log| log.path.as_path());
    // The executor creates the log at the task's first output: a task that printed nothing
    // has an empty log, uploaded as any other.
    if let Some(path) = log_path
        && let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        tracing::debug!("could not create the empty log `{}`: {e}", path.display());
    }
    let data = outcome.data.take();
    let mut artifacts = upload_artifacts(request, log_path, data, deadline).await;
    if let Some(reason) = log_error {
        artifacts.errors.insert(0, reason);
    }
    Ok(response(outcome, artifacts))
}

/// The outcome of a run, with why its log is not uploaded when writing the log failed (the
/// task ran to its end regardless, and its outcome stands).
fn split_log_error(
    ran: Result<RunOutcome, RunnerError>,
) -> Result<(RunOutcome, Option<String>), RunnerError> {
    match ran {
        Ok(outcome) => Ok((outcome, None)),
        Err(RunnerError::Exec(ExecError::WriteLog {
            path,
            source,
            outcome,
        })) => {
            let reason = format!(
                "could not write the full output to `{}` ({source}), so it was not uploaded",
                path.display()
            );
            Ok((*outcome, Some(reason)))
        }
        Err(other) => Err(other),
    }
}

/// The task's timeout, lowered when needed so the task (and its kill grace, within `reserve`)
/// ends before `deadline`; `true` when it was lowered. A run that cannot fit at all gets no
/// time and is recorded `timed_out`.
pub(super) fn effective_timeout(
    requested: Duration,
    deadline: SystemTime,
    now: SystemTime,
    reserve: Duration,
) -> (Duration, bool) {
    let available = deadline
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .saturating_sub(reserve);
    if requested <= available {
        (requested, false)
    } else {
        // Whole milliseconds read better in the timed-out message.
        let millis = u64::try_from(available.as_millis()).unwrap_or(u64::MAX);
        (Duration::from_millis(millis), true)
    }
}

/// The response for `outcome`, with what became of its artifacts.
pub(super) fn response(outcome: RunOutcome, artifacts: Artifacts) -> InvokeResponse {
    InvokeResponse {
        v: RESPONSE_VERSION,
        outcome: RunOutcome {
            message: cap_message(outcome.message),
            data: artifacts.data,
            ..outcome
        },
        data_uploaded: artifacts.data_uploaded,
        log_uploaded: artifacts.log_uploaded,
        upload_error: (!artifacts.errors.is_empty()).then(|| artifacts.errors.join("; ")),
        runner_version: RUNNER_VERSION.to_owned(),
    }
}

/// `message` cut to [`MESSAGE_MAX_BYTES`] at a character boundary, marked with `…` when cut.
pub(super) fn cap_message(mut message: String) -> String {
    if message.len() <= MESSAGE_MAX_BYTES {
        return message;
    }
    let mut end = MESSAGE_MAX_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push('…');
    message
}

/// A run's log file under `logs/`, removed when dropped (after its upload, or on any error).
struct TempLog {
    path: PathBuf,
}

impl TempLog {
    fn create(dir: &Path) -> io::Result<TempLog> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(TempLog {
            path: dir.join(format!("{}-{n}.log", std::process::id())),
        })
    }
}

impl Drop for TempLog {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not remove `{}`: {e}", self.path.display()),
        }
    }
}
