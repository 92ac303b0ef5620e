//! Turning AWS SDK errors into [`BackendError`]s a user can act on: unreachable, denied,
//! missing — with the service's own message kept as the cause, and the
//! [`BackendErrorKind`] callers and tests tell them apart by.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;

use crate::backend::{BackendError, BackendErrorKind};

/// The error and its sources on one line, `: `-separated, a source whose text its error already
/// shows left out. Not `DisplayErrorContext`: it appends the whole error's `{:?}`, a dump of
/// the SDK's internals no user can act on.
pub fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = e.source();
    }
    line
}

/// A message the SDK error's `Display` chain renders, as the cause of our error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SdkCause(String);

/// Wraps an SDK error: `what` says what lumo was doing ("reading bundle `x` from S3").
pub fn sdk_error<E, R>(what: &str, err: SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let detail = SdkCause(one_line(&err));
    let code = err.code().unwrap_or_default().to_string();
    let (kind, message, hint) = match &err {
        // The request never left: the credential chain found nothing usable (no profile
        // credentials, an expired SSO session). Not the network, so not "cannot reach AWS".
        SdkError::DispatchFailure(_) if is_credentials_error(&err) => (
            BackendErrorKind::Denied,
            format!("no usable AWS credentials while {what}"),
            Some(credentials_hint()),
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
            (
                BackendErrorKind::Unreachable,
                format!("cannot reach AWS while {what}"),
                Some(match endpoint {
                    Some(e) => format!("is the endpoint `{e}` (AWS_ENDPOINT_URL) up?"),
                    None => "check the network, the region and your credentials (`aws sts get-caller-identity`)".to_string(),
                }),
            )
        }
        SdkError::ConstructionFailure(_) => (
            BackendErrorKind::Other,
            format!("cannot build the AWS request while {what}"),
            Some("check your AWS credentials and region (`--profile`, `--region`, `AWS_PROFILE`)".to_string()),
        ),
        _ if is_denied(&code) => (
            BackendErrorKind::Denied,
            format!("AWS denied {what}: {code}"),
            Some("check the caller's IAM permissions: `infra/` has a DeployerPolicy with what lumo needs".to_string()),
        ),
        _ if !code.is_empty() => (
            kind_of_code(&code),
            format!("AWS error while {what}: {code}"),
            None,
        ),
        _ => (BackendErrorKind::Other, format!("AWS error while {what}"), None),
    };
    let mut e = BackendError::with_source(message, detail).of_kind(kind);
    e.hint = hint;
    e
}

/// Whether a credentials provider's error is in the chain of `err`.
fn is_credentials_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<CredentialsError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Where to look: the same chain lumo used, checked with the AWS CLI.
fn credentials_hint() -> String {
    "check `aws sts get-caller-identity` with the same `--profile`/`AWS_PROFILE` (`aws sso \
     login` if the profile uses SSO); lumo uses the standard chain: `AWS_ACCESS_KEY_ID` and \
     `AWS_SECRET_ACCESS_KEY`, the profile in `~/.aws/credentials` and `~/.aws/config`, then web \
     identity, ECS and EC2 roles"
        .to_string()
}

/// The kind of a service error by its code (denials are told apart before, for their message).
fn kind_of_code(code: &str) -> BackendErrorKind {
    match code {
        _ if is_denied(code) => BackendErrorKind::Denied,
        "ResourceNotFoundException"
        | "ResourceNotFound"
        | "NoSuchBucket"
        | "NoSuchKey"
        | "NotFound"
        | "TableNotFoundException" => BackendErrorKind::NotFound,
        // S3's answer to a HEAD it refuses carries no body, so no `AccessDenied` code.
        "Forbidden" => BackendErrorKind::Denied,
        "ConditionalCheckFailedException"
        | "TransactionConflictException"
        | "TransactionCanceledException"
        | "ResourceConflictException"
        | "ResourceInUseException"
        | "ConcurrentModificationException"
        | "PreconditionFailed"
        | "OperationAborted" => BackendErrorKind::Conflict,
        "RequestTimeout"
        | "RequestTimeoutException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException" => BackendErrorKind::Unreachable,
        _ => BackendErrorKind::Other,
    }
}

fn is_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "UnauthorizedOperation"
    )
}

/// The error code of an SDK service error, if it is one.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_have_the_kind_callers_tell_them_apart_by() {
        for (code, kind) in [
            ("AccessDenied", BackendErrorKind::Denied),
            ("AccessDeniedException", BackendErrorKind::Denied),
            ("ExpiredToken", BackendErrorKind::Denied),
            ("ResourceNotFoundException", BackendErrorKind::NotFound),
            ("NoSuchBucket", BackendErrorKind::NotFound),
            ("NoSuchKey", BackendErrorKind::NotFound),
            (
                "ConditionalCheckFailedException",
                BackendErrorKind::Conflict,
            ),
            ("TransactionConflictException", BackendErrorKind::Conflict),
            ("ResourceConflictException", BackendErrorKind::Conflict),
            ("ThrottlingException", BackendErrorKind::Other),
        ] {
            assert_eq!(kind_of_code(code), kind, "{code}");
        }
    }
}
