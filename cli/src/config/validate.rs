//! Validation of the evaluated config (plain JSON) into a [`ProjectConfig`]: the top-level keys,
//! `secrets` and `access` here, each task in `task.rs`, the `aws` section where the `aws`
//! provider keeps everything it asks of the user (`backend/aws/settings.rs`). Every problem is collected before
//! anything is returned, so the user fixes the whole config in one round (PRODUCT.md §3).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::checks::{self, Problems, child, got};
use super::engine::Evaluated;
use super::task::{self, TaskScope};
use super::{
    ConfigProblem, ConfirmRule, EnvAccess, Permission, ProjectConfig, Provider, SecretDef,
    secret_env_var,
};
use crate::backend::aws::settings as aws_settings;

/// Keys lumo reads.
const TOP_LEVEL_KEYS: &[&str] = &[
    "projectName",
    "provider",
    "environment",
    "environments",
    "region",
    "aws",
    "secrets",
    "tasks",
    "access",
    "retention",
];

/// The environment of a config without `environment`, as in the Lumo Framework.
const DEFAULT_ENVIRONMENT: &str = "dev";

/// Lumo Framework keys that mean nothing to lumo: accepted so a Lumo config loads unchanged,
/// and recorded in `ignored_keys` for `--verbose`.
const LUMO_FRAMEWORK_KEYS: &[&str] = &[
    "routes",
    "networking",
    "domainName",
    "domain",
    "events",
    "build",
    "resources",
];

const ROLES: &[&str] = &["guest", "developer", "maintainer"];

/// What `access.<env>` may hold: the role lists, and the environment's rules.
const ENV_ACCESS_KEYS: &[&str] = &[
    "guest",
    "developer",
    "maintainer",
    "deploy",
    "exec",
    "confirm",
];

