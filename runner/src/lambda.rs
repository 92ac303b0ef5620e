//! The Lambda runner function (PRODUCT.md §9): one synchronous Invoke runs one task.
//!
//! The CLI's `aws` provider invokes `<project>-<env>-lumo-runner` with an [`InvokeRequest`] and
//! records the [`InvokeResponse`] it gets back. Per invocation the runner
//! 1. gets the bundle: from the `/tmp` cache ([`cache`]), else from its presigned GET URL,
//!    refusing a download whose sha256 is not the one the CLI recorded;
//! 2. runs it with [`run_bundle`], exactly as the `local` provider does, under a timeout lowered
//!    to end before the function's own deadline, so a timeout is a recorded `timed_out` and
//!    never a killed function;
//! 3. uploads the full masked output, and `data` too large for the response, to presigned PUT
//!    URLs ([`transfer`]);
//! 4. returns the outcome.
//!
//! Whatever the task does (fail, time out, turn out not to be the bundle that was built) is a
//! normal response the CLI records as the run's outcome. Only what keeps the runner from doing
//! its part (a payload it cannot read, a bundle it cannot download, a run directory it cannot
//! make) is a handler error, which `lambda_runtime` reports as a function error.
//!
//! `main` hands [`handler`] to `lambda_runtime`; tests call [`invoke`], which takes the
//! configuration and the deadline rather than the environment and a `Context`.

pub mod cache;
pub mod transfer;

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::contract::{BundleLocation, InvokeRequest, InvokeResponse, RunStatus};
use crate::executor::{DEFAULT_KILL_GRACE, DiscardOutput, ExecError, ExecOutcome, format_duration};
use crate::mask::Masker;
use crate::run::{BundleRun, RunnerError, run_bundle};
use cache::{BundleCache, CacheError, Fetched};
use transfer::TransferError;

/// The environment variable naming the runner's directory in `/tmp`.
pub const CACHE_DIR_ENV: &str = "LUMO_RUNNER_CACHE";

/// The runner's directory when [`CACHE_DIR_ENV`] is not set.
pub const DEFAULT_CACHE_DIR: &str = "/tmp/lumo";

/// How many bytes of bundles the cache keeps.
///
/// Beside a full cache, `/tmp` holds the bundle being downloaded or the running bundle's
/// unpacked copy (up to Lambda's 250 MB each), and the run's log: more than Lambda's default
/// 512 MB of ephemeral storage at worst. So `lumo deploy` gives the runner function 1024 MB
/// (`EphemeralStorage`, checked on every deploy like its memory and timeout), which holds all of
/// it with room for a large log.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Time kept free before the function's deadline, after the task has been stopped, for the
/// uploads and the response.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// How often a running task's cancel object is looked for: the longest a Ctrl-C on the CLI
/// waits before the task gets SIGTERM in Lambda. One GET per second of a run (fractions of a
/// cent per hour).
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// `data` that serialises to more than this goes to `data_upload` when the request gives one.
pub const DATA_INLINE_MAX_BYTES: usize = 256 * 1024;

/// `data` larger than this is never returned in the response: Lambda refuses responses over
/// 6 MB, and a refused response would lose the whole outcome, not just the data.
pub const DATA_RESPONSE_MAX_BYTES: usize = 5 * 1024 * 1024;

/// The longest message returned (a task's result file may hold a message of megabytes).
pub const MESSAGE_MAX_BYTES: usize = 64 * 1024;

/// The runner's version, returned with every response.
pub const RUNNER_VERSION: &str = env!("CARGO_PKG_VERSION");

const LOG_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const DATA_CONTENT_TYPE: &str = "application/json";

/// A deadline for invocations that came without one (a local emulator): Lambda's longest
/// function timeout.
const NO_DEADLINE: Duration = Duration::from_secs(900);

/// Where the runner keeps its files and how much time it keeps for itself.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// `bundles/` (the cache), `work/` (runs' unpacked bundles), `logs/` (runs' output until
    /// uploaded) live here. The runner owns the directory: it clears `work/` and `logs/` when
    /// the process starts.
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// See [`DEADLINE_MARGIN`].
    pub deadline_margin: Duration,
    /// Time a task gets between SIGTERM and SIGKILL when it is stopped.
    pub kill_grace: Duration,
    /// How often a run with a `cancel_url` looks for the CLI's cancel object ([`CANCEL_POLL`]).
    pub cancel_poll: Duration,
}

