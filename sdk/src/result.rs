//! Building a [`TaskResult`]. The type is the contract's own (it lives in `lumo-runner`, so that
//! the runner and the SDK cannot disagree on its JSON), which is why its constructors come from
//! an extension trait rather than inherent methods.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::TaskResult;

/// Constructors and helpers for [`TaskResult`].
///
/// ```
/// use lumo_task::{TaskResult, TaskResultExt, json};
///
/// let done = TaskResult::ok("seeded 12 rows").with_data(json!({ "rows": 12 }));
/// assert!(done.success);
/// assert_eq!(done.data, Some(json!({ "rows": 12 })));
///
/// let failed = TaskResult::fail("the database is read-only");
/// assert!(!failed.success);
/// ```
pub trait TaskResultExt: Sized {
    /// A successful result: the run is `succeeded` and `message` is what lumo shows and records.
    fn ok(message: impl Into<String>) -> Self;

    /// A failed result: the run is `failed` (the process exits 1) and a deploy stops there.
    fn fail(message: impl Into<String>) -> Self;

    /// Attaches `data`, recorded with the run and shown by `lumo history --json`.
    ///
    /// `data` is anything `Serialize` (a `serde_json::Value`, `json!({..})`, your own struct)
    /// that serializes to a JSON **object**, as the contract requires. `null` (e.g. `None`)
    /// removes the data. Anything else (a number, a string, an array), or a value that cannot
    /// be serialized, turns the result into a failure whose message says so: the mistake
    /// shows on the first run instead of being dropped silently.
    fn with_data(self, data: impl Serialize) -> Self;
}

impl TaskResultExt for TaskResult {
    fn ok(message: impl Into<String>) -> Self {
        TaskResult {
            success: true,
            message: message.into(),
            data: None,
        }
    }

    fn fail(message: impl Into<String>) -> Self {
        TaskResult {
            success: false,
            message: message.into(),
            data: None,
        }
    }

    fn with_data(self, data: impl Serialize) -> Self {
        match serde_json::to_value(data) {
            Ok(Value::Null) => TaskResult { data: None, ..self },
            Ok(value) => checked(TaskResult {
                data: Some(value),
                ..self
            }),
            Err(e) => invalid(
                &self,
                format!("its `data` cannot be serialized to JSON: {e}"),
            ),
        }
    }
}

/// What a handler may return: a [`TaskResult`], or a `Result<TaskResult, E>` so that `?` works
/// in the handler. An `Err(e)` is a failed result whose message is `e` (formatted with `{:#}`,
/// which shows the whole chain of an `anyhow::Error`).
///
/// ```
/// use lumo_task::{IntoTaskResult, TaskResult, TaskResultExt};
///
/// let r: Result<TaskResult, std::io::Error> = Err(std::io::Error::other("disk full"));
/// assert_eq!(r.into_task_result().message, "disk full");
/// ```
pub trait IntoTaskResult {
    fn into_task_result(self) -> TaskResult;
}

impl IntoTaskResult for TaskResult {
    fn into_task_result(self) -> TaskResult {
        self
    }
}

impl<E: fmt::Display> IntoTaskResult for Result<TaskResult, E> {
    fn into_task_result(self) -> TaskResult {
        match self {
            Ok(result) => result,
            Err(e) => TaskResult::fail(format!("{e:#}")),
        }
    }
}

/// `result`, or a failure saying why it breaks the contract: `data` must be absent or an
/// object (the runner rejects anything else, with a less specific message).
pub(crate) fn checked(result: TaskResult) -> TaskResult {
    let kind = match &result.data {
        None | Some(Value::Object(_)) => return result,
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
    };
    invalid(
        &result,
        format!("its `data` must be a JSON object, not {kind}"),
    )
}

fn invalid(result: &TaskResult, reason: String) -> TaskResult {
    let message = if result.message.is_empty() {
        format!("the task's result is invalid: {reason}")
    } else {
        format!(
            "the task's result is invalid: {reason} (its message was: {})",
            result.message
        )
    };
    TaskResult::fail(message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ok_and_fail_set_success_and_message() {
        let ok = TaskResult::ok("done");
        assert_eq!(
            (ok.success, ok.message.as_str(), ok.data),
            (true, "done", None)
        );
        let fail = TaskResult::fail(String::from("no"));
        assert_eq!((fail.success, fail.message.as_str()), (false, "no"));
    }

    #[test]
    fn data_from_a_value_or_a_struct() {
        let r = TaskResult::ok("x").with_data(json!({"n": 1}));
        assert_eq!(r.data, Some(json!({"n": 1})));

        #[derive(Serialize)]
        struct Seeded {
            environment: &'static str,
            files: usize,
        }
        let r = TaskResult::fail("x").with_data(Seeded {
            environment: "dev",
            files: 2,
        });
        assert!(!r.success, "with_data keeps a failure a failure");
        assert_eq!(r.data, Some(json!({"environment": "dev", "files": 2})));

        let r = TaskResult::ok("x")
            .with_data(json!({"a": 1}))
            .with_data(None::<Value>);
        assert_eq!(r.data, None, "null removes the data");
        assert!(r.success);
    }

    #[test]
    fn data_that_is_not_an_object_fails_the_result_saying_so() {
        let r = TaskResult::ok("seeded").with_data(vec![1, 2]);
        assert!(!r.success);
        assert_eq!(r.data, None);
        assert_eq!(
            r.message,
            "the task's result is invalid: its `data` must be a JSON object, not an array \
             (its message was: seeded)"
        );

        let hand_built = TaskResult {
            success: true,
            message: String::new(),
            data: Some(json!(3)),
        };
        let r = checked(hand_built);
        assert!(!r.success);
        assert!(r.message.ends_with("not a number"), "{}", r.message);
    }

    #[test]
    fn data_that_cannot_be_serialized_fails_the_result() {
        use std::collections::BTreeMap;
        // JSON object keys must be strings.
        let map: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        let r = TaskResult::ok("x").with_data(map);
        assert!(!r.success);
        assert!(r.message.contains("cannot be serialized"), "{}", r.message);
    }

    #[test]
    fn an_err_is_a_failure_with_its_message() {
        let ok: Result<TaskResult, String> = Ok(TaskResult::ok("fine"));
        assert!(ok.into_task_result().success);
        let err: Result<TaskResult, String> = Err("cannot read migrations".into());
        let r = err.into_task_result();
        assert!(!r.success);
        assert_eq!(r.message, "cannot read migrations");
    }
}