pub(super) fn validate(
    path: &Path,
    root: &Path,
    evaluated: &Evaluated,
    provider_override: Option<Provider>,
) -> Result<ProjectConfig, (Vec<ConfigProblem>, Box<ProjectConfig>)> {
    let mut p = Problems::default();
    let empty = Map::new();
    let map = match &evaluated.export {
        Value::Object(map) => map,
        other => {
            p.add("(config)", format!("must be an object, got {}", got(other)));
            &empty
        }
    };

    let all_keys: Vec<&str> = TOP_LEVEL_KEYS
        .iter()
        .chain(LUMO_FRAMEWORK_KEYS)
        .copied()
        .collect();
    checks::unknown_keys_listing(&mut p, "", map, &all_keys, TOP_LEVEL_KEYS);
    let ignored_keys = map
        .keys()
        .filter(|k| LUMO_FRAMEWORK_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();

    let project_name = match map.get("projectName") {
        Some(v) => project_name(&mut p, v),
        None => {
            p.add(
                "projectName",
                "is required: the project's name, 1 to 40 characters of a-z, 0-9 and `-`",
            );
            None
        }
    };
    // Backend problems: not load errors (see below), reported by whatever opens the backend.
    let mut missing = Problems::default();
    let provider = match (provider_override, map.get("provider")) {
        (Some(provider), _) => provider,
        // A near miss (`AWS`, `lcoal`) is a typo, reported at load with its "did you mean".
        (None, Some(Value::String(other)))
            if other != "local"
                && other != "aws"
                && crate::suggest::hint_suffix(other, ["local", "aws"]).is_empty() =>
        {
            // A Lumo Framework config names its own providers (`cloudflare`): it loads, so
            // `lumo tasks` works, and whatever would deploy says how to run it here. `local`
            // stands in meanwhile; it is never opened while this problem is there.
            missing.add(
                "provider",
                format!(
                    "`{other}` is not a provider lumo deploys to (it runs tasks on `local` or \
                     `aws`); run with `--provider local`, or set `provider: 'local'` or \
                     `'aws'`"
                ),
            );
            Provider::Local
        }
        (None, Some(v)) => match checks::one_of(&mut p, "provider", v, &["local", "aws"]) {
            Some("aws") => Provider::Aws,
            _ => Provider::Local,
        },
        (None, None) => Provider::Local,
    };
    let environments = map
        .get("environments")
        .and_then(|v| environment_list(&mut p, v));
    let environment = match map.get("environment") {
        Some(v) => environment_name(&mut p, "environment", v).inspect(|name| {
            if let Some(declared) = &environments {
                task::check_declared_environment(&mut p, "environment", name, declared);
            }
        }),
        // The Lumo Framework's default (`environment: z.string().default('dev')`), unless the
        // config lists its environments without a `dev`: then `--env` must say which.
        None => environments
            .as_ref()
            .is_none_or(|declared| declared.iter().any(|e| e == DEFAULT_ENVIRONMENT))
            .then(|| DEFAULT_ENVIRONMENT.to_string()),
    };
    let region = map
        .get("region")
        .and_then(|v| checks::non_empty_string(&mut p, "region", v));
    let aws = map
        .get("aws")
        .map(|v| aws_settings::validate(&mut p, v))
        .unwrap_or_default();
    // Not a load error: a Lumo Framework config naming `provider: 'aws'` loads unchanged
    // (PRODUCT.md §3), and `build` or `tasks` (without an `access` map to check) need no
    // bucket. Whatever opens the `aws` backend, and every deploy (dry runs too, which read the
    // environment's state), asks [`ProjectConfig::backend_ready`] first.
    if provider == Provider::Aws {
        aws_settings::require_resources(&mut missing, map.get("aws"), provider_override.is_some());
    }
    let secrets = map
        .get("secrets")
        .map(|v| secrets(&mut p, v, &evaluated.secrets))
        .unwrap_or_default();

    let scope = TaskScope {
        environments: environments.as_deref(),
    };
    let mut tasks = IndexMap::new();
    if let Some(v) = map.get("tasks")
        && let Some(entries) = checks::object(&mut p, "tasks", v, "an object of tasks by name")
    {
        for (name, value) in entries {
            task::check_name(&mut p, name);
            if let Some(task) = task::task(&mut p, name, value, &scope) {
                tasks.insert(name.clone(), task);
            }
        }
    }
    check_env_clashes(&mut p, &tasks, &secrets);

    let access = map
        .get("access")
        .map(|v| access(&mut p, v, environments.as_deref()))
        .unwrap_or_default();

    let retention = map
        .get("retention")
        .map(|v| super::retention::validate(&mut p, v))
        .unwrap_or_default();

    let problems = p.into_vec();
    let config = ProjectConfig {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
        project_name: project_name.unwrap_or_default(),
        provider,
        environment,
        environments,
        region,
        aws,
        secrets,
        tasks,
        access,
        retention,
        ignored_keys,
        backend_problems: missing.into_vec(),
    };
    if problems.is_empty() {
        Ok(config)
    } else {
        Err((problems, Box::new(config)))
    }
}

fn project_name(p: &mut Problems, value: &Value) -> Option<String> {
    let name = checks::string(p, "projectName", value)?;
    let valid = (1..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        p.add(
            "projectName",
            format!(
                "must be 1 to 40 characters of a-z, 0-9 and `-`, got {}",
                got(value)
            ),
        );
        return None;
    }
    Some(name)
}

fn environment_name(p: &mut Problems, key: &str, value: &Value) -> Option<String> {
    let name = checks::string(p, key, value)?;
    if !checks::is_environment_name(&name) {
        p.add(
            key,
            format!("{}, got {}", checks::ENVIRONMENT_NAME_RULE, got(value)),
        );
        return None;
    }
    Some(name)
}

fn environment_list(p: &mut Problems, value: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        p.add(
            "environments",
            format!("must be an array of environment names, got {}", got(value)),
        );
        return None;
    };
    if items.is_empty() {
        p.add(
            "environments",
            "lists no environment; name at least one, or remove the key to allow any",
        );
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("environments[{i}]");
        let Some(name) = environment_name(p, &key, item) else {
            continue;
        };
        if names.contains(&name) {
            p.add(key, format!("`{name}` is listed more than once"));
        } else {
            names.push(name);
        }
    }
    Some(names)
}

