//! The task contract (PRODUCT.md §4): what the runner hands a task and what a task hands back.
//!
//! These types are the wire format between the CLI, the Lambda runner and the task SDK, so
//! their serde shape is part of the user-visible contract: field names are camelCase exactly as
//! documented, and unknown fields in a task's result are rejected rather than ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a task is running: part of a first deploy, a later deploy, or started by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Deploy,
    Update,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Deploy => "deploy",
            Trigger::Update => "update",
            Trigger::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this run sits in the environment's deployment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    /// The environment has no successful deployment yet.
    pub is_first_deploy: bool,
    /// The version of the environment's last successful deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    pub environment: String,
    pub version: String,
}

/// Everything a task is told about its run: on stdin, and in the file `LUMO_CONTEXT_FILE` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskContext {
    pub deployment: DeploymentInfo,
    /// The task's `config` from `lumo.config.js` (an object; `{}` when not set).
    pub config: Value,
    /// Arguments of a manual run (`--arg K=V`), defaults applied.
    pub args: BTreeMap<String, String>,
    pub working_directory: String,
    pub task: String,
    pub run_id: String,
    pub trigger: Trigger,
}

/// What a task may write to `LUMO_RESULT_FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub success: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// The life of one task run, as recorded in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Skipped => "skipped",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "timed_out" => RunStatus::TimedOut,
            "skipped" => RunStatus::Skipped,
            "abandoned" => RunStatus::Abandoned,
            _ => return None,
        })
    }

    /// Whether the run has ended (every status but `running`).
    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a bundle runs, stored as [`MANIFEST_PATH`] inside every bundle so the runner needs
/// nothing but the bundle to start the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleManifest {
    pub task: String,
    pub entry: Entry,
}

/// A task's entry point inside its unpacked bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Entry {
    /// An executable file, relative to the bundle root (`/`-separated).
    Program(String),
    /// A shell command, run with `sh -c` in the bundle root.
    Command(String),
    /// An ES module, relative to the bundle root (`/`-separated), whose exported handler
    /// (`run`, else the default export, else `handler`) the runner's own Node entry calls with
    /// the [`TaskContext`]: a Lumo Framework task. Serialized as `{"node": "handler.mjs"}`.
    Node(String),
    /// A program and its arguments, started without a shell, its stdin empty: what `lumo exec`
    /// runs instead of a bundle's entry. It comes with the run ([`TaskSpec::argv`]), never
    /// from a manifest, so it is neither written nor read as one.
    ///
    /// [`TaskSpec::argv`]: crate::TaskSpec::argv
    #[serde(skip)]
    Argv(Vec<String>),
}

impl Entry {
    /// What the entry names, for messages: the file, or the command line.
    pub fn label(&self) -> &str {
        match self {
            Entry::Program(path) | Entry::Node(path) => path,
            Entry::Command(line) => line,
            Entry::Argv(argv) => argv.first().map_or("", String::as_str),
        }
    }
}

/// Path of the manifest inside a bundle.
pub const MANIFEST_PATH: &str = "lumo-bundle.json";

/// The environment variable a secret named `name` in the config is handed to tasks as:
/// upper snake case, `databaseUrl` → `DATABASE_URL`, `api-key` → `API_KEY`, `apiURLValue` →
/// `API_URL_VALUE`. Any run of other characters (`-`, `.`, `_`, spaces) is one `_`. The CLI
/// validates secret names with this same function (two names with one variable are an error),
/// and lumo's `@lumo-framework/core` module for handlers mirrors it in `getSecret`.
pub fn secret_env_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // A capital starts a word after a lower-case letter or a digit (`databaseUrl`), or
            // ends an acronym when a lower-case letter follows (`URLValue` → `URL_VALUE`).
            let word_starts = c.is_ascii_uppercase()
                && previous.is_some_and(|p| {
                    p.is_ascii_lowercase()
                        || p.is_ascii_digit()
                        || (p.is_ascii_uppercase() && next_is_lower)
                });
            if word_starts && !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// The variable lumo 0.1 (before handlers) handed the secret `name` to tasks as, where it differs
