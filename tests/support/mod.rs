//! Shared helpers for lumo's end-to-end suites: a throw-away project on disk, the `lumo` binary
//! run in it with a clean environment, and its `--json` output parsed into typed structs.
//!
//! Why a clean environment: a developer's shell or a CI runner sets `LUMO_ACTOR`,
//! `GITHUB_ACTOR`, `AWS_PROFILE`, `NO_COLOR` or a `LUMO_ARG_*` of an enclosing run, and any of
//! them would change what lumo records or prints. Every run here starts from nothing but `PATH`,
//! a private `HOME`, `NO_COLOR=1` and a fixed `--actor`, plus what the test asks for.
//!
//! Why typed structs: a test that string-matches JSON passes when a field is renamed or moves;
//! parsing into the documented shape fails loudly instead (and `serde_json::from_str` also
//! proves stdout held exactly one JSON document).

#![allow(dead_code, unused_macros)] // Each suite uses a different part of this module.

pub mod aws;
pub mod local;
pub mod pty;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The actor every run records.
pub const ACTOR: &str = "e2e-tester";

/// No single `lumo` call in these suites should take anywhere near this long; a hang fails the
/// test instead of the whole run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Written into task scripts and configs; replaced by the absolute path of [`TestProject::out`].
pub const OUT: &str = "@OUT@";

/// A project in its own temporary directory:
///
/// ```text
/// <tmp>/project/   the project root (lumo.config.js, functions/tasks/, .lumo/)
/// <tmp>/out/       where tasks write what they saw, outside anything lumo bundles or stores
/// <tmp>/home/      HOME for lumo and its tasks
/// ```
pub struct TestProject {
    tmp: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    home: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Default for TestProject {
    fn default() -> Self {
        TestProject::new()
    }
}

impl TestProject {
    /// An empty project directory.
    pub fn new() -> TestProject {
        let tmp = tempfile::Builder::new()
            .prefix("lumo-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let root = tmp.path().join("project");
        let out = tmp.path().join("out");
        let home = tmp.path().join("home");
        for dir in [&root, &out, &home] {
            fs::create_dir_all(dir).expect("create the project layout");
        }
        TestProject {
            tmp,
            root,
            out,
            home,
            env: Vec::new(),
        }
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory tasks write their observations to (`@OUT@` in scripts and configs).
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The temporary directory holding the project, `out/` and `home/`.
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// `.lumo/` of the project.
    pub fn lumo_dir(&self) -> PathBuf {
        self.root.join(".lumo")
    }

    /// Sets an environment variable for every later `lumo` run (and so for its tasks).
    pub fn set_env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn expand(&self, text: &str) -> String {
        text.replace(OUT, &self.out.to_string_lossy())
    }

    /// Writes `lumo.config.js` (with `@OUT@` expanded).
    pub fn config(&self, js: &str) -> &Self {
        self.write("lumo.config.js", self.expand(js))
    }

    /// Writes a plain file under the project root, creating its directories.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self
    }

    /// Writes an executable file under the project root (with `@OUT@` expanded).
    pub fn executable(&self, rel: &str, contents: &str) -> &Self {
        self.write(rel, self.expand(contents));
        let path = self.root.join(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod +x");
        self
    }

    /// A shell task `functions/tasks/<name>.sh`: `#!/bin/sh`, `set -eu`, then `body`.
    pub fn task(&self, name: &str, body: &str) -> &Self {
        self.executable(
            &format!("functions/tasks/{name}.sh"),
            &format!("#!/bin/sh\nset -eu\n{body}\n"),
        )
    }

    /// A file a task wrote to `out/`.
    pub fn read_out(&self, name: &str) -> String {
        let path = self.out.join(name);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the task should have written {}: {e}", path.display()))
    }

    /// Whether a task wrote `out/<name>`.
    pub fn has_out(&self, name: &str) -> bool {
        self.out.join(name).exists()
    }

    /// The lines of `out/<name>`, or none when the file does not exist.
    pub fn out_lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.out.join(name))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `lumo <args> --actor e2e-tester` in the project root, with a clean environment.
    pub fn command(&self, args: &[&str]) -> assert_cmd::Command {
        self.command_in(&self.root, args)
    }

    /// Like [`TestProject::command`], in another directory.
    pub fn command_in(&self, dir: &Path, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.std_command_as(dir, Some(ACTOR), args));
        cmd.timeout(COMMAND_TIMEOUT);
        cmd
    }

