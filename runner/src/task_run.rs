//! One task run as every part of lumo sees it: what runs ([`TaskSpec`]) and how it ended
//! ([`RunOutcome`]).
//!
//! The CLI builds the spec, its `local` provider hands it to the executor through
//! [`run_bundle`](crate::run_bundle), its `aws` provider sends it in the Invoke payload to the
//! runner function, which hands it to the same `run_bundle`; the outcome comes back the same
//! two ways. Each layer adds only what it alone knows (where the bundle is, where the log goes,
//! what was uploaded) around these two types instead of copying their fields, so a new field
//! is added once and reaches every provider.
//!
//! Both are part of the Invoke wire format (flattened into it, see
//! [`invoke`](crate::invoke)), so their serde shape is a contract: camelCase field names,
//! times in milliseconds.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{RunStatus, TaskContext};

/// What one task run is told and how long it may take: the same wherever it runs.
///
/// The bundle it runs travels beside the spec, as each provider names it (a file in
/// `.lumo/bundles/`, a presigned S3 URL), always with its
/// [`BundleHash`](crate::BundleHash).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Written to the task's stdin and to the file `LUMO_CONTEXT_FILE` names. It names the
    /// task, the run, the environment and the version; `working_directory` is filled in where
    /// the bundle is unpacked.
    pub context: TaskContext,
    /// How long the task may run before it is stopped and recorded `timed_out`. On the wire:
    /// `timeoutMs`, whole milliseconds.
    #[serde(rename = "timeoutMs", with = "millis")]
    pub timeout: Duration,
    /// The task's `env` from the config.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variable name (upper snake case) → secret value. The values are masked in
    /// everything the run produces; on Lambda they travel in the payload, never as the
    /// function's environment variables.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// A command to run instead of the bundle's entry (`lumo exec`): the program and its
    /// arguments, started without a shell and with an empty stdin, in the unpacked bundle or,
    /// without one, in an empty directory. `None` for a task run; absent on the wire then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
}

impl TaskSpec {
    /// A run of `context` with no env and no secrets.
    pub fn new(context: TaskContext, timeout: Duration) -> TaskSpec {
        TaskSpec {
            context,
            timeout,
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            argv: None,
        }
    }

    /// The task's name.
    pub fn task(&self) -> &str {
        &self.context.task
    }

    /// The run's id (`LUMO_RUN_ID`).
    pub fn run_id(&self) -> &str {
        &self.context.run_id
    }

    /// The environment the task runs against.
    pub fn environment(&self) -> &str {
        &self.context.deployment.environment
    }
}

impl fmt::Debug for TaskSpec {
    // Secret values must not reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSpec")
            .field("context", &self.context)
            .field("timeout", &self.timeout)
            .field("env", &self.env)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            // A command line may quote a secret; its words are shown by count only.
            .field("argv", &self.argv.as_ref().map(Vec::len))
            .finish()
    }
}

/// How a task run ended, as the executor judged it: the part of the record that is the same
/// on every provider. A task that fails, times out or cannot start is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    /// `succeeded`, `failed` or `timed_out`.
    pub status: RunStatus,
    /// The task's exit code; `None` when it was killed by a signal or could not be started.
    pub exit_code: Option<i32>,
    /// The signal that ended the task's main process, if one did.
    pub signal: Option<i32>,
    /// One line for the record (masked): the result's message, else the last output line, else
    /// the exit code; prefixed with why the run failed where that is not the task's own word.
    pub message: String,
    /// The result's `data` (masked), only from a valid result file.
    pub data: Option<Value>,
    /// The last [`TAIL_BYTES`](crate::executor::TAIL_BYTES) bytes of masked output, cut at a
    /// character boundary.
    pub output_tail: String,
    /// Size of the whole masked output.
    pub output_bytes: u64,
    /// On the wire: `startedAtMs`, milliseconds since the Unix epoch.
    #[serde(rename = "startedAtMs", with = "epoch_millis")]
    pub started_at: SystemTime,
    /// On the wire: `endedAtMs`, milliseconds since the Unix epoch.
    #[serde(rename = "endedAtMs", with = "epoch_millis")]
    pub ended_at: SystemTime,
}

impl RunOutcome {
    /// A run that failed before its task could start (a refused bundle, a stop before the
    /// start): `failed`, no exit code, no output, started at `started_at` and ended now.
    pub fn not_started(message: String, started_at: SystemTime) -> RunOutcome {
        RunOutcome {
            status: RunStatus::Failed,
            exit_code: None,
            signal: None,
            message,
            data: None,
            output_tail: String::new(),
            output_bytes: 0,
            started_at,
            ended_at: SystemTime::now().max(started_at),
        }
    }
}

/// A [`Duration`] as whole milliseconds (a `u64`); sub-millisecond parts are dropped.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A [`SystemTime`] as milliseconds since the Unix epoch (an `i64`, negative before 1970).
mod epoch_millis {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
        };
        s.serialize_i64(ms)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = i64::deserialize(d)?;
        let offset = Duration::from_millis(ms.unsigned_abs());
        let time = if ms >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(offset)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(offset)
        };
        time.ok_or_else(|| serde::de::Error::custom(format!("{ms} ms is not a representable time")))
    }
}
