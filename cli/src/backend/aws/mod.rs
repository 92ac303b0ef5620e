//! The `aws` provider (PRODUCT.md §9): bundles in S3, tasks on Lambda through lumo's runner,
//! the audit trail, environment state and locks in one DynamoDB table.
//!
//! Everything goes through the standard credential chain, `--profile`, `--region`, and
//! `AWS_ENDPOINT_URL*` (so it also runs against emulators). SDK error types never leave this
//! module: they become [`BackendError`]s that say what lumo was doing and how to fix it.

mod dynamo;
mod errors;
mod lambda;
mod locks;
mod profile;
mod runner_arch;
mod s3;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls;

use super::{Backend, BackendError, BackendErrorKind, BackendResult, ConnectOptions};
use crate::project::Project;
use settings::Architecture;

pub use errors::sdk_error;
pub use profile::check_named_profile;

/// The `aws` settings of a project, every required one present.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    pub project: String,
    pub bucket: String,
    pub table: String,
    pub role_arn: Option<String>,
    pub architecture: Architecture,
    pub memory_size: u32,
    /// The runner's `bootstrap` binary, when one was found.
    pub runner: Option<PathBuf>,
    /// Where the runner binary was looked for, for the error when it is needed and missing.
    pub runner_searched: Vec<PathBuf>,
    /// The project's `.lumo/`, where the runner binary's hash is cached.
    pub cache_dir: PathBuf,
    /// The environments the config names ([`named_environments`]): where a prefix of a run id
    /// is looked up, the table being keyed by environment.
    ///
    /// [`named_environments`]: crate::config::ProjectConfig::named_environments
    pub environments: Vec<String>,
}

/// Memory of the runner function when neither `aws.memorySize` nor any task sets it.
const DEFAULT_MEMORY_MB: u32 = 512;

impl AwsTarget {
    /// The config's load already checked the `aws` settings; what it found missing for this
    /// provider (`aws.bucket`, `aws.table`) is reported here as the same config error, so a
    /// caller that did not ask [`ProjectConfig::backend_ready`](crate::config::ProjectConfig)
    /// first gets it too.
    fn from_project(project: &Project, opts: &ConnectOptions) -> BackendResult<AwsTarget> {
        project.config.backend_ready()?;
        let aws = &project.config.aws;
        let memory_size = aws
            .memory_size
            .or_else(|| {
                project
                    .tasks
                    .iter()
                    .filter_map(|t| t.config.memory_size)
                    .max()
            })
            .unwrap_or(DEFAULT_MEMORY_MB);
        let (runner, runner_searched) = find_runner(project, opts);
        Ok(AwsTarget {
            project: project.config.project_name.clone(),
            bucket: aws.bucket.clone().unwrap_or_default(),
            table: aws.table.clone().unwrap_or_default(),
            role_arn: aws.role_arn.clone(),
            architecture: aws.architecture.unwrap_or(Architecture::Arm64),
            memory_size,
            runner,
            runner_searched,
            cache_dir: project.lumo_dir(),
            environments: project.config.named_environments(),
        })
    }
}

/// The runner's Lambda binary: `--runner`/`LUMO_RUNNER`, else `aws.runner` (relative to the
/// project), else where `cargo lambda build --release -p lumo-runner` puts it when the project is
/// built in the lumo repository itself (`$CARGO_TARGET_DIR` or the project's `target/`). A
/// directory means its `bootstrap`. Every candidate is absolute, so the error for a missing
/// binary names exactly where lumo looked.
fn find_runner(project: &Project, opts: &ConnectOptions) -> (Option<PathBuf>, Vec<PathBuf>) {
    let root = project.root();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = &opts.aws.runner {
        candidates.push(p.clone());
    } else if let Some(p) = &project.config.aws.runner {
        candidates.push(root.join(p));
    } else {
        if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
            candidates.push(PathBuf::from(dir).join("lambda/lumo-runner/bootstrap"));
        }
        candidates.push(root.join("target/lambda/lumo-runner/bootstrap"));
    }
    let resolved = candidates.iter().map(|c| {
        let c = std::path::absolute(c).unwrap_or_else(|_| c.clone());
        if c.is_dir() { c.join("bootstrap") } else { c }
    });
    let found = resolved.clone().find(|c| c.is_file());
    (found, resolved.collect())
}

/// Whether an endpoint override is set (emulators, VPC endpoints): S3 must then use path-style
/// addressing, since `bucket.localhost` does not resolve.
fn endpoint_override() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

