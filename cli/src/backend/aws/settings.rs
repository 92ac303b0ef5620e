//! Everything the `aws` provider asks of the user, in one place: its `aws: { … }` settings in
//! `lumo.config.js` (their model and their validation, which the config's load calls so a bad
//! value is reported with every other problem of the file), what it needs before it can open
//! at all (`aws.bucket`, `aws.table`), and its command-line flags.
//!
//! This is a leaf: it uses the config's validation vocabulary and nothing of the backend, so
//! the config can reach it without reaching the backend.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::config::checks::{self, Problems, child, got};

/// `aws: {...}` settings; all optional so a `local` project needs none of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsSettings {
    pub bucket: Option<String>,
    pub table: Option<String>,
    pub role_arn: Option<String>,
    pub architecture: Option<Architecture>,
    pub memory_size: Option<u32>,
    /// Path of the runner's Lambda `bootstrap` binary (or a directory holding it).
    pub runner: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Arm64,
    X86_64,
}

/// The `aws` provider's flags. Global, so they are accepted wherever they were before, and
/// listed under their own heading so a reader of `--help` sees what they apply to.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "AWS provider")]
pub struct AwsFlags {
    /// AWS profile (aws provider).
    #[arg(long, global = true, env = "AWS_PROFILE", hide_env_values = true)]
    pub profile: Option<String>,

    /// AWS region (aws provider) [default: the config's `region`, then the AWS chain].
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// The runner's Lambda `bootstrap` binary (aws provider) [default: `aws.runner`, then
    /// `target/lambda/lumo-runner/bootstrap`].
    #[arg(long, global = true, env = "LUMO_RUNNER", value_name = "PATH")]
    pub runner: Option<PathBuf>,
}

const AWS_KEYS: &[&str] = &[
    "bucket",
    "table",
    "roleArn",
    "architecture",
    "memorySize",
    "runner",
];

/// Reads the config's `aws` value, recording each problem under its key path.
pub(crate) fn validate(p: &mut Problems, value: &Value) -> AwsSettings {
    let mut aws = AwsSettings::default();
    let Some(map) = checks::object(
        p,
        "aws",
        value,
        "an object `{ bucket, table, roleArn, architecture, memorySize, runner }`",
    ) else {
        return aws;
    };
    checks::unknown_keys(p, "aws", map, AWS_KEYS);
    aws.bucket = map.get("bucket").and_then(|v| {
        let bucket = checks::string(p, "aws.bucket", v)?;
        is_bucket_name(&bucket).then_some(bucket).or_else(|| {
            p.add(
                "aws.bucket",
                format!(
                    "must be an S3 bucket name: 3 to 63 characters of a-z, 0-9, `.` and `-`, \
                     starting and ending with a letter or digit, got {}",
                    got(v)
                ),
            );
            None
        })
    });
    aws.table = map.get("table").and_then(|v| {
        let table = checks::string(p, "aws.table", v)?;
        let valid = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        valid.then_some(table).or_else(|| {
            p.add(
                "aws.table",
                format!(
                    "must be a DynamoDB table name: 3 to 255 characters of letters, digits, \
                     `_`, `-` and `.`, got {}",
                    got(v)
                ),
            );
            None
        })
    });
    aws.role_arn = map.get("roleArn").and_then(|v| {
        let arn = checks::string(p, "aws.roleArn", v)?;
        let valid = arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/");
        valid.then_some(arn).or_else(|| {
            p.add(
                "aws.roleArn",
                format!(
                    "must be an IAM role ARN like `arn:aws:iam::123456789012:role/name`, got {}",
                    got(v)
                ),
            );
            None
        })
    });
    aws.architecture = map.get("architecture").and_then(|v| {
        match checks::one_of(p, "aws.architecture", v, &["arm64", "x86_64"])? {
            "arm64" => Some(Architecture::Arm64),
            _ => Some(Architecture::X86_64),
        }
    });
    aws.memory_size = map
        .get("memorySize")
        .and_then(|v| checks::integer(p, "aws.memorySize", v, 128..=10240, "a whole number of MB"));
    aws.runner = map
        .get("runner")
        .and_then(|v| checks::non_empty_string(p, "aws.runner", v))
        .map(PathBuf::from);
    aws
}

/// The `aws` provider cannot open its backend without its bucket and table: these problems are
/// kept apart from the load's (`ProjectConfig::backend_ready` reports them, before anything is
/// bundled, and the backend again if it is opened without asking). A key that is there but
/// invalid already has its own problem; an `aws` that is not an object too. `from_flag`: the
/// provider was chosen by `--provider aws` (or `LUMO_PROVIDER`, then named), not by the config.
pub(crate) fn require_resources(p: &mut Problems, aws: Option<&Value>, from_flag: bool) {
    let section = match aws {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return,
    };
    let provider = if !from_flag {
        "provider `aws`"
    } else if crate::flag_source::value_from_variable("provider", "LUMO_PROVIDER") {
        "`LUMO_PROVIDER=aws`"
    } else {
        "`--provider aws`"
    };
    for (key, what, output) in [
        ("bucket", "the S3 bucket for bundles and logs", "BucketName"),
        (
            "table",
            "the DynamoDB table for the audit trail and locks",
            "TableName",
        ),
    ] {
        if section.is_none_or(|m| !m.contains_key(key)) {
            p.add(
                child("aws", key),
                format!(
                    "is required with {provider}: {what}, the `{output}` output of the stack \
                     in `infra/` (see the README's \"Deploying to AWS\"); or run with \
                     `--provider local`"
                ),
            );
        }
    }
}

fn is_bucket_name(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
}
