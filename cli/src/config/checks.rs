//! The small vocabulary validation is written in: a problem collector and typed readers of
//! `serde_json::Value` that record what was allowed and what was given, then move on, so one
//! run of `lumo` reports every problem in the config at once (PRODUCT.md §3).

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use super::ConfigProblem;
use super::engine::UNSERIALIZABLE_MARK;
use crate::suggest;

/// Every problem found so far, in the order the config declares the keys.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// `tasks` + `timeout` → `tasks.timeout`; the top level has an empty prefix.
pub(crate) fn child(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// How a value reads in "got ...": `1200`, `"abc"`, `an array`, `a function`.
pub(crate) fn got(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let shown: String = s.chars().take(60).collect();
            let quoted = serde_json::to_string(&shown).unwrap_or_else(|_| format!("\"{shown}\""));
            if shown.len() < s.len() {
                format!("{}…\"", quoted.trim_end_matches('"'))
            } else {
                quoted
            }
        }
        Value::Array(items) if items.is_empty() => "an empty array".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(map) => match unserializable(map) {
            Some("function") => "a function".to_string(),
            Some("bigint") => "a BigInt".to_string(),
            _ => "an object".to_string(),
        },
    }
}

/// What kind of value `value` is, without showing it: for anything under `secrets`, whose
/// values must never appear in an error, however misplaced (`secrets: { dbUrl: process.env.DSN }`).
pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(items) if items.is_empty() => "an empty array",
        Value::Array(_) => "an array",
        Value::Object(map) => match unserializable(map) {
            Some("function") => "a function",
            Some("bigint") => "a BigInt",
            _ => "an object",
        },
    }
}