pub async fn open(project: &Project, opts: &ConnectOptions) -> BackendResult<Backend> {
    // One explicit HTTP client (rustls with ring) for every service, instead of the SDK's
    // default stack: fewer crates, faster builds, the same TLS the runner uses.
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(profile) = &opts.aws.profile {
        // Also checked by the commands before they build; here for any other way in.
        check_named_profile(profile).await?;
        loader = loader.profile_name(profile);
    }
    if let Some(region) = opts
        .aws
        .region
        .clone()
        .or_else(|| project.config.region.clone())
    {
        loader = loader.region(Region::new(region));
    }
    let sdk = loader.load().await;
    with_sdk_config(project, opts, &sdk).await
}

/// The backend on an already loaded SDK config (the conformance suite builds its own).
pub async fn with_sdk_config(
    project: &Project,
    opts: &ConnectOptions,
    sdk: &aws_config::SdkConfig,
) -> BackendResult<Backend> {
    let target = Arc::new(AwsTarget::from_project(project, opts)?);
    if sdk.region().is_none() {
        return Err(BackendError::invalid(
            "no AWS region: pass `--region`, set `region` in the config, or set `AWS_REGION`",
        ));
    }
    let path_style = endpoint_override().is_some() || sdk.endpoint_url().is_some();
    let s3_config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .build();
    let s3 = s3::S3Store::new(
        aws_sdk_s3::Client::from_conf(s3_config),
        Arc::clone(&target),
    );
    let dynamo = Arc::new(dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        s3.clone(),
        Arc::clone(&target),
    ));
    let executor = lambda::LambdaExecutor::new(sdk, s3.clone(), Arc::clone(&target));
    let caller = if opts.needs_identity {
        caller_identity(sdk).await
    } else {
        None
    };
    Ok(Backend {
        bundles: Arc::new(s3.clone()),
        executor: Arc::new(executor),
        audit: dynamo.clone(),
        locks: dynamo,
        orphans: Arc::new(s3),
        caller,
    })
}

/// The caller's ARN from STS, for the audit trail's actor; `None` when STS cannot say.
async fn caller_identity(sdk: &aws_config::SdkConfig) -> Option<String> {
    let sts = aws_sdk_sts::Client::new(sdk);
    match sts.get_caller_identity().send().await {
        Ok(out) => out.arn().map(str::to_string),
        Err(e) => {
            tracing::debug!("sts:GetCallerIdentity failed: {}", errors::one_line(&e));
            None
        }
    }
}

/// `BackendError` (exit code 2, as a config error) for a runner binary that cannot serve the
/// configured architecture: it names both, and the two ways out.
pub(crate) fn check_runner_architecture(target: &AwsTarget, runner: &Path) -> BackendResult<()> {
    runner_arch::check_runner(runner, target.architecture).map_err(|e| {
        let wanted = runner_arch::config_name(target.architecture);
        let other = match target.architecture {
            Architecture::Arm64 => "x86_64",
            Architecture::X86_64 => "arm64",
        };
        BackendError::new(e.to_string())
            .of_kind(BackendErrorKind::Invalid)
            .hint(format!(
                "build the runner for {wanted} with `cargo lambda build --release -p lumo-runner \
                 {}`, or, if the runner is right, set `aws: {{ architecture: '{other}' }}` in \
                 `lumo.config.js`",
                cargo_lambda_arch_flag(target.architecture)
            ))
    })
}

fn cargo_lambda_arch_flag(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Arm64 => "--arm64",
        Architecture::X86_64 => "--x86-64",
    }
}

/// `BackendError` for a missing runner binary: where lumo looked (absolute paths), how to build
/// it, and the three ways to point lumo at it. The binary is built in the lumo repository, not
/// in the user's project, so the default places rarely hold it.
pub fn runner_missing(target: &AwsTarget) -> BackendError {
    let searched = crate::quoted::list(target.runner_searched.iter().map(|p| p.display()));
    let arch = cargo_lambda_arch_flag(target.architecture);
    // A path the user never typed is named with the variable it came from.
    let source = if crate::flag_source::value_from_variable("runner", "LUMO_RUNNER") {
        ", the path in `LUMO_RUNNER`"
    } else {
        ""
    };
    BackendError::new(format!(
        "the lumo runner binary for Lambda is missing (looked for {searched}{source})"
    ))
    .of_kind(BackendErrorKind::NotFound)
    .hint(format!(
        "build it in the lumo repository with `cargo lambda build --release -p lumo-runner {arch}`, \
         then point lumo at the absolute path of the `bootstrap` it wrote \
         (`<lumo repository>/target/lambda/lumo-runner/bootstrap`) in one of three ways: \
         `LUMO_RUNNER=/abs/path/bootstrap`, `--runner /abs/path/bootstrap`, or \
         `aws: {{ runner: '/abs/path/bootstrap' }}` in `lumo.config.js`"
    ))
}
