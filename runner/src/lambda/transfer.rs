//! The runner function's HTTP transfers: the bundle download and the artifact uploads, all over
//! presigned S3 URLs the CLI puts in the payload, so the function needs no S3 permission.
//!
//! Blocking `ureq` calls, made on tokio's blocking pool by the caller: an invocation moves at
//! most a few files, one after another, and a blocking client keeps the binary and its start-up
//! small. The agent (and with it rustls' configuration and root store) is built on first use, not
//! at start-up, and then reused by every warm invocation.
//!
//! A presigned URL's query string holds its signature, a credential for as long as the URL is
//! valid: it never appears in an error or a log. Messages name the S3 key and, at most, the
//! URL without its query ([`redact`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::bundle::to_hex;

/// How long connecting to S3 may take before a transfer gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const READ_CHUNK: usize = 64 * 1024;

/// Why a transfer failed. Never holds a presigned URL's query string.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the server answered HTTP {status}{}", status_hint(*status))]
    Status { status: u16 },
    #[error("{reason}")]
    Http { reason: String },
    #[error("could not write `{}`", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not read `{}`", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        403 => {
            " (access denied: the presigned URL may have expired, or was signed for other headers)"
        }
        404 => " (no such object)",
        _ => "",
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(concat!("lumo-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    })
}

/// Downloads `url` into the new file `dest` (it must not exist) within `timeout`, and returns
/// the sha256 of what was written as lowercase hex. On error `dest` may be left half-written;
/// the caller removes it.
pub fn download(url: &str, dest: &Path, timeout: Duration) -> Result<String, TransferError> {
    let response = agent()
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(|e| from_ureq(e, url))?;
    let mut body = response.into_body().into_reader();
    let write_err = |source| TransferError::WriteFile {
        path: dest.to_owned(),
        source,
    };
    let mut file = File::create_new(dest).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(TransferError::Http {
                    reason: scrub(&format!("reading the response failed: {e}"), url),
                });
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(write_err)?;
    }
    file.flush().map_err(write_err)?;
    Ok(to_hex(&hasher.finalize()))
}

/// Whether the object behind the presigned GET `url` exists (HTTP 200), within `timeout`. The
/// body is not read. 404 and 403 are `false`: S3 answers 403 for a missing key when the signer
/// may not list the bucket, as lumo's deployer policy (a prefix-scoped `s3:ListBucket`) may not.
pub fn exists(url: &str, timeout: Duration) -> Result<bool, TransferError> {
    let answer = agent()
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call();
    match answer {
        Ok(_) => Ok(true),
        Err(ureq::Error::StatusCode(403 | 404)) => Ok(false),
        Err(e) => Err(from_ureq(e, url)),
    }
}

/// Uploads the file at `path` to `url` with a PUT of `content_type` within `timeout`. The body
/// goes with a `Content-Length` (S3 refuses chunked uploads to presigned URLs).
pub fn upload_file(
    url: &str,
    path: &Path,
    content_type: &str,
    timeout: Duration,
) -> Result<(), TransferError> {
    let file = File::open(path).map_err(|source| TransferError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    put(url, content_type, timeout, &file)
}

/// Uploads `body` to `url` with a PUT of `content_type` within `timeout`.
pub fn upload_bytes(
    url: &str,
    body: &[u8],
    content_type: &str,
    timeout: Duration,
) -> Result<(), TransferError> {
    put(url, content_type, timeout, body)
}

/// One PUT of `body` (a presigned URL signs only `host`, so any content type goes).
fn put(
    url: &str,
    content_type: &str,
    timeout: Duration,
    body: impl ureq::AsSendBody,
) -> Result<(), TransferError> {
    agent()
        .put(url)
        .header("Content-Type", content_type)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .send(body)
        .map_err(|e| from_ureq(e, url))?;
    Ok(())
}

fn from_ureq(error: ureq::Error, url: &str) -> TransferError {
    match error {
        ureq::Error::StatusCode(status) => TransferError::Status { status },
        other => TransferError::Http {
            reason: scrub(&other.to_string(), url),
        },
    }
}

/// `message` with the query string of `url` cut out wherever it appears (ureq's `BadUri` error,
/// for one, quotes the whole URL).
fn scrub(message: &str, url: &str) -> String {
    match url.split_once('?') {
        Some((_, query)) if !query.is_empty() => message.replace(query, "…"),
        _ => message.to_owned(),
    }
}

/// `url` without its query string, fragment and user info: safe to show.
pub fn redact(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_query_fragment_and_user_info() {
        assert_eq!(
            redact("https://b.s3.amazonaws.com/p/bundles/ab.zip?X-Amz-Signature=s3cr3t"),
            "https://b.s3.amazonaws.com/p/bundles/ab.zip"
        );
        assert_eq!(
            redact("http://user:pw@127.0.0.1:9000/k#frag"),
            "http://127.0.0.1:9000/k"
        );
        assert_eq!(redact("not a url?sig=1"), "not a url");
    }

    #[test]
    fn scrub_removes_the_query_wherever_it_is_quoted() {
        let url = "http://h/k?X-Amz-Signature=s3cr3t";
        let got = scrub(&format!("bad uri: {url}"), url);
        assert!(!got.contains("s3cr3t"), "{got}");
        assert!(got.contains("http://h/k"), "{got}");
    }
}
