//! The Lambda runner function (PRODUCT.md §9): one invocation runs one task, its output
//! streamed to the caller as it comes.
//!
//! The CLI's `aws` provider invokes `<project>-<env>-lumo-runner` with an [`InvokeRequest`]
//! (`InvokeWithResponseStream`) and records the [`InvokeResponse`] that ends the streamed
//! response. Per invocation the runner
//! 1. gets the bundle: from the `/tmp` cache ([`cache`]), else from its presigned GET URL,
//!    refusing a download whose sha256 is not the one the CLI recorded;
//! 2. runs it with [`run_bundle`](crate::run_bundle), exactly as the `local` provider does,
//!    under a timeout lowered to end before the function's own deadline, so a timeout is a
//!    recorded `timed_out` and never a killed function, while it looks for the CLI's cancel
//!    object (`run.rs`, `cancel.rs`), and streams the masked output as it comes (`stream.rs`,
//!    up to the response's size limit);
//! 3. uploads the full masked output, and `data` too large for the response, to presigned PUT
//!    URLs (`artifacts.rs` over [`transfer`]);
//! 4. ends the stream with the outcome.
//!
//! The payload and response types are the versioned wire of [`crate::invoke`] (the stream's
//! framing in [`crate::invoke::stream`]); what the runner keeps in `/tmp` and how much it
//! streams is set in `config.rs`, and what it reports when it cannot do its part in `error.rs`.
//!
//! Whatever the task does (fail, time out, turn out not to be the bundle that was built) is a
//! normal outcome the CLI records as the run's. Only what keeps the runner from doing its part
//! (a payload it cannot read, a bundle it cannot download, a run directory it cannot make) is
//! an error: a payload it cannot read is a function error (nothing was streamed yet), the rest
//! the stream's final error frame.
//!
//! `main` hands [`handler`] to `lambda_runtime`; tests call [`invoke`], which takes the
//! configuration and the deadline rather than the environment and a `Context`.

pub mod cache;
pub mod transfer;

mod artifacts;
mod cancel;
mod config;
mod error;
mod run;
mod stream;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use lambda_runtime::streaming::Body;
use lambda_runtime::{LambdaEvent, StreamResponse};
use serde_json::Value;

use crate::executor::OutputObserver;
use crate::ids::BundleHash;
use crate::invoke::{BundleLocation, INVOKE_VERSION, InvokeRequest, InvokeResponse};
use crate::mask::Masker;
use crate::run::RunnerError;
use crate::task_run::RunOutcome;
use artifacts::Artifacts;
pub use artifacts::{DATA_INLINE_MAX_BYTES, DATA_RESPONSE_MAX_BYTES};
use cache::{BundleCache, Fetched};
pub use config::{
    CACHE_DIR_ENV, CANCEL_POLL, DEADLINE_MARGIN, DEFAULT_CACHE_DIR, DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_STREAM_LIMIT, RunnerConfig, STREAM_LIMIT_ENV, STREAM_OUTCOME_RESERVE,
};
pub use error::{InvokeError, error_chain};
pub use run::MESSAGE_MAX_BYTES;
use run::run_once;

/// The runner's version, returned with every response.
pub const RUNNER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A deadline for invocations that came without one (a local emulator): Lambda's longest
/// function timeout.
const NO_DEADLINE: Duration = Duration::from_secs(900);

/// The function's handler: `main` runs `lambda_runtime::run(service_fn(handler))`.
///
/// Reads its configuration from the environment ([`CACHE_DIR_ENV`], [`STREAM_LIMIT_ENV`]) on
/// the first invocation, when it also clears what an earlier process left behind; the deadline
/// comes from the invocation's context. Answers with a streamed response at once (a payload it
/// cannot read is a function error instead) and runs the task while the stream is written.
pub async fn handler(event: LambdaEvent<Value>) -> Result<StreamResponse<Body>, InvokeError> {
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
    let request = parse_request(payload).inspect_err(|e| tracing::error!("{}", error_chain(e)))?;
    let (body, stream) = lambda_runtime::streaming::channel();
    tokio::spawn(stream::respond(config, request, deadline, body));
    Ok(StreamResponse::from(stream))
}

/// Reads the payload as an [`InvokeRequest`] of a version this runner knows (one without `v`
/// is version 1). The error message says what does not fit, with any secret value it might
/// quote masked.
pub fn parse_request(payload: Value) -> Result<InvokeRequest, InvokeError> {
    let secrets = payload
        .get("secrets")
        .map(secret_values)
        .unwrap_or_default();
    let request: InvokeRequest =
        serde_json::from_value(payload).map_err(|e| InvokeError::Payload {
            reason: Masker::new(secrets).mask_str(&e.to_string()),
        })?;
    // A newer CLI would only send a new version for a change this runner would misread.
    if request.v > INVOKE_VERSION {
        return Err(InvokeError::Payload {
            reason: format!(
                "it is version {} of the payload, and this runner reads versions up to {INVOKE_VERSION}",
                request.v
            ),
        });
    }
    Ok(request)
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

/// Runs one invocation: fetch the bundle, run the task (its masked output to `output` as it
/// comes, for a response that streams it), upload its artifacts, say how it went. Everything
/// the run does ends before `deadline` (the function's), less the configured margin.
pub async fn invoke(
    config: &RunnerConfig,
    request: InvokeRequest,
    deadline: SystemTime,
    output: &mut dyn OutputObserver,
) -> Result<InvokeResponse, InvokeError> {
    // A command run (`lumo exec`) without a bundle has nothing to fetch.
    let Some(bundle) = request.bundle.clone() else {
        return run_once(config, &request, None, deadline, output).await;
    };
    let sha256 = bundle.sha256.clone();
    let cache = config.cache();
    let (zip, from_cache) = match fetch(&cache, &bundle, &sha256, deadline, config, true).await? {
        Fetched::Ready { zip, from_cache } => (zip, from_cache),
        Fetched::Mismatch { actual } => return Ok(refused(&bundle, actual)),
    };
    match run_once(config, &request, Some((&zip, &sha256)), deadline, output).await {
        Err(InvokeError::Run {
            source: RunnerError::HashMismatch { actual, .. },
            ..
        }) if from_cache => {
            // The cached copy changed on disk after it was checked in; nothing ran. A fresh
            // download is the bundle the CLI asked for, or is refused like any other.
            tracing::warn!(
                key = %bundle.key,
                "the cached bundle has sha256 {actual}; downloading it again"
            );
            cache.remove(sha256.as_str());
            match fetch(&cache, &bundle, &sha256, deadline, config, false).await? {
                Fetched::Ready { zip, .. } => finish_refused(
                    &bundle,
                    run_once(config, &request, Some((&zip, &sha256)), deadline, output).await,
                ),
                Fetched::Mismatch { actual } => Ok(refused(&bundle, actual)),
            }
        }
        result => finish_refused(&bundle, result),
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

async fn fetch(
    cache: &BundleCache,
    bundle: &BundleLocation,
    sha256: &BundleHash,
    deadline: SystemTime,
    config: &RunnerConfig,
    use_cache: bool,
) -> Result<Fetched, InvokeError> {
    let (cache, bundle, sha256) = (cache.clone(), bundle.clone(), sha256.to_string());
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
        expected: bundle.sha256.to_string(),
        actual,
    }
    .to_string();
    tracing::warn!("{message}");
    run::response(
        RunOutcome::not_started(message, SystemTime::now()),
        Artifacts::default(),
    )
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
