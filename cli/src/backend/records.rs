//! The audit trail's records (PRODUCT.md §6): deployments, task runs and each environment's
//! state. Both providers store exactly these, so history, logs and status read the same.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumo_runner::contract::{RunStatus, Trigger};
use lumo_runner::{BundleHash, Masker, RunId, Version};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Milliseconds since the Unix epoch; shown and serialized as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn parse(s: &str) -> Option<Timestamp> {
        humantime::parse_rfc3339(s).ok().map(Timestamp::from)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64);
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

/// The life of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Running,
    Succeeded,
    Failed,
    /// Its deployer died; found `running` after the environment's lock lease ran out.
    Abandoned,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => DeploymentStatus::Running,
            "succeeded" => DeploymentStatus::Succeeded,
            "failed" => DeploymentStatus::Failed,
            "abandoned" => DeploymentStatus::Abandoned,
            _ => return None,
        })
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `lumo deploy` of one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub project: String,
    pub env: String,
    pub version: Version,
    pub previous_version: Option<Version>,
    pub is_first_deploy: bool,
    pub actor: String,
    pub status: DeploymentStatus,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub message: Option<String>,
    /// Every task of the environment and its bundle hash: what `lumo run` uses once this
    /// deployment has succeeded.
    pub bundles: BTreeMap<String, BundleHash>,
}

/// One run of one task: part of a deployment, or manual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    pub id: RunId,
    pub deployment_id: Option<String>,
    pub project: String,
    pub env: String,
    pub task: String,
    pub trigger: Trigger,
    /// The environment's version the run belongs to; `None` (stored as `""`) only for an
    /// `exec` in an environment that was never deployed.
    #[serde(with = "empty_is_none")]
    pub version: Option<Version>,
    pub previous_version: Option<Version>,
    /// The bundle it ran; `None` (stored as `""`) only for an `exec` without `--in`.
    #[serde(with = "empty_is_none")]
    pub bundle_hash: Option<BundleHash>,
    pub actor: String,
    pub status: RunStatus,
    /// 1 for the first attempt; retries count up.
    pub attempt: u32,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub data: Option<Value>,
    /// Where `data` lives when it was too large to keep in the record.
    pub data_ref: Option<String>,
    /// Where the full output lives.
    pub log_ref: Option<String>,
    /// The end of the output, for a quick look without fetching the log.
    pub output_tail: Option<String>,
    pub output_bytes: u64,
    /// What ran. Records written before runs had a kind (lumo 15aa6e6) are task runs.
    #[serde(default)]
    pub kind: RunKind,
    /// The arguments the run was given (`--arg`s, defaults filled in), every secret masked.
    /// Empty in records written before lumo kept them.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Run from a bundle built from the working tree (`lumo run --from-source`), not from the
    /// environment's deployed one; `bundle_hash` is that bundle's. `false` in records written
    /// before lumo could.
    #[serde(default)]
    pub from_source: bool,
    /// What an `exec` run ran: the program and its arguments, every secret masked. `None` for
    /// a task run, and in records written before lumo had `exec`. (An `exec` run's `task` is
    /// the task whose bundle it ran in, empty when none.)
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

impl TaskRun {
    /// What the run ran, for people: the task's name, or `exec` and the command line (cut at
    /// [`TITLE_MAX_CHARS`]), with `in TASK` when it ran in a task's bundle.
    pub fn title(&self) -> String {
        let Some(argv) = self.command.as_ref().filter(|_| self.kind == RunKind::Exec) else {
            return self.task.clone();
        };
        let mut line = command_line(argv);
        if let Some((cut, _)) = line.char_indices().nth(TITLE_MAX_CHARS) {
            line.truncate(cut);
            line.push('…');
        }
        if self.task.is_empty() {
            format!("exec {line}")
        } else {
            format!("exec {line} (in {})", self.task)
        }
    }
}

/// How much of a command line a run's [`TaskRun::title`] shows; `lumo logs --json` has it all.
pub const TITLE_MAX_CHARS: usize = 40;