    /// `lumo <args> --actor <actor>` in the project root as a plain `std` command, for tests
    /// that start several at once or kill one.
    pub fn std_command(&self, actor: &str, args: &[&str]) -> std::process::Command {
        self.std_command_as(&self.root, Some(actor), args)
    }

    fn std_command_as(
        &self,
        dir: &Path,
        actor: Option<&str>,
        args: &[&str],
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lumo"));
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("NO_COLOR", "1")
            .env("LANG", "C.UTF-8")
            // No git repository above the temp dir may lend the project a version or a user.
            .env("GIT_CEILING_DIRECTORIES", self.tmp.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir);
        // What follows `--` is a command's own (`lumo exec`): the actor goes before it.
        let (flags, command) =
            args.split_at(args.iter().position(|a| *a == "--").unwrap_or(args.len()));
        cmd.args(flags);
        if let Some(actor) = actor {
            cmd.args(["--actor", actor]);
        }
        cmd.args(command);
        cmd
    }

    /// Runs `lumo <args>` without `--actor`, with extra environment variables: the actor is
    /// then lumo's to find (CI variables, the AWS caller, the git or OS user).
    pub fn lumo_without_actor(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut std = self.std_command_as(&self.root, None, args);
        std.envs(env.iter().copied());
        let mut cmd = assert_cmd::Command::from_std(std);
        cmd.timeout(COMMAND_TIMEOUT);
        run(cmd, args)
    }

    /// Runs `lumo <args>` in the project root as `actor`.
    pub fn lumo_as(&self, actor: &str, args: &[&str]) -> Outcome {
        let mut cmd = assert_cmd::Command::from_std(self.std_command(actor, args));
        cmd.timeout(COMMAND_TIMEOUT);
        run(cmd, args)
    }

    /// Runs `lumo <args>` in the project root.
    pub fn lumo(&self, args: &[&str]) -> Outcome {
        run(self.command(args), args)
    }

    /// Runs `lumo <args>` in the project root with extra environment variables for this run.
    pub fn lumo_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        run(cmd, args)
    }

    /// Runs `lumo <args>` in `dir`.
    pub fn lumo_in(&self, dir: &Path, args: &[&str]) -> Outcome {
        run(self.command_in(dir, args), args)
    }

    /// `lumo deploy --env dev --json <extra>`, expecting exit code `code`.
    pub fn deploy(&self, extra: &[&str], code: i32) -> DeployReport {
        let mut args = vec!["deploy", "--env", "dev", "--json"];
        args.extend_from_slice(extra);
        self.lumo(&args).code(code).json()
    }

    /// `lumo history --env dev --json --limit 1000`, oldest run first.
    pub fn history(&self) -> Vec<TaskRun> {
        let history: History = self
            .lumo(&["history", "--env", "dev", "--json", "--limit", "1000"])
            .code(0)
            .json();
        let mut runs = history.runs;
        runs.reverse();
        runs
    }

    /// `lumo status --env dev --json`.
    pub fn status(&self) -> Status {
        self.lumo(&["status", "--env", "dev", "--json"])
            .code(0)
            .json()
    }

    /// `lumo logs RUN_ID --json`.
    pub fn logs(&self, run_id: &str) -> Logs {
        self.lumo(&["logs", run_id, "--json"]).code(0).json()
    }

    /// Every file under `dir` whose bytes contain `needle`.
    pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
        let mut hits = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file()
                    && let Ok(bytes) = fs::read(&path)
                    && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
                {
                    hits.push(path);
                }
            }
        }
        hits
    }
}

fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> Outcome {
    let output = cmd.output().expect("start lumo");
    Outcome {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout_bytes: output.stdout.len(),
    }
}