impl RunnerConfig {
    /// The defaults, with everything under `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> RunnerConfig {
        RunnerConfig {
            cache_dir,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            deadline_margin: DEADLINE_MARGIN,
            kill_grace: DEFAULT_KILL_GRACE,
            cancel_poll: CANCEL_POLL,
        }
    }

    /// The defaults, with the directory from [`CACHE_DIR_ENV`].
    pub fn from_env() -> RunnerConfig {
        let dir = std::env::var_os(CACHE_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
        RunnerConfig::new(dir)
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.cache_dir.join("bundles")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.cache_dir.join("work")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.cache_dir.join("logs")
    }

    fn cache(&self) -> BundleCache {
        BundleCache::new(self.bundles_dir(), self.cache_max_bytes)
    }

    /// Removes what a previous process in this sandbox left when it was stopped mid-run (a
    /// crash, an out-of-memory kill): its unpacked bundles, logs and partial downloads would
    /// otherwise fill `/tmp` for good. Cached bundles stay.
    pub fn clear_leftovers(&self) {
        for dir in [self.work_dir(), self.logs_dir()] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("could not clear `{}`: {e}", dir.display()),
            }
        }
        self.cache().remove_partial_downloads();
    }
}

/// Why the runner could not do its part of an invocation. Reported as a function error; a task
/// that fails is an [`InvokeResponse`], not one of these.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error(
        "the payload is not a valid lumo `InvokeRequest` (lumo-runner {RUNNER_VERSION}): {reason}"
    )]
    Payload { reason: String },
    #[error(transparent)]
    Bundle(#[from] CacheError),
    #[error("could not prepare `{}` for the run's output", path.display())]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run task `{task}`")]
    Run {
        task: String,
        #[source]
        source: RunnerError,
    },
    #[error("the runner's {what} stopped unexpectedly: {reason}")]
    Internal { what: &'static str, reason: String },
}

impl InvokeError {
    /// The `errorType` the function error is reported with.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvokeError::Payload { .. } => "lumo.InvalidPayload",
            InvokeError::Bundle(CacheError::Download { .. }) => "lumo.BundleDownloadFailed",
            InvokeError::Bundle(CacheError::Store { .. }) | InvokeError::LogFile { .. } => {
                "lumo.RunnerStorageFailed"
            }
            InvokeError::Run { .. } => "lumo.RunFailed",
            InvokeError::Internal { .. } => "lumo.RunnerFailed",
        }
    }
}

/// The function error's message is the whole chain: the CLI shows it as it is.
impl From<InvokeError> for Diagnostic {
    fn from(error: InvokeError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error_chain(&error),
        }
    }
}

/// `error` and its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The function's handler: `main` runs `lambda_runtime::run(service_fn(handler))`.
///
/// Reads its configuration from the environment ([`CACHE_DIR_ENV`]) on the first invocation,
/// when it also clears what an earlier process left behind; the deadline comes from the
/// invocation's context.
pub async fn handler(event: LambdaEvent<Value>) -> Result<InvokeResponse, InvokeError> {
    static CONFIG: OnceLock<RunnerConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let config = RunnerConfig::from_env();
        config.clear_leftovers();
        config
    });
    let (payload, context) = event.into_parts();
    let deadline = if context.deadline == 0 {
        SystemTime::now() + NO_DEADLINE
    } else {
        context.deadline()
    };
    let result = match parse_request(payload) {
        Ok(request) => invoke(config, request, deadline).await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(response) => tracing::info!(
            status = %response.status,
            output_bytes = response.output_bytes,
            "task run ended"
        ),
        Err(e) => tracing::error!("{}", error_chain(e)),
    }
    result
}

/// Reads the payload as an [`InvokeRequest`]. The error message says what does not fit, with
/// any secret value it might quote masked.
pub fn parse_request(payload: Value) -> Result<InvokeRequest, InvokeError> {
    let secrets = payload
        .get("secrets")
        .map(secret_values)
        .unwrap_or_default();
    serde_json::from_value(payload).map_err(|e| InvokeError::Payload {
        reason: Masker::new(secrets).mask_str(&e.to_string()),
    })
}