/// `argv` as one line a shell would split back into it: words of plain characters as they
/// are, any other quoted (`psql -c 'select 1'`).
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command's words as its record keeps them: every secret value masked.
pub fn masked_argv<'a>(
    argv: &[String],
    secret_values: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let masker = Masker::new(secret_values.into_iter().cloned());
    argv.iter().map(|word| masker.mask_str(word)).collect()
}

/// What a run ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// One of the project's tasks, from its bundle.
    #[default]
    Task,
    /// An ad-hoc command in the environment (`lumo exec`).
    Exec,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Task => "task",
            RunKind::Exec => "exec",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        Some(match s {
            "task" => RunKind::Task,
            "exec" => RunKind::Exec,
            _ => return None,
        })
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's arguments as its record keeps them: every secret value masked, as in everything
/// else lumo stores.
pub fn masked_args<'a>(
    args: &BTreeMap<String, String>,
    secret_values: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, String> {
    if args.is_empty() {
        return BTreeMap::new();
    }
    let masker = Masker::new(secret_values.into_iter().cloned());
    args.iter()
        .map(|(name, value)| (name.clone(), masker.mask_str(value)))
        .collect()
}

/// An environment's current state: what it runs, and each task's last successful bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvState {
    /// The version of the last successful deployment; `None` until there is one.
    pub version: Option<Version>,
    /// The version before `version` (the current deployment's `previousVersion`).
    pub previous_version: Option<Version>,
    pub deployment_id: Option<String>,
    pub deployed_at: Option<Timestamp>,
    /// The bundles of the last successful deployment, by task.
    pub bundles: BTreeMap<String, BundleHash>,
    /// Each task's bundle hash at its last successful run here (any trigger).
    pub last_success: BTreeMap<String, BundleHash>,
}

impl EnvState {
    pub fn is_first_deploy(&self) -> bool {
        self.version.is_none()
    }
}

/// A fresh id for a run: a ULID (see [`new_id`]), which is always a valid [`RunId`].
pub fn new_run_id() -> RunId {
    let id = new_id();
    // 26 letters and digits.
    RunId::parse(&id).unwrap_or_else(|e| unreachable!("{e}"))
}

