//! The validated shape of `lumo.config.js` (PRODUCT.md §3). Everything downstream of config
//! loading works on these types only; they hold no raw JSON except the task's free-form `config`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

/// Which backend runs the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Local,
    Aws,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Aws => "aws",
        }
    }
}

/// When a task runs as part of a deployment (`runOn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOn {
    /// The environment's first successful deployment.
    Deploy,
    /// Every later deployment.
    Update,
    /// Whenever the task's bundle hash differs from its last successful run in the environment.
    Change,
}

impl RunOn {
    /// As written in `runOn`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOn::Deploy => "deploy",
            RunOn::Update => "update",
            RunOn::Change => "change",
        }
    }
}

/// Lagoon's roles, least to most privileged; a role may run the tasks of the roles below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Guest,
    Developer,
    Maintainer,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Guest => "guest",
            Permission::Developer => "developer",
            Permission::Maintainer => "maintainer",
        }
    }
}

/// `access.<env>`: the rules of one environment (PRODUCT.md §6).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvAccess {
    /// `access.<env>.<role>`: actor patterns by role. Empty = the roles are open: everyone is
    /// `maintainer`, as for an environment without an entry (an entry may exist only to set
    /// `deploy` or `confirm`).
    pub roles: BTreeMap<Permission, Vec<String>>,
    /// `access.<env>.deploy`: the role a deploy needs; `None` = [`EnvAccess::DEFAULT_DEPLOY`].
    pub deploy: Option<Permission>,
    /// `access.<env>.confirm`: what a confirmation in this environment must be answered with.
    pub confirm: ConfirmRule,
    /// `access.<env>.exec`: the role `lumo exec` needs; `None` = [`EnvAccess::DEFAULT_EXEC`].
    pub exec: Option<Permission>,
}

impl EnvAccess {
    /// A deploy needs `developer` unless the environment says otherwise: a CI identity with
    /// that role can ship (the tasks a deploy runs are part of it, not checked one by one).
    pub const DEFAULT_DEPLOY: Permission = Permission::Developer;

    /// `lumo exec` needs `maintainer` unless the environment says otherwise: an ad-hoc command
    /// can do whatever the environment's secrets allow.
    pub const DEFAULT_EXEC: Permission = Permission::Maintainer;
}

/// What answers a confirmation prompt in an environment (`access.<env>.confirm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfirmRule {
    /// Exactly `yes`.
    #[default]
    Yes,
    /// The environment's name, typed out (GitHub's "type the repository name"): a reflex
    /// `yes` in the wrong terminal does not reach production.
    Name,
}

impl ConfirmRule {
    pub const NAMES: &[&str] = &["yes", "name"];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmRule::Yes => "yes",
            ConfirmRule::Name => "name",
        }
    }
}

/// The `aws` provider's settings live with it; they are part of every loaded config.
pub use crate::backend::aws::settings::{Architecture, AwsSettings};

/// A secret the config declares. The value is resolved when the config is loaded (a function
/// value is called then); a function that threw is kept as the error and reported only when a
/// task actually needs the secret, so `lumo tasks` works without the secret at hand.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretDef {
    pub description: Option<String>,
    pub value: Result<String, String>,
}

/// The environment variable a task receives a secret in: `databaseUrl` → `DATABASE_URL`,
/// `api-key` → `API_KEY`, `DATABASE_URL` stays as it is (PRODUCT.md §4). The runner's rule,
/// so what validation checks is what tasks get.
pub fn secret_env_var(name: &str) -> String {
    lumo_runner::contract::secret_env_name(name)
}

/// One declared argument of a manual run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgDef {
    pub description: Option<String>,
    /// Present and not blank on every manual run.
    pub required: bool,
    /// Fits `kind` and `choices` (checked when the config loads).
    pub default: Option<String>,
    #[serde(rename = "type")]
    pub kind: ArgType,
    /// The values allowed; `None` = any value of `kind`.
    pub choices: Option<Vec<String>>,
}

impl Default for ArgDef {
    fn default() -> Self {
        ArgDef {
            description: None,
            required: false,
            default: None,
            kind: ArgType::String,
            choices: None,
        }
    }
}

/// What an argument's value must be (`args.<name>.type`). Values reach the task as strings
/// either way (`LUMO_ARG_<NAME>`, `ctx.args`); the type is what lumo checks before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    String,
    /// A decimal number: `3`, `-1`, `2.5`, `1e3`.
    Number,
    /// `true` or `false`.
    Boolean,
    /// The name of another environment of this project (Lagoon's source-environment argument):
    /// one of the config's `environments` when it declares them, else any valid environment
    /// name; never the environment the run is in.
    Environment,
}

impl ArgType {
    pub const NAMES: &[&str] = &["string", "number", "boolean", "environment"];

    pub fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Number => "number",
            ArgType::Boolean => "boolean",
            ArgType::Environment => "environment",
        }
    }

    /// Whether `value` is of this type, leaving out what depends on the run (which environment
    /// it is in) and on the project (which environments it declares).
    pub fn admits(self, value: &str) -> bool {
        match self {
            ArgType::String => true,
            ArgType::Number => is_number(value),
            ArgType::Boolean => matches!(value, "true" | "false"),
            ArgType::Environment => super::checks::is_environment_name(value),
        }
    }

    /// What a value of this type looks like, for errors.
    pub fn described(self) -> &'static str {
        match self {
            ArgType::String => "any text",
            ArgType::Number => "a number (like `3`, `-1` or `2.5`)",
            ArgType::Boolean => "`true` or `false`",
            ArgType::Environment => "the name of another environment of this project",
        }
    }
}

