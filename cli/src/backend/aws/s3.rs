//! S3: content-addressed bundles (`<project>/bundles/<sha256>.zip`, uploaded only when absent)
//! and run artifacts (`<project>/logs/<run-id>.log`, `.data.json`), plus the presigned URLs
//! that let the runner fetch and upload without any S3 permission of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::AwsTarget;
use super::errors::{code_of, sdk_error};
use crate::backend::{BackendError, BackendResult, BundleStore};
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

    pub fn bundle_key(&self, sha256: &str) -> String {
        format!("{}/bundles/{sha256}.zip", self.target.project)
    }

    pub fn log_key(&self, run_id: &str) -> String {
        format!("{}/logs/{run_id}.log", self.target.project)
    }

    pub fn data_key(&self, run_id: &str) -> String {
        format!("{}/logs/{run_id}.data.json", self.target.project)
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

    pub async fn exists(&self, key: &str) -> BackendResult<bool> {
        match self
            .client
            .head_object()
            .bucket(&self.target.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
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

fn presigning(expires: Duration) -> BackendResult<PresigningConfig> {
    PresigningConfig::expires_in(expires)
        .map_err(|e| BackendError::with_source("cannot presign an S3 URL", e))
}

#[async_trait]
impl BundleStore for S3Store {
    async fn put(&self, bundle: &BuiltBundle) -> BackendResult<bool> {
        let key = self.bundle_key(&bundle.sha256);
        // Content-addressed: a key that exists holds exactly these bytes.
        if self.exists(&key).await? {
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
