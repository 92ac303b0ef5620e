//! What a run leaves besides its outcome — the full output and `data` too large for the
//! response — and where it goes: uploaded to the presigned PUT URLs of the request, or returned
//! inline when it fits; a failed upload is reported, never fatal.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::error_chain;
use super::time_left;
use super::transfer::{self, TransferError};
use crate::invoke::InvokeRequest;

/// `data` that serialises to more than this goes to `data_upload` when the request gives one.
pub const DATA_INLINE_MAX_BYTES: usize = 256 * 1024;

/// `data` larger than this is never returned in the response: Lambda refuses responses over
/// 6 MB, and a refused response would lose the whole outcome, not just the data.
pub const DATA_RESPONSE_MAX_BYTES: usize = 5 * 1024 * 1024;

const LOG_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const DATA_CONTENT_TYPE: &str = "application/json";

/// What became of the run's output and data.
#[derive(Debug, Default)]
pub(super) struct Artifacts {
    pub data: Option<Value>,
    pub data_uploaded: bool,
    pub log_uploaded: bool,
    /// Why something could not be uploaded or returned, one reason each.
    pub errors: Vec<String>,
}

/// Uploads the log (when there is one and a target) and oversized data (when there is a
/// target), side by side. A failed upload never fails the run: it is reported in the response.
pub(super) async fn upload_artifacts(
    request: &InvokeRequest,
    log: Option<&Path>,
    data: Option<Value>,
    deadline: SystemTime,
) -> Artifacts {
    // Keep a second for the response itself.
    let timeout = time_left(deadline, Duration::from_secs(1));
    let log_upload = async {
        let (Some(target), Some(path)) = (&request.log_upload, log) else {
            return Ok(false);
        };
        let (url, path) = (target.url.clone(), path.to_owned());
        spawn_transfer(move || transfer::upload_file(&url, &path, LOG_CONTENT_TYPE, timeout))
            .await
            .map(|()| true)
            .map_err(|e| {
                format!(
                    "could not upload the output to `{}`: {}",
                    target.key,
                    error_chain(&e)
                )
            })
    };
    let data_upload = place_data(request, data, timeout);
    let (log_result, (data, data_uploaded, data_error)) = tokio::join!(log_upload, data_upload);
    let mut artifacts = Artifacts {
        data,
        data_uploaded,
        ..Artifacts::default()
    };
    match log_result {
        Ok(uploaded) => artifacts.log_uploaded = uploaded,
        Err(reason) => artifacts.errors.push(reason),
    }
    artifacts.errors.extend(data_error);
    artifacts
}

/// Decides where `data` goes: inline when small, to `data_upload` when large and possible,
/// inline anyway when the upload fails and it fits the response, else nowhere (with a reason).
async fn place_data(
    request: &InvokeRequest,
    data: Option<Value>,
    timeout: Duration,
) -> (Option<Value>, bool, Option<String>) {
    let Some(value) = data else {
        return (None, false, None);
    };
    let bytes = match serde_json::to_vec(&value) {
        Ok(bytes) => bytes,
        Err(e) => {
            return (
                None,
                false,
                Some(format!("could not serialise `data`: {e}")),
            );
        }
    };
    let size = bytes.len();
    if size <= DATA_INLINE_MAX_BYTES {
        return (Some(value), false, None);
    }
    let mut reason = None;
    if let Some(target) = &request.data_upload {
        let url = target.url.clone();
        match spawn_transfer(move || {
            transfer::upload_bytes(&url, &bytes, DATA_CONTENT_TYPE, timeout)
        })
        .await
        {
            Ok(()) => return (None, true, None),
            Err(e) => {
                reason = Some(format!(
                    "could not upload `data` to `{}`: {}",
                    target.key,
                    error_chain(&e)
                ));
            }
        }
    }
    if size > DATA_RESPONSE_MAX_BYTES {
        let left_out = format!(
            "`data` ({size} bytes) is too large to return from the runner function (at most {} MiB) and was left out",
            DATA_RESPONSE_MAX_BYTES / (1024 * 1024)
        );
        let reason = match reason {
            Some(upload) => format!("{upload}; {left_out}"),
            None => left_out,
        };
        return (None, false, Some(reason));
    }
    (Some(value), false, reason)
}

async fn spawn_transfer<F>(transfer: F) -> Result<(), TransferError>
where
    F: FnOnce() -> Result<(), TransferError> + Send + 'static,
{
    tokio::task::spawn_blocking(transfer)
        .await
        .unwrap_or_else(|e| {
            Err(TransferError::Http {
                reason: format!("the upload stopped unexpectedly: {e}"),
            })
        })
}
