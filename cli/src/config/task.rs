//! Validation of one `tasks.<name>` entry into a [`TaskConfig`] with every default applied.
//!
//! Only what can be judged from the config alone is checked here; whether a task file exists,
//! whether `dependsOn` names real tasks without cycles, and whether `copyAssets.from` exists are
//! checked by discovery, the planner and the bundler, which know the filesystem.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::checks::{self, Problems, child, got};
use super::{ArgDef, ArgType, CopyAsset, Permission, RunOn, TaskConfig};
use crate::suggest;

const TASK_KEYS: &[&str] = &[
    "timeout",
    "runOn",
    "copyAssets",
    "description",
    "dependsOn",
    "environments",
    "permission",
    "command",
    "env",
    "config",
    "args",
    "confirm",
    "retries",
    "memorySize",
];

const RUN_ON: &[&str] = &["deploy", "update", "change"];
const PERMISSIONS: &[&str] = &["guest", "developer", "maintainer"];

/// What a task is checked against that lives outside the task.
pub(super) struct TaskScope<'a> {
    /// The project's `environments`, when declared.
    pub environments: Option<&'a [String]>,
}

/// Checks the name `tasks.<name>` (a path under `functions/tasks/` without extension).
pub(super) fn check_name(problems: &mut Problems, name: &str) {
    let key = child("tasks", name);
    if name.is_empty() {
        problems.add("tasks", "a task name must not be empty");
    } else if !is_task_name(name) {
        problems.add(
            key,
            format!(
                "invalid task name {}: {TASK_NAME_RULE}",
                got(&Value::String(name.to_string()))
            ),
        );
    }
}

/// What a task name may be, as users read it: the one rule for config keys and for the names
/// discovery derives from file names, so every task on disk can be named in the config.
pub(crate) const TASK_NAME_RULE: &str = "a task name is its path under `functions/tasks/` \
     without extension, made of letters, digits, `.`, `_` and `-`, with `/` between directories \
     (no leading or trailing `/`, no `..`)";

/// Whether `name` obeys [`TASK_NAME_RULE`]. A name is printed in CI logs and used as a config
/// key, so a space, a newline or an emoji in it would split lines or be unnameable.
pub(crate) fn is_task_name(name: &str) -> bool {
    let allowed_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    let parts_ok = name
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..");
    !name.is_empty() && allowed_chars && parts_ok
}

/// Validates `tasks.<name>`; `None` when the value is not an object (already recorded).
pub(super) fn task(
    problems: &mut Problems,
    name: &str,
    value: &Value,
    scope: &TaskScope<'_>,
) -> Option<TaskConfig> {
    let prefix = child("tasks", name);
    let map = checks::object(
        problems,
        &prefix,
        value,
        "an object of task settings (`{ timeout, runOn, ... }`)",
    )?;
    checks::unknown_keys(problems, &prefix, map, TASK_KEYS);

    let mut task = TaskConfig::default();
    let key = |k: &str| child(&prefix, k);
    let p = problems;

    if let Some(v) = map.get("timeout")
        && let Some(timeout) =
            checks::integer(p, &key("timeout"), v, 1..=900, "a whole number of seconds")
    {
        task.timeout = timeout;
    }
    if let Some(v) = map.get("runOn")
        && let Some(run_on) = run_on(p, &key("runOn"), v)
    {
        task.run_on = run_on;
    }
    if let Some(v) = map.get("copyAssets") {
        task.copy_assets = copy_assets(p, &key("copyAssets"), v);
    }
    if let Some(v) = map.get("description") {
        task.description = checks::string(p, &key("description"), v);
    }
    if let Some(v) = map.get("dependsOn") {
        task.depends_on = depends_on(p, &key("dependsOn"), name, v);
    }
    if let Some(v) = map.get("environments") {
        task.environments = environments(p, &key("environments"), v, scope);
    }
    if let Some(v) = map.get("permission") {
        task.permission = match checks::one_of(p, &key("permission"), v, PERMISSIONS) {
            Some("guest") => Permission::Guest,
            Some("maintainer") => Permission::Maintainer,
            _ => Permission::Developer,
        };
    }
    if let Some(v) = map.get("command") {
        task.command = checks::non_empty_string(p, &key("command"), v);
    }
    if let Some(v) = map.get("env") {
        task.env = env(p, &key("env"), v);
    }
    if let Some(v) = map.get("config") {
        let k = key("config");
        if checks::object(p, &k, v, "an object (handed to the task as `ctx.config`)").is_some() {
            check_plain_json(p, &k, v);
            task.config = v.clone();
        }
    }
    if let Some(v) = map.get("args") {
        task.args = args(p, &key("args"), v, scope);
    }
    if let Some(v) = map.get("confirm") {
        task.confirm = checks::non_empty_string(p, &key("confirm"), v);
    }
    if let Some(v) = map.get("retries")
        && let Some(retries) =
            checks::integer(p, &key("retries"), v, 0..=10, "a whole number of retries")
    {
        task.retries = retries;
    }
    if let Some(v) = map.get("memorySize") {
        task.memory_size = checks::integer(
            p,
            &key("memorySize"),
            v,
            128..=10240,
            "a whole number of MB",
        );
    }
    Some(task)
}