/// `Option<T>` stored as its text, and `None` as `""`: how a run records "no version" and "no
/// bundle" (an `exec`), as every earlier lumo did with a plain string.
pub(crate) mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: AsRef<str>, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map_or("", AsRef::as_ref).serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: TryFrom<String>,
        T::Error: std::fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        T::try_from(text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// A fresh, time-ordered id for a run or deployment (ULID: sorts by creation time).
pub fn new_id() -> String {
    use std::sync::Mutex;
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // The monotonic generator only fails when 2^80 ids are made in one millisecond.
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<RunId> = (0..1000).map(|_| new_run_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn recorded_args_hide_every_secret() {
        let args = BTreeMap::from([
            ("target".to_string(), "users".to_string()),
            (
                "url".to_string(),
                "postgres://app:hunter2@db/app".to_string(),
            ),
        ]);
        let secrets = ["hunter2".to_string()];
        let masked = masked_args(&args, &secrets);
        assert_eq!(masked["target"], "users");
        assert_eq!(masked["url"], "postgres://app:***@db/app");
    }

    #[test]
    fn a_command_line_splits_back_into_its_words_and_hides_every_secret() {
        let argv: Vec<String> = [
            "psql",
            "-c",
            "select 'a b'",
            "",
            "--url=postgres://x:hunter2@db",
            "*",
        ]
        .iter()
        .map(|w| w.to_string())
        .collect();
        let masked = masked_argv(&argv, &["hunter2".to_string()]);
        assert_eq!(masked[4], "--url=postgres://x:***@db");
        assert_eq!(
            command_line(&masked),
            r#"psql -c 'select '\''a b'\''' '' '--url=postgres://x:***@db' '*'"#
        );
    }

    #[test]
    fn an_exec_run_is_titled_by_its_command_and_the_bundle_it_ran_in() {
        let mut run: TaskRun = serde_json::from_value(serde_json::json!({
            "id": "01M962YZGGD6WCZ2PF293Q2TNN", "deploymentId": null, "project": "p",
            "env": "dev", "task": "", "trigger": "manual", "version": "v1",
            "previousVersion": null, "bundleHash": "", "actor": "a", "status": "succeeded",
            "attempt": 1, "startedAt": "2026-12-06T10:00:00.000Z", "endedAt": null,
            "durationMs": null, "exitCode": 0, "message": null, "data": null, "dataRef": null,
            "logRef": null, "outputTail": null, "outputBytes": 0, "kind": "exec",
            "command": ["./bin/migrate", "status"],
        }))
        .unwrap();
        assert_eq!(run.title(), "exec ./bin/migrate status");
        run.task = "migrate".into();
        assert_eq!(run.title(), "exec ./bin/migrate status (in migrate)");
        run.command = Some(vec!["echo".into(), "x".repeat(60)]);
        assert_eq!(
            run.title(),
            format!("exec echo {}… (in migrate)", "x".repeat(35))
        );
        run.kind = RunKind::Task;
        assert_eq!(run.title(), "migrate");
    }

    #[test]
    fn a_run_recorded_before_kinds_and_args_reads_as_a_task_run_without_args() {
        // A run as lumo 15aa6e6 serialized it (its `--json` and its DynamoDB item), plus a
        // field from a later lumo this one does not know.
        let old = serde_json::json!({
            "id": "01M962YZGGD6WCZ2PF293Q2TNN", "deploymentId": null, "project": "p", "env": "dev",
            "task": "purge", "trigger": "manual", "version": "v2", "previousVersion": "v1",
            "bundleHash": "56fb8f04a9c50b2484472c88989cfd30f08e6f299c7fd8bf5c97d19b8d4dacf3",
            "actor": "alice", "status": "succeeded", "attempt": 1,
            "startedAt": "2026-12-06T16:28:31.600Z", "endedAt": null, "durationMs": 5,
            "exitCode": 0, "message": "purged", "data": null, "dataRef": null, "logRef": null,
            "outputTail": "", "outputBytes": 0, "fieldFromTheFuture": 1
        });
        let run: TaskRun = serde_json::from_value(old).unwrap();
        assert_eq!(run.kind, RunKind::Task);
        assert!(run.args.is_empty());
        assert_eq!(run.command, None);
    }

    #[test]
    fn ids_hashes_and_versions_are_stored_as_the_plain_strings_they_were() {
        let hash = "56fb8f04a9c50b2484472c88989cfd30f08e6f299c7fd8bf5c97d19b8d4dacf3";
        let stored = serde_json::json!({
            "id": "01M962YZGGD6WCZ2PF293Q2TNN", "deploymentId": "01M962YZ9PGHGE5ESP49X9FGVR",
            "project": "p", "env": "dev", "task": "purge", "trigger": "deploy",
            "version": "abc1234-dirty", "previousVersion": "v1", "bundleHash": hash,
            "actor": "alice", "status": "succeeded", "attempt": 1,
            "startedAt": "2026-12-06T16:28:31.600Z", "endedAt": null, "durationMs": 5,
            "exitCode": 0, "message": "purged", "data": null, "dataRef": null, "logRef": null,
            "outputTail": "", "outputBytes": 0, "kind": "task", "args": {}, "fromSource": false,
            "command": null,
        });
        let run: TaskRun = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(run.id, "01M962YZGGD6WCZ2PF293Q2TNN");
        assert_eq!(run.bundle_hash.as_ref().map(BundleHash::as_str), Some(hash));
        assert_eq!(serde_json::to_value(&run).unwrap(), stored);

        // An exec outside any bundle, in an environment never deployed: no version, no bundle,
        // stored as the empty strings they always were.
        let mut exec = stored.clone();
        exec["version"] = "".into();
        exec["bundleHash"] = "".into();
        let run: TaskRun = serde_json::from_value(exec.clone()).unwrap();
        assert_eq!(
            (run.version.as_ref(), run.bundle_hash.as_ref()),
            (None, None)
        );
        assert_eq!(serde_json::to_value(&run).unwrap(), exec);
    }

    #[test]
    fn a_record_whose_hash_or_id_is_not_one_is_refused_when_read() {
        let mut stored = serde_json::json!({
            "id": "../escape", "deploymentId": null, "project": "p", "env": "dev",
            "task": "purge", "trigger": "manual", "version": "v2", "previousVersion": null,
            "bundleHash": "", "actor": "alice", "status": "succeeded", "attempt": 1,
            "startedAt": "2026-12-06T16:28:31.600Z", "endedAt": null, "durationMs": 5,
            "exitCode": 0, "message": "purged", "data": null, "dataRef": null, "logRef": null,
            "outputTail": "", "outputBytes": 0,
        });
        let err = serde_json::from_value::<TaskRun>(stored.clone()).unwrap_err();
        assert!(err.to_string().contains("invalid run id"), "{err}");
        stored["id"] = "01M962YZGGD6WCZ2PF293Q2TNN".into();
        stored["bundleHash"] = "../../etc/passwd".into();
        let err = serde_json::from_value::<TaskRun>(stored.clone()).unwrap_err();
        assert!(err.to_string().contains("invalid bundle hash"), "{err}");
        stored["bundleHash"] = "".into();
        stored["version"] = "has space".into();
        let err = serde_json::from_value::<TaskRun>(stored).unwrap_err();
        assert!(err.to_string().contains("invalid version"), "{err}");
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t = Timestamp(1_763_913_480_123);
        let s = t.to_string();
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(Timestamp::parse(&s), Some(t));
    }
}

/// Something the audit trail keeps besides runs and deployments: lock takes and releases,
/// forced unlocks, refused runs, abandoned work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub project: String,
    pub env: String,
    pub kind: EventKind,
    pub actor: String,
    pub at: Timestamp,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `lumo lock` took the environment.
    Locked,
    /// `lumo unlock` released it.
    Unlocked,
    /// `lumo unlock --force` released someone else's lock.
    ForceUnlocked,
    /// A writer whose lease ran out (or whose process died) was displaced.
    LeaseExpired,
    /// Runs or a deployment left `running` by a dead writer were marked `abandoned`.
    Abandoned,
    /// A manual run was refused (permission).
    Refused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Locked => "locked",
            EventKind::Unlocked => "unlocked",
            EventKind::ForceUnlocked => "force_unlocked",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::Abandoned => "abandoned",
            EventKind::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "locked" => EventKind::Locked,
            "unlocked" => EventKind::Unlocked,
            "force_unlocked" => EventKind::ForceUnlocked,
            "lease_expired" => EventKind::LeaseExpired,
            "abandoned" => EventKind::Abandoned,
            "refused" => EventKind::Refused,
            _ => return None,
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds an environment's lock, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockHolder {
    /// Unique per acquisition: renewing or releasing needs it, so a displaced holder cannot
    /// release its successor's lock.
    pub token: String,
    pub actor: String,
    /// What the holder does: `deploy v42`, `run purge-cache`, `lock`.
    pub operation: String,
    pub reason: Option<String>,
    pub host: String,
    /// The holding process (`None` for a lock taken by hand).
    pub pid: Option<u32>,
    pub since: Timestamp,
    /// When the lease runs out unless renewed; `None` = held until released (`lumo lock`).
    pub expires_at: Option<Timestamp>,
}

impl LockHolder {
    /// "alice since 2026-…: deploy v42 (pid 12 on ci-7), reason: …"
    pub fn describe(&self) -> String {
        let mut text = format!("`{}` since {}: {}", self.actor, self.since, self.operation);
        match self.pid {
            Some(pid) => text.push_str(&format!(" (pid {pid} on {})", self.host)),
            None => text.push_str(&format!(" (from {})", self.host)),
        }
        if let Some(reason) = &self.reason {
            text.push_str(&format!(", reason: {reason}"));
        }
        text
    }

    /// This machine's name, as holders record it.
    pub fn this_host() -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    }

    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}