/// Every string in the `secrets` value, whatever its shape.
fn secret_values(secrets: &Value) -> Vec<String> {
    match secrets {
        Value::String(s) => vec![s.clone()],
        Value::Object(map) => map.values().flat_map(secret_values).collect(),
        Value::Array(items) => items.iter().flat_map(secret_values).collect(),
        _ => Vec::new(),
    }
}

/// Runs one invocation: fetch the bundle, run the task, upload its artifacts, say how it went.
/// Everything the run does ends before `deadline` (the function's), less the configured margin.
pub async fn invoke(
    config: &RunnerConfig,
    request: InvokeRequest,
    deadline: SystemTime,
) -> Result<InvokeResponse, InvokeError> {
    let sha256 = bundle_sha256(&request.bundle)?;
    let cache = config.cache();
    let (zip, from_cache) =
        match fetch(&cache, &request.bundle, &sha256, deadline, config, true).await? {
            Fetched::Ready { zip, from_cache } => (zip, from_cache),
            Fetched::Mismatch { actual } => return Ok(refused(&request.bundle, actual)),
        };
    match run_once(config, &request, &zip, &sha256, deadline).await {
        Err(InvokeError::Run {
            source: RunnerError::HashMismatch { actual, .. },
            ..
        }) if from_cache => {
            // The cached copy changed on disk after it was checked in; nothing ran. A fresh
            // download is the bundle the CLI asked for, or is refused like any other.
            tracing::warn!(
                key = %request.bundle.key,
                "the cached bundle has sha256 {actual}; downloading it again"
            );
            cache.remove(&sha256);
            match fetch(&cache, &request.bundle, &sha256, deadline, config, false).await? {
                Fetched::Ready { zip, .. } => finish_refused(
                    &request.bundle,
                    run_once(config, &request, &zip, &sha256, deadline).await,
                ),
                Fetched::Mismatch { actual } => Ok(refused(&request.bundle, actual)),
            }
        }
        result => finish_refused(&request.bundle, result),
    }
}

/// A bundle that changed between its check and its run is refused like a bad download.
fn finish_refused(
    bundle: &BundleLocation,
    result: Result<InvokeResponse, InvokeError>,
) -> Result<InvokeResponse, InvokeError> {
    match result {
        Err(InvokeError::Run {
            source: RunnerError::HashMismatch { actual, .. },
            ..
        }) => Ok(refused(bundle, actual)),
        other => other,
    }
}

/// The request's bundle hash as the cache names it: 64 lowercase hex digits. Anything else
/// would not name a bundle (and must not name a path).
fn bundle_sha256(bundle: &BundleLocation) -> Result<String, InvokeError> {
    let sha256 = bundle.sha256.trim();
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha256.to_ascii_lowercase())
    } else {
        Err(InvokeError::Payload {
            reason: format!(
                "`bundle.sha256` must be 64 hex digits, not `{}`",
                bundle.sha256
            ),
        })
    }
}

async fn fetch(
    cache: &BundleCache,
    bundle: &BundleLocation,
    sha256: &str,
    deadline: SystemTime,
    config: &RunnerConfig,
    use_cache: bool,
) -> Result<Fetched, InvokeError> {
    let (cache, bundle, sha256) = (cache.clone(), bundle.clone(), sha256.to_owned());
    // A download that hangs must still leave time to say so.
    let timeout = time_left(deadline, config.deadline_margin);
    let fetched = tokio::task::spawn_blocking(move || {
        if use_cache {
            cache.fetch(&bundle, &sha256, timeout)
        } else {
            cache.download(&bundle, &sha256, timeout)
        }
    })
    .await
    .map_err(|e| InvokeError::Internal {
        what: "bundle download",
        reason: e.to_string(),
    })??;
    Ok(fetched)
}

/// The response for a bundle whose content is not the one built: nothing ran. Worded as the
/// `local` provider words it, with the S3 key for the path.
fn refused(bundle: &BundleLocation, actual: String) -> InvokeResponse {
    let message = RunnerError::HashMismatch {
        path: PathBuf::from(&bundle.key),
        expected: bundle.sha256.clone(),
        actual,
    }
    .to_string();
    tracing::warn!("{message}");
    let now = epoch_ms(SystemTime::now());
    InvokeResponse {
        status: RunStatus::Failed,
        exit_code: None,
        signal: None,
        message,
        data: None,
        data_uploaded: false,
        output_tail: String::new(),
        output_bytes: 0,
        log_uploaded: false,
        upload_error: None,
        started_at_ms: now,
        ended_at_ms: now,
        runner_version: RUNNER_VERSION.to_owned(),
    }
}