fn secrets(
    p: &mut Problems,
    value: &Value,
    resolved: &HashMap<String, Result<String, String>>,
) -> IndexMap<String, SecretDef> {
    let mut secrets = IndexMap::new();
    // Nothing under `secrets` is ever quoted in an error: a value in the wrong place is still
    // a secret. So these checks say what kind of value was found (`checks::kind_of`), never it.
    let Some(map) = secret_object(p, "secrets", value, "an object of secrets by name") else {
        return secrets;
    };
    let mut total_bytes = 0usize;
    let mut env_vars: HashMap<String, &str> = HashMap::new();
    for (name, entry) in map {
        let key = child("secrets", name);
        // Any name the Lumo Framework accepts (`api-key`, `db.password`, `databaseUrl`) is
        // fine as long as its upper-snake-case form is a variable name tasks can be given.
        let var = secret_env_var(name);
        if !checks::is_variable_name(&var) {
            p.add(
                key.clone(),
                format!(
                    "invalid secret name: it is passed to tasks as the upper-snake-case form of \
                     its name, {}, which is not a variable name; use letters and digits, \
                     starting with a letter (`-`, `_` or `.` may separate words)",
                    if var.is_empty() {
                        "an empty name".to_string()
                    } else {
                        format!("`{var}`")
                    }
                ),
            );
        } else if var.starts_with("LUMO_") {
            p.add(
                key.clone(),
                format!("would be passed as `{var}`, and `LUMO_` variables are reserved for lumo"),
            );
        } else if let Some(other) = env_vars.get(&var) {
            p.add(
                key.clone(),
                format!("is passed as `{var}`, like the secret `{other}`; rename one of them"),
            );
        } else {
            env_vars.insert(var, name);
        }
        let Some(def) = secret_object(p, &key, entry, "an object `{ value, description? }`") else {
            continue;
        };
        checks::unknown_keys(p, &key, def, &["value", "description"]);
        let description = match def.get("description") {
            None => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                p.add(
                    child(&key, "description"),
                    format!("must be a string, got {}", checks::kind_of(other)),
                );
                None
            }
        };
        let value = match (resolved.get(name), def.get("value")) {
            (Some(outcome), _) => outcome.clone(),
            (None, Some(Value::String(s))) => Ok(s.clone()),
            (None, Some(other)) => {
                p.add(
                    child(&key, "value"),
                    format!(
                        "must be a string or a function returning one, got {}",
                        checks::kind_of(other)
                    ),
                );
                continue;
            }
            (None, None) => {
                p.add(
                    child(&key, "value"),
                    "is required: a string, or a function returning one \
                     (e.g. `() => process.env.DATABASE_URL`)",
                );
                continue;
            }
        };
        if let Ok(text) = &value {
            // Tasks get secrets as environment variables, and Linux refuses to start a process
            // with one `NAME=value` string over MAX_ARG_STRLEN (128 KiB): every task would fail
            // with "Argument list too long" after the lock is taken.
            let entry_bytes = secret_env_var(name).len() + 1 + text.len() + 1;
            total_bytes += entry_bytes;
            // Tasks also get the pre-handler spelling of an acronym name (`API_URLVALUE`).
            if let Some(legacy) = lumo_runner::contract::legacy_secret_env_name(name) {
                total_bytes += legacy.len() + 1 + text.len() + 1;
            }
            if entry_bytes > MAX_SECRET_ENV_BYTES {
                p.add(
                    child(&key, "value"),
                    format!(
                        "is {} KiB; a secret is passed to tasks as an environment variable, \
                         which holds at most {} KiB (name and value); put larger data in a \
                         file or a store and pass its location",
                        text.len().div_ceil(1024),
                        MAX_SECRET_ENV_BYTES / 1024
                    ),
                );
            }
        }
        secrets.insert(name.clone(), SecretDef { description, value });
    }
    if total_bytes > MAX_SECRETS_TOTAL_BYTES {
        p.add(
            "secrets",
            format!(
                "the secrets add up to {} KiB; tasks get them as environment variables, which \
                 hold at most {} KiB together",
                total_bytes.div_ceil(1024),
                MAX_SECRETS_TOTAL_BYTES / 1024
            ),
        );
    }
    secrets
}