/// A decimal number as JavaScript would print or read it: `-12`, `0.5`, `1e3`; not `inf`,
/// `NaN`, `0x10`, `.5` or an empty string.
fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    digits.starts_with(|c: char| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && value.parse::<f64>().is_ok_and(f64::is_finite)
}

/// `tasks.<name>` with every default applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskConfig {
    /// Seconds, 1..=900.
    pub timeout: u32,
    /// Empty = manual only.
    pub run_on: Vec<RunOn>,
    pub copy_assets: Vec<CopyAsset>,
    pub description: Option<String>,
    pub depends_on: Vec<String>,
    /// `None` = every environment.
    pub environments: Option<Vec<String>>,
    pub permission: Permission,
    pub command: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Handed to the task as `ctx.config`; always an object.
    pub config: Value,
    pub args: IndexMap<String, ArgDef>,
    pub confirm: Option<String>,
    pub retries: u32,
    pub memory_size: Option<u32>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            timeout: 300,
            run_on: vec![RunOn::Deploy, RunOn::Update],
            copy_assets: Vec::new(),
            description: None,
            depends_on: Vec::new(),
            environments: None,
            permission: Permission::Developer,
            command: None,
            env: BTreeMap::new(),
            config: Value::Object(Default::default()),
            args: IndexMap::new(),
            confirm: None,
            retries: 0,
            memory_size: None,
        }
    }
}

impl TaskConfig {
    /// The args a deployment run hands the task: every declared `default`. Nobody passes args
    /// to a deploy, and `required` binds manual runs only (PRODUCT.md §3), so the defaults are
    /// the whole of them (a manual run starts from the same defaults).
    pub fn deploy_args(&self) -> BTreeMap<String, String> {
        self.args
            .iter()
            .filter_map(|(name, def)| Some((name.clone(), def.default.clone()?)))
            .collect()
    }
}

/// One `copyAssets` entry: `from` relative to the project root, `to` relative to the bundle root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyAsset {
    pub from: String,
    pub to: String,
    /// The entry's position in the config's `copyAssets` array. Invalid entries are dropped at
    /// validation, so the position in `TaskConfig::copy_assets` can differ; errors found later
    /// (a missing `from`, say) name the entry by this index, as the user wrote it.
    #[serde(skip)]
    pub index: usize,
}

/// A loaded, validated `lumo.config.js`.
#[derive(Debug, Clone)]
pub struct ProjectConfig {
    /// The config file, as given or found.
    pub path: PathBuf,
    /// The directory holding the config file; every project path is relative to it.
    pub root: PathBuf,
    pub project_name: String,
    pub provider: Provider,
    /// Default environment when `--env` is not given.
    pub environment: Option<String>,
    /// When set, `--env` and every task's `environments` must be one of these.
    pub environments: Option<Vec<String>>,
    pub region: Option<String>,
    pub aws: AwsSettings,
    pub secrets: IndexMap<String, SecretDef>,
    /// Declaration order is the default run order.
    pub tasks: IndexMap<String, TaskConfig>,
    /// `access.<env>`: who holds which role in an environment, what a deploy there needs, and
    /// how a confirmation there is answered.
    pub access: BTreeMap<String, EnvAccess>,
    /// What `lumo prune` keeps (`retention: { runs, days }`).
    pub retention: super::retention::Retention,
    /// Keys accepted for Lumo compatibility and ignored (`routes`, `networking`, ...).
    pub ignored_keys: Vec<String>,
    /// What the provider's backend still lacks (`aws.bucket`, `aws.table`): the config loads,
    /// but nothing can be deployed, run or read on that provider until it is fixed.
    pub backend_problems: Vec<super::ConfigProblem>,
}

impl ProjectConfig {
    /// Whether the provider's backend can be opened with this config: the same error as an
    /// invalid config (key paths, exit 2) when it cannot.
    pub fn backend_ready(&self) -> Result<(), super::ConfigError> {
        if self.backend_problems.is_empty() {
            return Ok(());
        }
        Err(super::ConfigError::Invalid {
            path: self.path.clone(),
            problems: self.backend_problems.clone(),
            partial: None,
        })
    }

    /// Every environment the config names: `environments` when declared (every other name must
    /// be one of them), else the default `environment`, the tasks' `environments` and the keys
    /// of `access`. Sorted, each once. Where a run id's prefix is looked up on a store keyed by
    /// environment (`aws`).
    pub fn named_environments(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.environments {
            Some(declared) => declared.clone(),
            None => self
                .environment
                .iter()
                .chain(
                    self.tasks
                        .values()
                        .filter_map(|t| t.environments.as_ref())
                        .flatten(),
                )
                .chain(self.access.keys())
                .cloned()
                .collect(),
        };
        names.sort();
        names.dedup();
        names
    }
}