/// What one `lumo` run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub args: Vec<String>,
    /// The exit code; -1 when lumo was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Length of stdout in bytes, before any lossy UTF-8 conversion.
    pub stdout_bytes: usize,
}

impl Outcome {
    /// Fails, showing everything lumo printed, unless it exited with `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code,
            code,
            "`lumo {}` exited {} instead of {code}\n{}",
            self.args.join(" "),
            self.code,
            self.show()
        );
        self
    }

    /// stdout and stderr, for failure messages (long output shortened).
    pub fn show(&self) -> String {
        fn cut(s: &str) -> &str {
            let mut end = s.len().min(8000);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        }
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }

    /// stdout as exactly one JSON document of type `T`.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`lumo {}`: stdout is not one JSON document of the expected shape: {e}\n{}",
                self.args.join(" "),
                self.show()
            )
        })
    }

    /// The `--json` error document on stdout.
    #[track_caller]
    pub fn json_error(&self) -> ErrorBody {
        let doc: ErrorDocument = self.json();
        assert_eq!(
            doc.error.exit_code, self.code,
            "the error document's exitCode is the exit code"
        );
        doc.error
    }

    /// Fails unless stderr contains every fragment.
    #[track_caller]
    pub fn stderr_has(&self, fragments: &[&str]) -> &Outcome {
        for fragment in fragments {
            assert!(
                self.stderr.contains(fragment),
                "stderr of `lumo {}` should contain {fragment:?}\n{}",
                self.args.join(" "),
                self.show()
            );
        }
        self
    }

    /// Fails unless stdout contains every fragment.
    #[track_caller]
    pub fn stdout_has(&self, fragments: &[&str]) -> &Outcome {
        for fragment in fragments {
            assert!(
                self.stdout.contains(fragment),
                "stdout of `lumo {}` should contain {fragment:?}\n{}",
                self.args.join(" "),
                self.show()
            );
        }
        self
    }
}

// ---- The `--json` documents, as PRODUCT.md §7 and the commands define them. ----

/// A run's or a deploy line's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Abandoned,
    /// Dry run: the task would run.
    WouldRun,
    /// Not part of this deployment (its `runOn`, `--only`).
    NotRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Running,
    Succeeded,
    Failed,
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Deploy,
    Update,
    Manual,
}

/// `lumo deploy --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub project: String,
    pub env: String,
    pub provider: String,
    pub deployment_id: Option<String>,
    pub version: String,
    pub previous_version: Option<String>,
    pub is_first_deploy: bool,
    pub dry_run: bool,
    pub status: Option<DeploymentStatus>,
    pub duration_ms: Option<u64>,
    pub tasks: Vec<TaskLine>,
}

impl DeployReport {
    /// The line of task `name`.
    #[track_caller]
    pub fn task(&self, name: &str) -> &TaskLine {
        self.tasks
            .iter()
            .find(|t| t.task == name)
            .unwrap_or_else(|| panic!("no task `{name}` in {:#?}", self.tasks))
    }

    /// Names of the tasks with status `status`, in report order.
    pub fn with_status(&self, status: RunStatus) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|t| t.status == status)
            .map(|t| t.task.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLine {
    pub task: String,
    pub status: RunStatus,
    pub run_id: Option<String>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub data: Option<Value>,
    // The rest of the outcome every report shares (`cli/src/report/outcome.rs`).
    pub attempt: Option<u32>,
    pub trigger: Option<Trigger>,
    pub actor: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub output_tail: Option<String>,
    pub log_ref: Option<String>,
}

/// The keys of a task's outcome in every `--json` document that shows one (deploy's tasks,
/// `run`, `history`'s runs): the same names, whatever the command.
pub const OUTCOME_KEYS: [&str; 13] = [
    "task",
    "status",
    "runId",
    "attempt",
    "trigger",
    "actor",
    "startedAt",
    "endedAt",
    "durationMs",
    "exitCode",
    "message",
    "outputTail",
    "logRef",
];

/// One audit record of a task run.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    pub id: String,
    /// The same as `id`, under the name deploy's task lines use.
    pub run_id: String,
    pub deployment_id: Option<String>,
    pub project: String,
    pub env: String,
    pub task: String,
    pub trigger: Trigger,
    pub version: String,
    pub previous_version: Option<String>,
    pub bundle_hash: String,
    pub actor: String,
    pub status: RunStatus,
    pub attempt: u32,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub data: Option<Value>,
    pub data_ref: Option<String>,
    pub log_ref: Option<String>,
    pub output_tail: Option<String>,
    pub output_bytes: u64,
    /// Ran the working copy (`lumo run --from-source`).
    #[serde(default)]
    pub from_source: bool,
    /// `task`, or `exec` for a `lumo exec` run.
    #[serde(default)]
    pub kind: String,
    /// What an `exec` run ran, masked.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The values a manual run got (defaults filled in, secrets masked).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

/// `lumo history --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub env: String,
    pub task: Option<String>,
    pub runs: Vec<TaskRun>,
}