/// Runs the task from `zip` and uploads what it produced.
async fn run_once(
    config: &RunnerConfig,
    request: &InvokeRequest,
    zip: &Path,
    sha256: &str,
    deadline: SystemTime,
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
    let requested = Duration::from_millis(request.timeout_ms);
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
    let run = BundleRun {
        bundle_zip: zip.to_owned(),
        sha256: sha256.to_owned(),
        work_root: config.work_dir(),
        context: request.context.clone(),
        env: request.env.clone(),
        secrets: request.secrets.clone(),
        timeout,
        kill_grace: config.kill_grace,
        log_file: log.as_ref().map(|log| log.path.clone()),
        stop: cancel.as_ref().map(|watch| watch.stop.clone()),
    };
    // Nothing to stream live: the response carries the tail, the log file the rest.
    let ran = run_bundle(run, &mut DiscardOutput).await;
    drop(cancel);
    let (mut outcome, log_error) = match ran {
        Ok(outcome) => (outcome, None),
        Err(RunnerError::Exec(ExecError::WriteLog {
            path,
            source,
            outcome,
        })) => {
            let reason = format!(
                "could not write the full output to `{}` ({source}), so it was not uploaded",
                path.display()
            );
            (*outcome, Some(reason))
        }
        Err(source) => {
            return Err(InvokeError::Run {
                task: request.task.clone(),
                source,
            });
        }
    };
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
    let data = outcome.data.take();
    let mut artifacts = upload_artifacts(request, log_path, data, deadline).await;
    if let Some(reason) = log_error {
        artifacts.errors.insert(0, reason);
    }
    Ok(response(outcome, artifacts))
}

/// The look for the CLI's cancel object while a task runs: every `every`, a GET of the
/// presigned `cancel_url`; once it exists, `stop` turns `true` (the executor then stops the
/// task as on a timeout). A failed look (the network, S3) is tried again; the first failure is
/// logged. The looking ends when this is dropped, the run's end or a panic alike.
struct CancelWatch {
    stop: tokio::sync::watch::Receiver<bool>,
    looking: tokio::task::JoinHandle<()>,
}

impl CancelWatch {
    fn start(url: String, every: Duration) -> CancelWatch {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let looking = tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(every).await;
                let url = url.clone();
                let looked =
                    tokio::task::spawn_blocking(move || transfer::exists(&url, every * 5)).await;
                match looked {
                    Ok(Ok(true)) => {
                        tracing::info!("the CLI asked to stop the run; stopping the task");
                        let _ = stop.send(true);
                        return;
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) if !warned => {
                        tracing::warn!(
                            "could not look for the run's cancel signal (trying on): {e}"
                        );
                        warned = true;
                    }
                    Ok(Err(_)) => {}
                    Err(e) => tracing::warn!("the look for the run's cancel signal failed: {e}"),
                }
            }
        });
        CancelWatch {
            stop: stopped,
            looking,
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.looking.abort();
    }
}

