//! The wire between the CLI's `aws` provider and the runner function (PRODUCT.md §9): one
//! [`InvokeRequest`] payload in, one [`InvokeResponse`] out, per task run.
//!
//! Both are built around the shared [`TaskSpec`] and [`RunOutcome`] (flattened, so the JSON is
//! the flat object it has always been) plus what only this wire needs: presigned URLs, what was
//! uploaded, the runner's version.
//!
//! The CLI and the runner function are updated at different times (`lumo run` uses the
//! function as deployed), so both directions carry a schema version `v`:
//! - a field the other side may ignore is added without a new version (unknown fields are
//!   ignored, and new fields have defaults);
//! - a change an older peer would misread gets the next version; a runner refuses a payload
//!   of a version it does not know before it runs anything, and the CLI says to deploy again;
//! - a payload or response without `v` is version 1: it comes from a lumo before the field.
//!
//! A payload carries the lowest version that says what it asks for, so a task run reaches a
//! runner deployed by an older lumo as before:
//! - version 1: a task run (its bundle's entry);
//! - version 2: a command of the user's (`lumo exec`: [`TaskSpec::argv`], maybe no bundle). A
//!   version-1 runner would run the bundle's entry instead of the command, so it must refuse
//!   the payload: it does, by its version; a runner from before `v` does because the payload
//!   has no `task`, which it requires.
//!
//! Responses have not changed shape: they are version 1 ([`RESPONSE_VERSION`]).

pub mod stream;

use serde::{Deserialize, Serialize};

use crate::ids::BundleHash;
use crate::task_run::{RunOutcome, TaskSpec};

/// The newest payload version this lumo writes and reads.
pub const INVOKE_VERSION: u32 = 2;

/// The payload version of a task run, which every runner with `v` reads.
pub const TASK_RUN_VERSION: u32 = 1;

/// The payload version of a command run (`lumo exec`).
pub const COMMAND_RUN_VERSION: u32 = 2;

/// The version of the responses this lumo writes and reads.
pub const RESPONSE_VERSION: u32 = 1;

/// What a payload or response without `v` is: written by a lumo before the field.
fn unversioned() -> u32 {
    1
}

/// Where the runner function fetches a task's bundle: a presigned S3 GET URL made by the CLI,
/// so the function itself needs no S3 permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleLocation {
    /// The S3 key, `<project>/bundles/<sha256>.zip` (for messages and the cache).
    pub key: String,
    /// The zip's sha256; the runner refuses a download that does not match.
    pub sha256: BundleHash,
    /// Presigned GET URL.
    pub url: String,
}

/// A presigned S3 PUT URL the runner uploads an artifact to (full output, large data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadTarget {
    pub key: String,
    pub url: String,
}

/// The payload of one synchronous Invoke of `<project>-<env>-lumo-runner`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeRequest {
    /// The payload's schema version ([`INVOKE_VERSION`]).
    #[serde(default = "unversioned")]
    pub v: u32,
    /// The task's name, as in `spec.context.task`: runners before `v` require it. Left out
    /// of a command run's payload, so that such a runner refuses it instead of running the
    /// bundle's entry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// The bundle to run; `None` only for a command run in an empty directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleLocation>,
    /// The run. Its timeout is enforced by the runner itself, lowered to fit in what is left
    /// of the function's own timeout, so a timeout is a recorded `timed_out`, not a killed
    /// function.
    #[serde(flatten)]
    pub spec: TaskSpec,
    /// Where to upload the full (masked) output.
    pub log_upload: Option<UploadTarget>,
    /// Where to upload `data` when it is too large to return in the response.
    pub data_upload: Option<UploadTarget>,
    /// A presigned GET of the object the CLI writes when the run must stop before it ends
    /// (Ctrl-C, a lost environment lock). The runner looks for it while the task runs and,
    /// once it exists, stops the task as on a timeout (SIGTERM, grace, SIGKILL).
    #[serde(default)]
    pub cancel_url: Option<String>,
}

impl InvokeRequest {
    /// A payload for `spec` from `bundle`, of the version what it asks for needs (see the
    /// module's doc), with nowhere to upload to and no cancel object.
    pub fn new(spec: TaskSpec, bundle: Option<BundleLocation>) -> InvokeRequest {
        let command_run = spec.argv.is_some();
        InvokeRequest {
            v: if command_run {
                COMMAND_RUN_VERSION
            } else {
                TASK_RUN_VERSION
            },
            task: if command_run {
                String::new()
            } else {
                spec.task().to_owned()
            },
            bundle,
            spec,
            log_upload: None,
            data_upload: None,
            cancel_url: None,
        }
    }
}