/// Linux's MAX_ARG_STRLEN: the longest single `NAME=value` string a process can be started
/// with.
const MAX_SECRET_ENV_BYTES: usize = 128 * 1024;

/// What all secrets together may take of a task's environment: Linux allows arguments and
/// environment a quarter of the stack limit (2 MiB with the usual 8 MiB), and the task's own
/// `env`, lumo's variables and the inherited environment need room too.
const MAX_SECRETS_TOTAL_BYTES: usize = 1024 * 1024;

/// [`checks::object`] for anything under `secrets`: the kind of a wrong value, never the value.
fn secret_object<'v>(
    p: &mut Problems,
    key: &str,
    value: &'v Value,
    shape: &str,
) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(map) if checks::unserializable(map).is_none() => Some(map),
        other => {
            p.add(
                key,
                format!("must be {shape}, got {}", checks::kind_of(other)),
            );
            None
        }
    }
}

/// A task `env` variable with a secret's name would silently win or lose against the secret.
fn check_env_clashes(
    p: &mut Problems,
    tasks: &IndexMap<String, super::TaskConfig>,
    secrets: &IndexMap<String, SecretDef>,
) {
    let secret_vars: HashMap<String, &str> = secrets
        .keys()
        .flat_map(|name| {
            let legacy = lumo_runner::contract::legacy_secret_env_name(name);
            std::iter::once(secret_env_var(name))
                .chain(legacy)
                .map(move |var| (var, name.as_str()))
        })
        .collect();
    for (task, config) in tasks {
        for var in config.env.keys() {
            if let Some(secret) = secret_vars.get(var) {
                p.add(
                    format!("tasks.{task}.env.{var}"),
                    format!("clashes with the secret `{secret}`, which tasks receive as `{var}`"),
                );
            }
        }
    }
}

fn access(
    p: &mut Problems,
    value: &Value,
    environments: Option<&[String]>,
) -> BTreeMap<String, EnvAccess> {
    let mut access = BTreeMap::new();
    let Some(map) = checks::object(
        p,
        "access",
        value,
        "an object `{ <environment>: { guest?, developer?, maintainer?, deploy?, confirm? } }`",
    ) else {
        return access;
    };
    for (env, rules) in map {
        let env_key = child("access", env);
        if !checks::is_environment_name(env) {
            p.add(
                env_key.clone(),
                format!(
                    "{}, got {}",
                    checks::ENVIRONMENT_NAME_RULE,
                    got(&Value::String(env.clone()))
                ),
            );
        } else if let Some(declared) = environments {
            task::check_declared_environment(p, &env_key, env, declared);
        }
        let Some(rules) = checks::object(
            p,
            &env_key,
            rules,
            "an object `{ guest?, developer?, maintainer? }` of actor lists, with `deploy?` and \
             `confirm?`",
        ) else {
            continue;
        };
        checks::unknown_keys(p, &env_key, rules, ENV_ACCESS_KEYS);
        let mut entry = EnvAccess::default();
        for (key, value) in rules {
            let rule_key = child(&env_key, key);
            match key.as_str() {
                "deploy" => {
                    entry.deploy = checks::one_of(p, &rule_key, value, ROLES).and_then(role)
                }
                "exec" => entry.exec = checks::one_of(p, &rule_key, value, ROLES).and_then(role),
                "confirm" => {
                    entry.confirm = match checks::one_of(p, &rule_key, value, ConfirmRule::NAMES) {
                        Some("name") => ConfirmRule::Name,
                        _ => ConfirmRule::Yes,
                    }
                }
                _ => {
                    let Some(permission) = role(key) else {
                        continue;
                    };
                    let Some(actors) = checks::string_list(p, &rule_key, value, false) else {
                        continue;
                    };
                    entry
                        .roles
                        .insert(permission, actors.into_iter().map(|(_, a)| a).collect());
                }
            }
        }
        access.insert(env.clone(), entry);
    }
    access
}

fn role(name: &str) -> Option<Permission> {
    Some(match name {
        "guest" => Permission::Guest,
        "developer" => Permission::Developer,
        "maintainer" => Permission::Maintainer,
        _ => return None,
    })
}
