//! Where the runner function keeps its files in `/tmp` and how much time it keeps for itself;
//! read from the environment on the first invocation.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::cache::BundleCache;
use crate::executor::DEFAULT_KILL_GRACE;

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

/// The environment variable setting how many bytes a streamed response may carry (for tests;
/// the default is Lambda's limit).
pub const STREAM_LIMIT_ENV: &str = "LUMO_RUNNER_STREAM_LIMIT";

/// Lambda's (soft) limit on a streamed response: 20 MiB.
pub const DEFAULT_STREAM_LIMIT: u64 = 20 * 1024 * 1024;

/// Of the stream's limit, what is kept for the final frame (the outcome with its message,
/// tail and inline `data`): what a buffered response could carry, 6 MiB, but never more than
/// half the limit.
pub const STREAM_OUTCOME_RESERVE: u64 = 6 * 1024 * 1024;

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
    /// The most bytes a streamed response carries ([`STREAM_LIMIT_ENV`]); output stops being
    /// streamed before it, so the outcome always fits.
    pub stream_limit: u64,
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
            stream_limit: DEFAULT_STREAM_LIMIT,
        }
    }

    /// How many bytes of output frames a streamed response carries before output stops being
    /// streamed: the limit less what the final frame may need.
    pub fn stream_output_max(&self) -> u64 {
        self.stream_limit - STREAM_OUTCOME_RESERVE.min(self.stream_limit / 2)
    }

    /// The defaults, with the directory from [`CACHE_DIR_ENV`].
    pub fn from_env() -> RunnerConfig {
        let dir = std::env::var_os(CACHE_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
        let mut config = RunnerConfig::new(dir);
        if let Some(value) = std::env::var_os(STREAM_LIMIT_ENV) {
            match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(limit) if limit > 0 => config.stream_limit = limit,
                _ => tracing::warn!(
                    "{STREAM_LIMIT_ENV}={} is not a number of bytes; using {DEFAULT_STREAM_LIMIT}",
                    value.to_string_lossy()
                ),
            }
        }
        config
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

    pub(super) fn cache(&self) -> BundleCache {
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