/// `lumo status --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub project: String,
    pub env: String,
    pub provider: String,
    pub state: EnvState,
    pub last_deployment: Option<Deployment>,
    pub last_runs: Vec<TaskRun>,
    #[serde(default)]
    pub lock: LockState,
    #[serde(default)]
    pub recent_events: Vec<AuditEvent>,
}

/// The environment's locks in `lumo status --json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockState {
    pub writer: Option<LockHolder>,
    pub manual: Option<LockHolder>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockHolder {
    pub actor: String,
    pub operation: String,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    pub since: String,
    pub expires_at: Option<String>,
}

/// An audit event (`lumo status --json` → `recentEvents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub kind: String,
    pub actor: String,
    pub at: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvState {
    pub version: Option<String>,
    pub previous_version: Option<String>,
    pub deployment_id: Option<String>,
    pub deployed_at: Option<String>,
    pub bundles: BTreeMap<String, String>,
    pub last_success: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub project: String,
    pub env: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub is_first_deploy: bool,
    pub actor: String,
    pub status: DeploymentStatus,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub message: Option<String>,
    pub bundles: BTreeMap<String, String>,
}

/// `lumo logs RUN_ID --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Logs {
    pub run: TaskRun,
    pub output: Option<String>,
    pub complete: bool,
}

/// `lumo tasks --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub project: String,
    pub env: Option<String>,
    pub tasks: Vec<TaskInfo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    pub name: String,
    pub kind: String,
    pub source: String,
    pub description: Option<String>,
    pub run_on: Vec<String>,
    pub timeout: u32,
    pub permission: String,
    pub environments: Option<Vec<String>>,
    pub depends_on: Vec<String>,
    pub args: Vec<String>,
    pub declared: bool,
    /// With `--env`: whether the actor may run it by hand.
    #[serde(default)]
    pub may_run: Option<bool>,
}

/// `lumo build --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildReport {
    pub out: Option<String>,
    pub bundles: Vec<BuiltBundle>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltBundle {
    pub task: String,
    pub sha256: String,
    pub size: u64,
    pub unpacked_size: u64,
    pub files: usize,
}

/// `lumo init --json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitReport {
    pub project: String,
    pub created: Vec<PathBuf>,
}

/// Any command's failure with `--json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDocument {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub kind: String,
    pub exit_code: i32,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    /// An invalid config's (or pre-flight's) problems, one per key.
    #[serde(default)]
    pub problems: Vec<ProblemBody>,
}

/// One of [`ErrorBody::problems`].
#[derive(Debug, Clone, Deserialize)]
pub struct ProblemBody {
    pub key: String,
    pub message: String,
}

/// The `TaskContext` a task receives (PRODUCT.md §4), as the task sees it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskContext {
    pub deployment: DeploymentInfo,
    pub config: Value,
    pub args: BTreeMap<String, String>,
    pub working_directory: String,
    pub task: String,
    pub run_id: String,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub is_first_deploy: bool,
    #[serde(default)]
    pub previous_version: Option<String>,
    pub environment: String,
    pub version: String,
}

/// `KEY=VALUE` lines (a task's `env` dump) as a map.
pub fn parse_env_dump(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A duration as lumo shows it: `850ms`, `2.3s`, `4m05s`.
pub fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
