//! S3: content-addressed bundles (`<project>/bundles/<sha256>.zip`, uploaded only when absent)
//! and run artifacts (`<project>/logs/<run-id>.log`, `.data.json`), plus the presigned URLs
//! that let the runner fetch and upload without any S3 permission of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use lumo_runner::BundleHash;

use super::AwsTarget;
use super::errors::{code_of, sdk_error};
use crate::backend::{BackendError, BackendResult, BundleStore, Orphans};
use crate::bundle::BuiltBundle;

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    target: Arc<AwsTarget>,
}

impl S3Store {
    pub fn new(client: Client, target: Arc<AwsTarget>) -> Self {
        S3Store { client, target }
    }

    pub fn bundle_key(&self, sha256: &BundleHash) -> String {
        format!("{}/bundles/{sha256}.zip", self.target.project)
    }

    pub fn log_key(&self, run_id: &str) -> String {
        format!("{}/logs/{run_id}.log", self.target.project)
    }

    pub fn data_key(&self, run_id: &str) -> String {
        format!("{}/logs/{run_id}.data.json", self.target.project)
    }

    /// The object whose existence tells a run's runner to stop the task (beside its log, so the
    /// logs' permissions and expiry cover it).
    pub fn cancel_key(&self, run_id: &str) -> String {
        format!("{}/logs/{run_id}.cancel", self.target.project)
    }

    /// `s3://bucket/key`, the form records keep as pointers.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.target.bucket)
    }

    /// The key of an `s3://bucket/key` pointer in this bucket.
    pub fn key_of<'a>(&self, pointer: &'a str) -> Option<&'a str> {
        pointer
            .strip_prefix("s3://")?
            .strip_prefix(self.target.bucket.as_str())?
            .strip_prefix('/')
    }

    pub async fn presign_get(&self, key: &str, expires: Duration) -> BackendResult<String> {
        let config = presigning(expires)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.target.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error(&format!("presigning a GET of `{key}`"), e))?;
        Ok(request.uri().to_string())
    }

    pub async fn presign_put(&self, key: &str, expires: Duration) -> BackendResult<String> {
        let config = presigning(expires)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.target.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error(&format!("presigning a PUT of `{key}`"), e))?;
        Ok(request.uri().to_string())
    }

    /// Whether the bundle object `key` is there, as far as lumo may tell.
    ///
    /// Only for content-addressed bundle keys: a 403 counts as absent. S3 answers a HeadObject
    /// of a missing key with 403 instead of 404 when the caller may not `s3:ListBucket` the
    /// bucket unconditionally (a deployer policy scoped to a prefix, say), so a 403 here
    /// usually means "not there". Uploading again is harmless since the key names its content;
    /// if the caller may not write either, the PutObject says so with its own `AccessDenied`.
    pub async fn bundle_exists(&self, key: &str) -> BackendResult<bool> {
        match self
            .client
            .head_object()
            .bucket(&self.target.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if head_says_absent(&e) => Ok(false),
            Err(e) => Err(sdk_error(&format!("checking `{}`", self.url(key)), e)),
        }
    }

    /// The object's bytes, or `None` when there is no such object.
    pub async fn get(&self, key: &str) -> BackendResult<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.target.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code_of(&e) == Some("NoSuchKey") => return Ok(None),
            Err(e) => return Err(sdk_error(&format!("reading `{}`", self.url(key)), e)),
        };
        let bytes =
            out.body.collect().await.map_err(|e| {
                BackendError::with_source(format!("reading `{}`", self.url(key)), e)
            })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> BackendResult<()> {
        self.client
            .put_object()
            .bucket(&self.target.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("writing `{}`", self.url(key)), e))?;
        Ok(())
    }
}

/// A HeadObject error that means "no such object" for a content-addressed key: 404, or 403
/// (see [`S3Store::bundle_exists`]).
fn head_says_absent(error: &SdkError<HeadObjectError, HttpResponse>) -> bool {
    if error.as_service_error().is_some_and(|e| e.is_not_found()) {
        return true;
    }
    matches!(
        error.raw_response().map(|r| r.status().as_u16()),
        Some(403 | 404)
    )
}

fn presigning(expires: Duration) -> BackendResult<PresigningConfig> {
    PresigningConfig::expires_in(expires)
        .map_err(|e| BackendError::with_source("cannot presign an S3 URL", e))
}

#[async_trait]
impl BundleStore for S3Store {
    async fn put(&self, bundle: &BuiltBundle) -> BackendResult<bool> {
        let key = self.bundle_key(&bundle.sha256);
        // Content-addressed: a key that exists holds exactly these bytes.
        if self.bundle_exists(&key).await? {
            return Ok(false);
        }
        let body = ByteStream::from_path(&bundle.path).await.map_err(|e| {
            BackendError::with_source(format!("cannot read bundle `{}`", bundle.path.display()), e)
        })?;
        self.client
            .put_object()
            .bucket(&self.target.bucket)
            .key(&key)
            .content_type("application/zip")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    &format!(
                        "uploading the bundle of `{}` to `{}`",
                        bundle.task,
                        self.url(&key)
                    ),
                    e,
                )
            })?;
        Ok(true)
    }
}

/// A Lambda invocation cannot be called back, so an orphaned run is stopped the way a Ctrl-C
/// stops one: its runner polls for the run's cancel object.
#[async_trait]
impl Orphans for S3Store {
    async fn stop(&self, _env: &str, run_ids: &[String], reason: &str) -> BackendResult<()> {
        for run_id in run_ids {
            self.put_bytes(
                &self.cancel_key(run_id),
                reason.as_bytes().to_vec(),
                "text/plain",
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn head_error(status: u16) -> SdkError<HeadObjectError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        let error = if status == 404 {
            HeadObjectError::NotFound(aws_sdk_s3::types::error::NotFound::builder().build())
        } else {
            HeadObjectError::generic(ErrorMetadata::builder().build())
        };
        SdkError::service_error(error, raw)
    }

    /// Regression: a deployer without unconditional `s3:ListBucket` gets 403 for a missing
    /// bundle, which stopped the deploy instead of uploading the bundle.
    #[test]
    fn a_forbidden_head_of_a_bundle_means_absent() {
        assert!(head_says_absent(&head_error(404)));
        assert!(head_says_absent(&head_error(403)));
        assert!(!head_says_absent(&head_error(500)));
        assert!(!head_says_absent(&head_error(400)));
    }
}