/// The marker the engine puts where JSON cannot hold a value (see `prelude.js`).
pub(crate) fn unserializable(map: &Map<String, Value>) -> Option<&str> {
    if map.len() == 1 {
        map.get(UNSERIALIZABLE_MARK).and_then(Value::as_str)
    } else {
        None
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`, each in backticks.
pub(crate) fn alternatives(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Records every key of `map` that is not in `allowed`, with a did-you-mean.
pub(crate) fn unknown_keys(
    problems: &mut Problems,
    prefix: &str,
    map: &Map<String, Value>,
    allowed: &[&str],
) {
    unknown_keys_listing(problems, prefix, map, allowed, allowed);
}

/// [`unknown_keys`], listing only `listed` when there is no close match (the top level accepts
/// Lumo Framework keys that would only clutter the list).
pub(crate) fn unknown_keys_listing(
    problems: &mut Problems,
    prefix: &str,
    map: &Map<String, Value>,
    allowed: &[&str],
    listed: &[&str],
) {
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let hint = suggest::hint_suffix(key, allowed.iter().copied());
        let message = if hint.is_empty() {
            format!("unknown key; expected one of {}", alternatives(listed))
        } else {
            format!("unknown key{hint}")
        };
        problems.add(child(prefix, key), message);
    }
}

pub(crate) fn object<'v>(
    problems: &mut Problems,
    key: &str,
    value: &'v Value,
    shape: &str,
) -> Option<&'v Map<String, Value>> {
    match value {
        Value::Object(map) if unserializable(map).is_none() => Some(map),
        other => {
            problems.add(key, format!("must be {shape}, got {}", got(other)));
            None
        }
    }
}

pub(crate) fn string(problems: &mut Problems, key: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            problems.add(key, format!("must be a string, got {}", got(other)));
            None
        }
    }
}

/// A string with something in it besides whitespace.
pub(crate) fn non_empty_string(
    problems: &mut Problems,
    key: &str,
    value: &Value,
) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::String(_) => {
            problems.add(key, "must not be empty");
            None
        }
        other => {
            problems.add(
                key,
                format!("must be a non-empty string, got {}", got(other)),
            );
            None
        }
    }
}

pub(crate) fn boolean(problems: &mut Problems, key: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            problems.add(
                key,
                format!("must be `true` or `false`, got {}", got(other)),
            );
            None
        }
    }
}

/// A whole number in `range`; `what` reads "a whole number of seconds".
pub(crate) fn integer(
    problems: &mut Problems,
    key: &str,
    value: &Value,
    range: RangeInclusive<u32>,
    what: &str,
) -> Option<u32> {
    let whole = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match whole.and_then(|w| u32::try_from(w).ok()) {
        Some(w) if range.contains(&w) => Some(w),
        _ => {
            problems.add(
                key,
                format!(
                    "must be {what} from {} to {}, got {}",
                    range.start(),
                    range.end(),
                    got(value)
                ),
            );
            None
        }
    }
}

/// One of a fixed set of strings (an enum), with a did-you-mean for near misses.
pub(crate) fn one_of<'a>(
    problems: &mut Problems,
    key: &str,
    value: &Value,
    allowed: &[&'a str],
) -> Option<&'a str> {
    if let Value::String(s) = value
        && let Some(found) = allowed.iter().find(|a| **a == s.as_str())
    {
        return Some(found);
    }
    let hint = match value {
        Value::String(s) => suggest::hint_suffix(s, allowed.iter().copied()),
        _ => String::new(),
    };
    problems.add(
        key,
        format!(
            "must be {}, got {}{hint}",
            alternatives(allowed),
            got(value)
        ),
    );
    None
}

/// A list of strings, each with its key (`runOn[1]`). With `single`, a lone string counts as a
/// one-item list. `None` (and a recorded problem) when the value is not a list; bad items are
/// recorded and skipped.
pub(crate) fn string_list(
    problems: &mut Problems,
    key: &str,
    value: &Value,
    single: bool,
) -> Option<Vec<(String, String)>> {
    match value {
        Value::String(s) if single => Some(vec![(key.to_string(), s.clone())]),
        Value::Array(items) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item_key = format!("{key}[{i}]");
                    let s = non_empty_string(problems, &item_key, item)?;
                    Some((item_key, s))
                })
                .collect(),
        ),
        other => {
            let shape = if single {
                "a string or an array of strings"
            } else {
                "an array of strings"
            };
            problems.add(key, format!("must be {shape}, got {}", got(other)));
            None
        }
    }
}

/// Environment names end up in resource names (`<project>-<env>-lumo-runner`) and keys.
pub(crate) fn is_environment_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(crate) const ENVIRONMENT_NAME_RULE: &str =
    "must be 1 to 40 characters of a-z, 0-9 and `-`, starting with a letter or digit";

/// A name usable as a shell environment variable.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn got_shows_scalars_and_names_containers() {
        assert_eq!(got(&json!(1200)), "1200");
        assert_eq!(got(&json!(1.5)), "1.5");
        assert_eq!(got(&json!("abc")), "\"abc\"");
        assert_eq!(got(&json!([])), "an empty array");
        assert_eq!(got(&json!({})), "an object");
        assert_eq!(
            got(&json!({ UNSERIALIZABLE_MARK: "function" })),
            "a function"
        );
        assert!(got(&json!("x".repeat(100))).ends_with("…\""));
    }

    #[test]
    fn integers_accept_whole_floats_only() {
        let mut problems = Problems::default();
        assert_eq!(
            integer(&mut problems, "t", &json!(120.0), 1..=900, "n"),
            Some(120)
        );
        assert_eq!(integer(&mut problems, "t", &json!(1.5), 1..=900, "n"), None);
        assert_eq!(integer(&mut problems, "t", &json!(-1), 1..=900, "n"), None);
        assert_eq!(integer(&mut problems, "t", &json!("5"), 1..=900, "n"), None);
        assert_eq!(problems.into_vec().len(), 3);
    }

    #[test]
    fn alternatives_read_as_a_sentence() {
        assert_eq!(alternatives(&["a"]), "`a`");
        assert_eq!(alternatives(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn names() {
        assert!(is_environment_name("prod"));
        assert!(is_environment_name("eu-1"));
        assert!(!is_environment_name("-prod"));
        assert!(!is_environment_name("Prod"));
        assert!(!is_environment_name(&"a".repeat(41)));
        assert!(is_variable_name("_X1"));
        assert!(!is_variable_name("1X"));
        assert!(!is_variable_name("A-B"));
    }
}