/// from [`secret_env_name`]: that rule did not split an acronym from the word after it
/// (`githubAPIToken` → `GITHUB_APITOKEN`, now `GITHUB_API_TOKEN`). Tasks still receive the old
/// spelling too, so a shell task written against it keeps working after an upgrade.
pub fn legacy_secret_env_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase()
                && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
            {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        previous = Some(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    (out != secret_env_name(name)).then_some(out)
}

/// The environment variable a manual-run argument is handed to tasks as: `LUMO_ARG_<NAME>`.
pub fn arg_env_name(name: &str) -> String {
    format!("LUMO_ARG_{}", secret_env_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_become_upper_snake_case() {
        assert_eq!(secret_env_name("databaseUrl"), "DATABASE_URL");
        assert_eq!(secret_env_name("api-key"), "API_KEY");
        assert_eq!(secret_env_name("STRIPE_KEY"), "STRIPE_KEY");
        assert_eq!(secret_env_name("oauth2Token"), "OAUTH2_TOKEN");
        assert_eq!(secret_env_name("apiURLValue"), "API_URL_VALUE");
        assert_eq!(secret_env_name("db.password"), "DB_PASSWORD");
        assert_eq!(secret_env_name("--x--"), "X");
        assert_eq!(arg_env_name("target"), "LUMO_ARG_TARGET");
        assert_eq!(arg_env_name("dry-run"), "LUMO_ARG_DRY_RUN");
    }

    #[test]
    fn the_old_spelling_is_kept_only_where_the_acronym_rule_changed_it() {
        assert_eq!(
            legacy_secret_env_name("apiURLValue").as_deref(),
            Some("API_URLVALUE")
        );
        assert_eq!(
            legacy_secret_env_name("githubAPIToken").as_deref(),
            Some("GITHUB_APITOKEN")
        );
        assert_eq!(legacy_secret_env_name("databaseUrl"), None);
        assert_eq!(legacy_secret_env_name("STRIPE_KEY"), None);
        assert_eq!(legacy_secret_env_name("api-key"), None);
        assert_eq!(legacy_secret_env_name("awsKMS"), None);
    }

    #[test]
    fn result_with_unknown_fields_is_rejected() {
        let err = serde_json::from_str::<TaskResult>(r#"{"success":true,"message":"x","extra":1}"#);
        assert!(err.is_err());
        let ok: TaskResult =
            serde_json::from_str(r#"{"success":false,"message":"no","data":{"n":1}}"#).unwrap();
        assert!(!ok.success);
        assert_eq!(ok.data, Some(serde_json::json!({"n": 1})));
    }

    #[test]
    fn a_node_entry_is_written_as_the_shared_interface_says() {
        let manifest = BundleManifest {
            task: "database/migrate".into(),
            entry: Entry::Node("handler.mjs".into()),
        };
        let v = serde_json::to_value(&manifest).unwrap();
        assert_eq!(v["entry"], serde_json::json!({"node": "handler.mjs"}));
        let back: BundleManifest =
            serde_json::from_str(r#"{"task":"t","entry":{"node":"handler.mjs"}}"#).unwrap();
        assert_eq!(back.entry, Entry::Node("handler.mjs".into()));
    }

    #[test]
    fn context_serializes_with_the_documented_field_names() {
        let ctx = TaskContext {
            deployment: DeploymentInfo {
                is_first_deploy: true,
                previous_version: None,
                environment: "dev".into(),
                version: "abc".into(),
            },
            config: serde_json::json!({}),
            args: BTreeMap::new(),
            working_directory: "/w".into(),
            task: "t".into(),
            run_id: "r".into(),
            trigger: Trigger::Deploy,
        };
        let v = serde_json::to_value(&ctx).unwrap();
        assert_eq!(v["deployment"]["isFirstDeploy"], true);
        assert!(v["deployment"].get("previousVersion").is_none());
        assert_eq!(v["workingDirectory"], "/w");
        assert_eq!(v["runId"], "r");
        assert_eq!(v["trigger"], "deploy");
    }
}