fn run_on(p: &mut Problems, key: &str, value: &Value) -> Option<Vec<RunOn>> {
    let items = checks::string_list(p, key, value, true)?;
    let mut run_on = Vec::new();
    for (item_key, item) in items {
        let parsed = match checks::one_of(p, &item_key, &Value::String(item.clone()), RUN_ON) {
            Some("deploy") => RunOn::Deploy,
            Some("update") => RunOn::Update,
            Some("change") => RunOn::Change,
            _ => continue,
        };
        if run_on.contains(&parsed) {
            p.add(item_key, format!("`{item}` is listed more than once"));
        } else {
            run_on.push(parsed);
        }
    }
    Some(run_on)
}

fn copy_assets(p: &mut Problems, key: &str, value: &Value) -> Vec<CopyAsset> {
    let Value::Array(items) = value else {
        p.add(
            key,
            format!(
                "must be an array of `{{ from, to? }}` objects, got {}",
                got(value)
            ),
        );
        return Vec::new();
    };
    let mut assets = Vec::new();
    // Whether each kept asset's `to` was written or defaulted from `from`, for the messages.
    let mut to_given = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let Some(map) = checks::object(p, &item_key, item, "an object `{ from, to? }`") else {
            continue;
        };
        checks::unknown_keys(p, &item_key, map, &["from", "to"]);
        let from = match map.get("from") {
            Some(v) => relative_path(p, &child(&item_key, "from"), v, "the project root"),
            None => {
                p.add(
                    child(&item_key, "from"),
                    "is required: the file or directory to copy, relative to the project root",
                );
                None
            }
        };
        let to = match map.get("to") {
            Some(v) => relative_path(p, &child(&item_key, "to"), v, "the bundle root"),
            None => from.as_deref().and_then(|from| {
                let base = Path::new(from.trim_end_matches('/')).file_name();
                let base = base.map(|b| b.to_string_lossy().into_owned());
                if base.is_none() {
                    p.add(
                        child(&item_key, "to"),
                        format!("is required when `from` ({from}) has no file name to default to"),
                    );
                }
                base
            }),
        };
        if let (Some(from), Some(to)) = (from, to) {
            assets.push(CopyAsset { from, to, index: i });
            to_given.push(map.contains_key("to"));
        }
    }
    check_overlapping_targets(p, key, &assets, &to_given);
    assets
}