/// The task's timeout, lowered when needed so the task (and its kill grace, within `reserve`)
/// ends before `deadline`; `true` when it was lowered. A run that cannot fit at all gets no
/// time and is recorded `timed_out`.
fn effective_timeout(
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

/// How long a transfer may take and still end `keep` before `deadline`; at least a second, so
/// an invocation that is already late still tries.
fn time_left(deadline: SystemTime, keep: Duration) -> Duration {
    deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .saturating_sub(keep)
        .max(Duration::from_secs(1))
}

/// What became of the run's output and data.
#[derive(Debug, Default)]
struct Artifacts {
    data: Option<Value>,
    data_uploaded: bool,
    log_uploaded: bool,
    /// Why something could not be uploaded or returned, one reason each.
    errors: Vec<String>,
}

/// Uploads the log (when there is one and a target) and oversized data (when there is a
/// target), side by side. A failed upload never fails the run: it is reported in the response.
async fn upload_artifacts(
    request: &InvokeRequest,
    log: Option<&Path>,
    data: Option<Value>,
    deadline: SystemTime,
) -> Artifacts {
    // Keep a second for the response itself.
    let timeout = time_left(deadline, Duration::from_secs(1));
    let log_upload = async {
        let (Some(target), Some(path)) = (&request.log_upload, log) else {
            return Ok(false);
        };
        let (url, path) = (target.url.clone(), path.to_owned());
        spawn_transfer(move || transfer::upload_file(&url, &path, LOG_CONTENT_TYPE, timeout))
            .await
            .map(|()| true)
            .map_err(|e| {
                format!(
                    "could not upload the output to `{}`: {}",
                    target.key,
                    error_chain(&e)
                )
            })
    };
    let data_upload = place_data(request, data, timeout);
    let (log_result, (data, data_uploaded, data_error)) = tokio::join!(log_upload, data_upload);
    let mut artifacts = Artifacts {
        data,
        data_uploaded,
        ..Artifacts::default()
    };
    match log_result {
        Ok(uploaded) => artifacts.log_uploaded = uploaded,
        Err(reason) => artifacts.errors.push(reason),
    }
    artifacts.errors.extend(data_error);
    artifacts
}

/// Decides where `data` goes: inline when small, to `data_upload` when large and possible,
/// inline anyway when the upload fails and it fits the response, else nowhere (with a reason).
async fn place_data(
    request: &InvokeRequest,
    data: Option<Value>,
    timeout: Duration,
) -> (Option<Value>, bool, Option<String>) {
    let Some(value) = data else {
        return (None, false, None);
    };
    let bytes = match serde_json::to_vec(&value) {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                None,
                false,
                Some(format!("could not serialise `data`: {e}")),
            );
        }
    };
    let size = bytes.len();
    if size <= DATA_INLINE_MAX_BYTES {
        return (Some(value), false, None);
    }
    let mut reason = None;
    if let Some(target) = &request.data_upload {
        let url = target.url.clone();
        match spawn_transfer(move || {
            transfer::upload_bytes(&url, &bytes, DATA_CONTENT_TYPE, timeout)
        })
        .await
        {
            Ok(()) => return (None, true, None),
            Err(e) => {
                reason = Some(format!(
                    "could not upload `data` to `{}`: {}",
                    target.key,
                    error_chain(&e)
                ));
            }
        }
    }
    if size > DATA_RESPONSE_MAX_BYTES {
        let left_out = format!(
            "`data` ({size} bytes) is too large to return from the runner function (at most {} MiB) and was left out",
            DATA_RESPONSE_MAX_BYTES / (1024 * 1024)
        );
        let reason = match reason {
            Some(upload) => format!("{upload}; {left_out}"),
            None => left_out,
        };
        return (None, false, Some(reason));
    }
    (Some(value), false, reason)
}

async fn spawn_transfer<F>(transfer: F) -> Result<(), TransferError>
where
    F: FnOnce() -> Result<(), TransferError> + Send + 'static,
{
    tokio::task::spawn_blocking(transfer)
        .await
        .unwrap_or_else(|e| {
            Err(TransferError::Http {
                reason: format!("the upload stopped unexpectedly: {e}"),
            })
        })
}

fn response(outcome: ExecOutcome, artifacts: Artifacts) -> InvokeResponse {
    InvokeResponse {
        status: outcome.status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        message: cap_message(outcome.message),
        data: artifacts.data,
        data_uploaded: artifacts.data_uploaded,
        output_tail: outcome.output_tail,
        output_bytes: outcome.output_bytes,
        log_uploaded: artifacts.log_uploaded,
        upload_error: (!artifacts.errors.is_empty()).then(|| artifacts.errors.join("; ")),
        started_at_ms: epoch_ms(outcome.started_at),
        ended_at_ms: epoch_ms(outcome.ended_at),
        runner_version: RUNNER_VERSION.to_owned(),
    }
}

/// `message` cut to [`MESSAGE_MAX_BYTES`] at a character boundary, marked with `…` when cut.
fn cap_message(mut message: String) -> String {
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

fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// Logs to stderr (CloudWatch adds the time), warnings and errors only unless `RUST_LOG` asks
/// for more.
///
/// `lambda_runtime` logs each raw event at TRACE, and an event holds the task's secrets: those
/// events are dropped whatever `RUST_LOG` says.
pub fn init_tracing() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
    use tracing_subscriber::prelude::*;

    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    let no_raw_events = filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE && meta.target().starts_with("lambda_runtime"))
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_filter(env_filter)
        .with_filter(no_raw_events);
    // Only fails when a subscriber is already set, and then that one is used.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests;