/// What the runner function returns for one task run: its outcome, and what became of the
/// artifacts it was asked to upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResponse {
    /// The response's schema version ([`RESPONSE_VERSION`]).
    #[serde(default = "unversioned")]
    pub v: u32,
    /// `data` is `None` when absent, or when too large and uploaded to `data_upload`
    /// (`data_uploaded`).
    #[serde(flatten)]
    pub outcome: RunOutcome,
    #[serde(default)]
    pub data_uploaded: bool,
    /// The full output went to `log_upload`.
    #[serde(default)]
    pub log_uploaded: bool,
    /// Why the output or data could not be uploaded, when that happened.
    pub upload_error: Option<String>,
    /// The runner's crate version, for diagnosing a stale function.
    pub runner_version: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};

    use serde_json::{Value, json};

    use super::*;
    use crate::contract::{RunStatus, Trigger};

    /// The payload exactly as lumo sent it before `v` (and as `bench/runner.py` still does).
    fn unversioned_payload() -> Value {
        let sha = "ab".repeat(32);
        json!({
            "task": "noop",
            "bundle": {"key": format!("bench/bundles/{sha}.zip"), "sha256": sha,
                       "url": "http://127.0.0.1:1/b.zip?X-Amz-Signature=x"},
            "context": {
                "deployment": {"isFirstDeploy": true, "environment": "dev", "version": "v1"},
                "config": {}, "args": {}, "workingDirectory": "", "task": "noop",
                "runId": "01JBENCH0000000000000000NO", "trigger": "deploy",
            },
            "timeoutMs": 30_000,
            "env": {"GREETING": "hi"},
            "secrets": {"API_TOKEN": "bench-secret-0123"},
            "logUpload": {"key": "bench/logs/run-1.log", "url": "http://127.0.0.1:1/l"},
            "dataUpload": {"key": "bench/logs/run-1.data.json", "url": "http://127.0.0.1:1/d"},
            "cancelUrl": "http://127.0.0.1:1/c",
        })
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// An older CLI sends no `v`: the runner reads its payload as version 1, whole.
    #[test]
    fn a_payload_without_a_version_is_read_as_version_1() {
        let request: InvokeRequest = serde_json::from_value(unversioned_payload()).unwrap();
        assert_eq!(request.v, 1);
        assert_eq!(request.task, "noop");
        assert_eq!(
            request.bundle.as_ref().unwrap().sha256.as_str(),
            "ab".repeat(32)
        );
        assert_eq!(request.spec.task(), "noop");
        assert_eq!(request.spec.run_id(), "01JBENCH0000000000000000NO");
        assert_eq!(request.spec.context.trigger, Trigger::Deploy);
        assert_eq!(request.spec.timeout, Duration::from_secs(30));
        assert_eq!(request.spec.env["GREETING"], "hi");
        assert_eq!(request.spec.secrets["API_TOKEN"], "bench-secret-0123");
        assert_eq!(request.cancel_url.as_deref(), Some("http://127.0.0.1:1/c"));
        assert!(request.log_upload.is_some() && request.data_upload.is_some());
    }

    /// What a runner before `v` requires is still sent, under the same names: only `v` is new.
    #[test]
    fn a_payload_keeps_the_shape_older_runners_read() {
        let old = unversioned_payload();
        let request: InvokeRequest = serde_json::from_value(old.clone()).unwrap();
        let sent = serde_json::to_value(&request).unwrap();
        let mut expected = keys(&old);
        expected.insert("v".into());
        assert_eq!(keys(&sent), expected);
        assert_eq!(sent["v"], 1);
        assert_eq!(sent["timeoutMs"], 30_000);
        assert_eq!(sent["context"], old["context"]);
        assert_eq!(sent["bundle"], old["bundle"]);
        // What this lumo builds for a task run is that same shape, version 1.
        let built = InvokeRequest {
            log_upload: request.log_upload.clone(),
            data_upload: request.data_upload.clone(),
            cancel_url: request.cancel_url.clone(),
            ..InvokeRequest::new(request.spec.clone(), request.bundle.clone())
        };
        assert_eq!(serde_json::to_value(&built).unwrap(), sent);
    }

    /// A command run is version 2 and has no `task`: a runner from before `v` (which requires
    /// `task`) and a version-1 runner (by its version) refuse it rather than run the bundle's
    /// entry in its place.
    #[test]
    fn a_command_run_is_a_payload_older_runners_refuse() {
        let task_run: InvokeRequest = serde_json::from_value(unversioned_payload()).unwrap();
        let mut spec = task_run.spec.clone();
        spec.argv = Some(vec!["./bin/migrate".into(), "status".into()]);
        let with_bundle = InvokeRequest::new(spec.clone(), task_run.bundle.clone());
        let sent = serde_json::to_value(&with_bundle).unwrap();
        assert_eq!(sent["v"], 2);
        assert!(sent.get("task").is_none(), "{sent}");
        assert_eq!(sent["argv"], json!(["./bin/migrate", "status"]));
        assert_eq!(
            sent["context"]["task"], "noop",
            "the task whose bundle it runs in"
        );

        let without = serde_json::to_value(InvokeRequest::new(spec, None)).unwrap();
        assert!(without.get("bundle").is_none(), "{without}");
        let back: InvokeRequest = serde_json::from_value(without).unwrap();
        assert_eq!(back.bundle, None);
        assert_eq!(back.spec.argv.as_deref().map(<[String]>::len), Some(2));

        /// The fields a runner from before `v` requires, as it declared them.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct PreVersionPayload {
            task: String,
            bundle: BundleLocation,
        }
        assert!(serde_json::from_value::<PreVersionPayload>(sent).is_err());
    }

    #[test]
    fn a_response_without_a_version_is_read_and_the_outcome_keeps_its_wire_names() {
        let old = json!({
            "status": "failed", "exitCode": 3, "signal": null, "message": "boom",
            "data": {"n": 1}, "dataUploaded": false, "outputTail": "boom\n", "outputBytes": 5,
            "logUploaded": true, "uploadError": null,
            "startedAtMs": 1_763_913_480_123_i64, "endedAtMs": 1_763_913_481_000_i64,
            "runnerVersion": "0.1.0",
        });
        let response: InvokeResponse = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(response.v, 1);
        assert_eq!(response.outcome.status, RunStatus::Failed);
        assert_eq!(response.outcome.exit_code, Some(3));
        assert_eq!(response.outcome.data, Some(json!({"n": 1})));
        assert_eq!(
            response.outcome.started_at,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_913_480_123)
        );
        assert!(response.log_uploaded);
        let mut expected = keys(&old);
        expected.insert("v".into());
        let sent = serde_json::to_value(&response).unwrap();
        assert_eq!(keys(&sent), expected);
        assert_eq!(sent["endedAtMs"], old["endedAtMs"]);
    }
}