/// Two assets may not land in the same place: equal `to`s (`m`, `m/` and `./m` are one place)
/// would merge two sources into one directory, and a `to` inside another's would copy one
/// asset into the middle of the other. Either is refused naming both entries; the bundler only
/// sees clashes file by file, which a merge of two directories with distinct files passes.
/// The bundle root is the one place that is shared: the task's own files are there already,
/// so an asset copied to it (`to: '.'`) does not own it, and others may have their own `to`s
/// below it (two assets both copied to the root are still refused).
fn check_overlapping_targets(p: &mut Problems, key: &str, assets: &[CopyAsset], to_given: &[bool]) {
    let targets: Vec<String> = assets.iter().map(|a| normalised(&a.to)).collect();
    for (j, later) in assets.iter().enumerate() {
        let Some(i) = (0..j).find(|&i| overlaps(&targets[i], &targets[j])) else {
            continue;
        };
        let earlier = &assets[i];
        let shown = |asset: &CopyAsset, given: bool| {
            if given {
                format!("`{}`", asset.to)
            } else {
                format!("`{}` (the default: the name of `from`)", asset.to)
            }
        };
        let message = if targets[i] == targets[j] {
            format!(
                "{} is the same place as {}, the `to` of `copyAssets[{}]`: two assets would be \
                 merged into one; give each its own `to`",
                shown(later, to_given[j]),
                shown(earlier, to_given[i]),
                earlier.index
            )
        } else {
            let (inner, outer) = if targets[j].len() > targets[i].len() {
                (&targets[j], &targets[i])
            } else {
                (&targets[i], &targets[j])
            };
            format!(
                "{} overlaps {}, the `to` of `copyAssets[{}]`: `{inner}` is inside `{outer}`, \
                 so one asset would be copied into the other; give each its own `to`, \
                 outside the other's",
                shown(later, to_given[j]),
                shown(earlier, to_given[i]),
                earlier.index
            )
        };
        p.add(child(&format!("{key}[{}]", later.index), "to"), message);
    }
}

/// A bundle path as a place: `./m/`, `m//` and `m` are all `m`; the bundle root is ``.
fn normalised(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Equal places, or one strictly inside the other; the root contains everything but owns
/// nothing (see `check_overlapping_targets`).
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| {
        !outer.is_empty()
            && inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

/// A non-empty, relative path that stays inside `root_name` (no `..`, not absolute).
fn relative_path(p: &mut Problems, key: &str, value: &Value, root_name: &str) -> Option<String> {
    let path = checks::non_empty_string(p, key, value)?;
    let escapes = Path::new(&path).components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) || path.starts_with('\\')
        || path.split(['/', '\\']).any(|part| part == "..");
    if escapes {
        p.add(
            key,
            format!(
                "must be a path relative to {root_name}, without `..` and not absolute, got {}",
                got(value)
            ),
        );
        return None;
    }
    Some(path)
}

fn depends_on(p: &mut Problems, key: &str, task: &str, value: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (item_key, name) in checks::string_list(p, key, value, true).unwrap_or_default() {
        if name == task {
            p.add(
                item_key,
                format!("a task cannot depend on itself (`{task}`)"),
            );
        } else if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn environments(
    p: &mut Problems,
    key: &str,
    value: &Value,
    scope: &TaskScope<'_>,
) -> Option<Vec<String>> {
    let items = checks::string_list(p, key, value, true)?;
    if items.is_empty() {
        p.add(
            key,
            "lists no environment; remove the key to make the task exist in every environment",
        );
        return None;
    }
    let mut names: Vec<String> = Vec::new();
    for (item_key, name) in items {
        if !checks::is_environment_name(&name) {
            p.add(
                item_key,
                format!(
                    "{}, got {}",
                    checks::ENVIRONMENT_NAME_RULE,
                    got(&Value::String(name))
                ),
            );
            continue;
        }
        if let Some(declared) = scope.environments {
            check_declared_environment(p, &item_key, &name, declared);
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Some(names)
}

/// Shared with the top level: an environment a key refers to must be one the project declares.
pub(super) fn check_declared_environment(
    p: &mut Problems,
    key: &str,
    name: &str,
    declared: &[String],
) {
    if declared.iter().any(|d| d == name) {
        return;
    }
    let hint = suggest::hint_suffix(name, declared.iter().map(String::as_str));
    let listed: Vec<&str> = declared.iter().map(String::as_str).collect();
    p.add(
        key,
        format!(
            "`{name}` is not one of the project's `environments` ({}){hint}",
            checks::alternatives(&listed)
        ),
    );
}

fn env(p: &mut Problems, key: &str, value: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(map) = checks::object(p, key, value, "an object of environment variables") else {
        return env;
    };
    for (name, value) in map {
        let var_key = child(key, name);
        if !checks::is_variable_name(name) {
            p.add(
                var_key,
                "invalid variable name: letters, digits and `_`, not starting with a digit",
            );
            continue;
        }
        if name.starts_with("LUMO_") {
            p.add(
                var_key,
                "names starting with `LUMO_` are reserved for the variables lumo sets",
            );
            continue;
        }
        match scalar_string(value) {
            Some(s) => {
                env.insert(name.clone(), s);
            }
            None => p.add(
                var_key,
                format!(
                    "must be a string (or a number or boolean), got {}",
                    got(value)
                ),
            ),
        }
    }
    env
}

/// Strings as they are; numbers and booleans as JavaScript would print them.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn args(
    p: &mut Problems,
    key: &str,
    value: &Value,
    scope: &TaskScope<'_>,
) -> IndexMap<String, ArgDef> {
    let mut args = IndexMap::new();
    let Some(map) = checks::object(p, key, value, "an object of argument definitions") else {
        return args;
    };
    // `--arg` names are matched case-insensitively and reach the task as `LUMO_ARG_<NAME>`, so
    // two names that differ only in case (or `dryRun` and `dry_run`) would be one argument.
    let mut variables: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in map {
        let arg_key = child(key, name);
        if !checks::is_variable_name(name) {
            p.add(
                arg_key.clone(),
                format!(
                    "invalid argument name: letters, digits and `_`, not starting with a digit \
                     (it is passed as `LUMO_ARG_{name}`)"
                ),
            );
        } else {
            let variable = lumo_runner::contract::arg_env_name(name);
            if let Some(first) = variables.get(&variable) {
                p.add(
                    arg_key.clone(),
                    format!(
                        "is the same argument as `{first}`: `--arg` names are matched without \
                         regard to case and both would be passed as `{variable}`; rename one"
                    ),
                );
            } else {
                variables.insert(variable, name);
            }
        }
        let Some(def) = checks::object(
            p,
            &arg_key,
            value,
            "an object `{ description?, required?, default?, type?, choices? }`",
        ) else {
            continue;
        };
        if let Some(arg) = arg(p, &arg_key, def, scope) {
            args.insert(name.clone(), arg);
        }
    }
    args
}

const ARG_KEYS: &[&str] = &["description", "required", "default", "type", "choices"];

fn arg(
    p: &mut Problems,
    key: &str,
    def: &Map<String, Value>,
    scope: &TaskScope<'_>,
) -> Option<ArgDef> {
    checks::unknown_keys(p, key, def, ARG_KEYS);
    let description = def
        .get("description")
        .and_then(|v| checks::string(p, &child(key, "description"), v));
    let required = def
        .get("required")
        .and_then(|v| checks::boolean(p, &child(key, "required"), v))
        .unwrap_or(false);
    let kind = match def.get("type") {
        None => ArgType::String,
        Some(v) => match checks::one_of(p, &child(key, "type"), v, ArgType::NAMES) {
            Some("number") => ArgType::Number,
            Some("boolean") => ArgType::Boolean,
            Some("environment") => ArgType::Environment,
            Some(_) => ArgType::String,
            // The type is unknown, so nothing can be said of the default or the choices.
            None => return None,
        },
    };
    let choices = def
        .get("choices")
        .and_then(|v| choices(p, &child(key, "choices"), v, kind, scope));
    let default = match def.get("default") {
        None => None,
        Some(v) => match scalar_string(v) {
            Some(s) => {
                let default_key = child(key, "default");
                let fits = check_arg_value(p, &default_key, v, &s, kind, scope)
                    && check_choice(p, &default_key, v, &s, choices.as_deref());
                fits.then_some(s)
            }
            None => {
                p.add(
                    child(key, "default"),
                    format!("must be a string, number or boolean, got {}", got(v)),
                );
                None
            }
        },
    };
    if required && let Some(default) = &default {
        p.add(
            key.to_string(),
            format!(
                "is `required` and also has a `default` ({}); a required argument must be \
                 given on every run, so drop one of them",
                got(&Value::String(default.clone()))
            ),
        );
    }
    Some(ArgDef {
        description,
        required,
        default,
        kind,
        choices,
    })
}

/// `args.<name>.choices`: a non-empty list of distinct values, each of the argument's type.
fn choices(
    p: &mut Problems,
    key: &str,
    value: &Value,
    kind: ArgType,
    scope: &TaskScope<'_>,
) -> Option<Vec<String>> {
    let shape = "a non-empty array of the values allowed (strings, numbers or booleans)";
    let items = match value {
        Value::Array(items) if !items.is_empty() => items,
        other => {
            p.add(key, format!("must be {shape}, got {}", got(other)));
            return None;
        }
    };
    let mut choices: Vec<String> = Vec::new();
    let mut fine = true;
    for (i, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let Some(s) = scalar_string(item).filter(|s| !s.trim().is_empty()) else {
            p.add(
                item_key,
                format!(
                    "must be a non-empty string, number or boolean, got {}",
                    got(item)
                ),
            );
            fine = false;
            continue;
        };
        if !check_arg_value(p, &item_key, item, &s, kind, scope) {
            fine = false;
        } else if choices.contains(&s) {
            p.add(item_key, format!("{} is listed twice", got(item)));
            fine = false;
        } else {
            choices.push(s);
        }
    }
    fine.then_some(choices)
}

/// Whether `text` (`value` as the config wrote it) is a value of `kind`; records a problem at
/// `key` when it is not. An `environment` must be one of the declared environments, if any.
fn check_arg_value(
    p: &mut Problems,
    key: &str,
    value: &Value,
    text: &str,
    kind: ArgType,
    scope: &TaskScope<'_>,
) -> bool {
    if kind == ArgType::Environment {
        return match scope.environments {
            Some(known) if !known.iter().any(|e| e == text) => {
                p.add(
                    key,
                    format!(
                        "must be one of the project's environments ({}) as the argument's \
                         `type` is 'environment', got {}{}",
                        crate::quoted::list(known),
                        got(value),
                        suggest::hint_suffix(text, known.iter().map(String::as_str))
                    ),
                );
                false
            }
            Some(_) => true,
            None if !kind.admits(text) => {
                p.add(
                    key,
                    format!(
                        "must be an environment name as the argument's `type` is \
                         'environment': it {}, got {}",
                        checks::ENVIRONMENT_NAME_RULE,
                        got(value)
                    ),
                );
                false
            }
            None => true,
        };
    }
    if kind.admits(text) {
        return true;
    }
    p.add(
        key,
        format!(
            "must be {} as the argument's `type` is '{}', got {}",
            kind.described(),
            kind.as_str(),
            got(value)
        ),
    );
    false
}

/// Whether `text` is one of `choices` (any value when there are none); records a problem when
/// it is not.
fn check_choice(
    p: &mut Problems,
    key: &str,
    value: &Value,
    text: &str,
    choices: Option<&[String]>,
) -> bool {
    let Some(choices) = choices else {
        return true;
    };
    if choices.iter().any(|c| c == text) {
        return true;
    }
    p.add(
        key,
        format!(
            "must be one of the argument's `choices` ({}), got {}{}",
            crate::quoted::list(choices),
            got(value),
            suggest::hint_suffix(text, choices.iter().map(String::as_str))
        ),
    );
    false
}

/// `config` is handed to the task as JSON; a function in it would vanish on the way.
fn check_plain_json(p: &mut Problems, key: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            if checks::unserializable(map).is_some() {
                p.add(
                    key,
                    format!(
                        "must be plain JSON (it is handed to the task as `ctx.config`), got {}",
                        got(value)
                    ),
                );
                return;
            }
            for (k, v) in map {
                check_plain_json(p, &child(key, k), v);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_plain_json(p, &format!("{key}[{i}]"), v);
            }
        }
        _ => {}
    }
}
