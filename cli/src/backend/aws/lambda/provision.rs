//! Provisioning the runner function: creating `<project>-<env>-lumo-runner`, or updating its
//! code and settings where they differ from what this deploy wants, and waiting until it can be
//! invoked; for a manual run, only checking that it is there.
//!
//! Every runner function runs on a managed Node.js runtime ([`RUNTIME`]), whatever its tasks:
//! JavaScript and TypeScript tasks need Node, which `provided.al2023` lacks, and one shape for
//! every environment keeps adding the first TypeScript task an S3 upload, not a function update
//! (PRODUCT.md §9). The runtime never starts Node's own runtime client: its
//! `AWS_LAMBDA_EXEC_WRAPPER` (`exec-wrapper.sh`, in the package beside `bootstrap`) execs the
//! Rust runner instead, telling it where the runtime's Node is. The managed Node.js runtimes are
//! Amazon Linux 2023, as `provided.al2023` is, so scripts and Rust tasks run as before.

use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture as LambdaArch, Environment, EphemeralStorage, FunctionCode, FunctionConfiguration,
    LastUpdateStatus, Runtime, State,
};

use super::{LambdaExecutor, function_name};
use crate::backend::aws::errors::sdk_error;
use crate::backend::aws::{check_runner_architecture, runner_missing};
use crate::backend::{BackendError, BackendErrorKind, BackendResult};
use crate::bundle::assets::{BundleEntry, EntrySource};
use crate::config::Architecture;

/// The runner function's timeout: Lambda's maximum. Billing is by duration, so this costs
/// nothing, and the runner stops each task at its own (lower) timeout.
pub(super) const FUNCTION_TIMEOUT_SECS: i32 = 900;
/// The runner function's `/tmp` (MB). Lambda's default of 512 MB does not hold the runner's
/// bundle cache (up to 256 MiB, `lumo_runner::lambda::DEFAULT_CACHE_MAX_BYTES`), a download
/// beside it and the unpacked bundle (up to Lambda's 250 MB) with the run's log at once; 1024
/// does, with room to spare. The extra 512 MB costs a fraction of the function's memory price.
const EPHEMERAL_STORAGE_MB: i32 = 1024;
/// The runner function's runtime: the newest managed Node.js runtime (Node 24, LTS, supported
/// by Lambda until 2028); `nodejs20.x` is past its Lambda deprecation date. A function on an
/// older runtime (or on `provided.al2023`, before lumo ran JavaScript tasks) is moved to it by
/// the next deploy, as any settings change.
pub(super) const RUNTIME: Runtime = Runtime::Nodejs24x;
/// The exec wrapper's name in the package, and where Lambda unpacks it.
const EXEC_WRAPPER_NAME: &str = "lumo-exec-wrapper";
const EXEC_WRAPPER_PATH: &str = "/var/task/lumo-exec-wrapper";
/// The variable that makes a managed runtime start the wrapper instead of its own client.
const EXEC_WRAPPER_VAR: &str = "AWS_LAMBDA_EXEC_WRAPPER";
/// The wrapper script (see the file for what it does).
const EXEC_WRAPPER: &str = include_str!("exec-wrapper.sh");
/// How many times to look at the function again when it changed while a deploy set it up.
const CONFLICT_ROUNDS: u32 = 4;
/// How long to wait for the function to become active or finish updating.
const READY_WAIT: Duration = Duration::from_secs(300);

/// The runner binary for Lambda and the sha256 that identifies the function package made of
/// it and the exec wrapper.
struct Runner<'a> {
    path: &'a Path,
    sha256: String,
}

/// The package's identity: the runner binary's sha256 and the wrapper's bytes, so a new
/// wrapper updates the code as a new runner does.
fn package_sha256(binary_sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(binary_sha256.as_bytes());
    hasher.update(b"\n");
    hasher.update(EXEC_WRAPPER.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a change to the function was made: `false` when Lambda answered
/// `ResourceConflictException` (the function changed meanwhile, or another change of it is in
/// progress), any other error described as `what` was being done.
fn applied<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    what: impl FnOnce() -> String,
) -> BackendResult<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ResourceConflictException") => Ok(false),
        Err(e) => Err(sdk_error(&what(), e)),
    }
}

impl LambdaExecutor {
    fn wanted_arch(&self) -> LambdaArch {
        match self.target.architecture {
            Architecture::Arm64 => LambdaArch::Arm64,
            Architecture::X86_64 => LambdaArch::X8664,
        }
    }

    /// Creates the function, or updates its code and settings where they differ, then waits
    /// until it can be invoked.
    ///
    /// Lambda answers `ResourceConflictException` when the function appeared since we looked
    /// (a create that went through although its response was lost, so the SDK retried it) or
    /// another update of it is in progress: we look again, and wait for a function that is
    /// still being created or updated before comparing it.
    pub(super) async fn ensure_function(&self, env: &str) -> BackendResult<()> {
        let name = function_name(&self.target.project, env);
        if name.len() > 64 {
            return Err(BackendError::new(format!(
                "the runner function name `{name}` is longer than Lambda's 64 characters"
            ))
            .hint("use a shorter `projectName` or environment name"));
        }
        // The runner's identity is the sha256 of its binary, kept in the function's description:
        // comparing it costs a hash (cached by file metadata), where comparing `CodeSha256`
        // would mean zipping the binary on every deploy.
        if let Some(path) = &self.target.runner {
            check_runner_architecture(&self.target, path)?;
        }
        let runner = match &self.target.runner {
            Some(path) => Some(Runner {
                sha256: package_sha256(&binary_sha256(path, &self.target.cache_dir)?),
                path,
            }),
            None => None,
        };
        let mut round = 1;
        loop {
            let settled = match self.function_configuration(&name).await? {
                None => self.create_function(&name, env, runner.as_ref()).await?,
                Some(config) => {
                    self.update_function(&name, env, runner.as_ref(), &config)
                        .await?
                }
            };
            if settled {
                return Ok(());
            }
            if round == CONFLICT_ROUNDS {
                return Err(BackendError::new(format!(
                    "the runner function `{name}` kept changing while this deploy set it up"
                ))
                .hint("is another deploy or tool updating it? Try again once it has finished"));
            }
            tracing::info!("`{name}` changed while we set it up; looking again");
            round += 1;
        }
    }

    /// The function's configuration, or `None` when it does not exist.
    async fn function_configuration(
        &self,
        name: &str,
    ) -> BackendResult<Option<FunctionConfiguration>> {
        match self.control.get_function().function_name(name).send().await {
            Ok(out) => Ok(out.configuration),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(
                &format!("looking up the runner function `{name}`"),
                e,
            )),
        }
    }

    fn description(&self, env: &str, runner: &Runner) -> String {
        format!(
            "lumo runner for {} / {env} (package sha256 {})",
            self.target.project, runner.sha256
        )
    }

    /// The function's environment: only the exec wrapper (secrets travel in each payload).
    fn environment() -> Environment {
        Environment::builder()
            .variables(EXEC_WRAPPER_VAR, EXEC_WRAPPER_PATH)
            .build()
    }

    /// Creates the function and waits until it is active; `false` when it exists already.
    async fn create_function(
        &self,
        name: &str,
        env: &str,
        runner: Option<&Runner<'_>>,
    ) -> BackendResult<bool> {
        let Some(runner) = runner else {
            return Err(runner_missing(&self.target));
        };
        let Some(role) = &self.target.role_arn else {
            return Err(BackendError::new(format!(
                "cannot create the runner function `{name}`: the config sets no `aws.roleArn`"
            ))
            .hint("use the `RunnerRoleArn` output of the stack in `infra/`"));
        };
        tracing::info!("creating the runner function {name}");
        let created = self
            .control
            .create_function()
            .function_name(name)
            .runtime(RUNTIME)
            .handler("bootstrap")
            .environment(Self::environment())
            .role(role)
            .architectures(self.wanted_arch())
            .memory_size(self.target.memory_size as i32)
            .timeout(FUNCTION_TIMEOUT_SECS)
            .ephemeral_storage(ephemeral_storage()?)
            .description(self.description(env, runner))
            .tags("lumo:project", &self.target.project)
            .tags("lumo:environment", env)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(runner_zip(runner.path)?))
                    .build(),
            )
            .send()
            .await;
        // A conflict: it exists already (our own create went through though its answer was lost).
        if !applied(created, || format!("creating the runner function `{name}`"))? {
            return Ok(false);
        }
        self.wait_active(name).await?;
        Ok(true)
    }

    /// Updates the function's code and settings where they differ from what this deploy
    /// wants, then waits until it is ready. `false` when another change of it was under way
    /// (then it has been waited for, and `config` is out of date).
    async fn update_function(
        &self,
        name: &str,
        env: &str,
        runner: Option<&Runner<'_>>,
        config: &FunctionConfiguration,
    ) -> BackendResult<bool> {
        let pending = config.state().is_some_and(|s| *s == State::Pending);
        let updating = config
            .last_update_status()
            .is_some_and(|s| *s == LastUpdateStatus::InProgress);
        if pending || updating {
            if pending {
                self.wait_active(name).await?;
            }
            if updating {
                self.wait_updated(name).await?;
            }
            return Ok(false);
        }
        let mut changed = false;
        let wanted_description = runner.map(|r| self.description(env, r));
        match runner {
            Some(runner) => {
                let same_code = config
                    .description()
                    .is_some_and(|d| d.ends_with(&format!("(package sha256 {})", runner.sha256)));
                let same_arch = config
                    .architectures()
                    .first()
                    .is_none_or(|a| *a == self.wanted_arch());
                if !same_code || !same_arch {
                    tracing::info!("updating the code of {name}");
                    let updated = self
                        .control
                        .update_function_code()
                        .function_name(name)
                        .zip_file(Blob::new(runner_zip(runner.path)?))
                        .architectures(self.wanted_arch())
                        .send()
                        .await;
                    if !applied(updated, || format!("updating the code of `{name}`"))? {
                        return Ok(false);
                    }
                    self.wait_updated(name).await?;
                    changed = true;
                }
            }
            None => tracing::warn!("runner binary not found; using the deployed `{name}` as it is"),
        }
        let settings_differ = config.memory_size() != Some(self.target.memory_size as i32)
            || config.timeout() != Some(FUNCTION_TIMEOUT_SECS)
            || config.ephemeral_storage().map(EphemeralStorage::size) != Some(EPHEMERAL_STORAGE_MB)
            || config.handler() != Some("bootstrap")
            || config.runtime() != Some(&RUNTIME)
            || config
                .environment()
                .and_then(|e| e.variables())
                .and_then(|v| v.get(EXEC_WRAPPER_VAR))
                .map(String::as_str)
                != Some(EXEC_WRAPPER_PATH)
            || wanted_description
                .as_deref()
                .is_some_and(|d| config.description() != Some(d))
            || self
                .target
                .role_arn
                .as_deref()
                .is_some_and(|r| config.role() != Some(r));
        if settings_differ {
            tracing::info!("updating the settings of {name}");
            let mut update = self
                .control
                .update_function_configuration()
                .function_name(name)
                .memory_size(self.target.memory_size as i32)
                .timeout(FUNCTION_TIMEOUT_SECS)
                .ephemeral_storage(ephemeral_storage()?)
                .handler("bootstrap")
                .runtime(RUNTIME)
                .environment(Self::environment())
                .set_description(wanted_description);
            if let Some(role) = &self.target.role_arn {
                update = update.role(role);
            }
            let updated = update.send().await;
            if !applied(updated, || format!("updating the settings of `{name}`"))? {
                return Ok(false);
            }
            changed = true;
        }
        if changed {
            self.wait_updated(name).await?;
        }
        Ok(true)
    }

    /// The function exists (a manual run changes no infrastructure).
    pub(super) async fn check_function(&self, env: &str) -> BackendResult<()> {
        let name = function_name(&self.target.project, env);
        match self.function_configuration(&name).await? {
            Some(_) => Ok(()),
            None => Err(
                BackendError::new(format!("the runner function `{name}` does not exist"))
                    .of_kind(BackendErrorKind::NotFound)
                    .hint(format!(
                        "deploy the environment first: `lumo deploy --env {env}`"
                    )),
            ),
        }
    }

    async fn wait_active(&self, name: &str) -> BackendResult<()> {
        self.control
            .wait_until_function_active_v2()
            .function_name(name)
            .wait(READY_WAIT)
            .await
            .map_err(|e| {
                BackendError::with_source(
                    format!("the runner function `{name}` did not become active"),
                    e,
                )
            })?;
        Ok(())
    }

    async fn wait_updated(&self, name: &str) -> BackendResult<()> {
        self.control
            .wait_until_function_updated_v2()
            .function_name(name)
            .wait(READY_WAIT)
            .await
            .map_err(|e| {
                BackendError::with_source(
                    format!("the runner function `{name}` did not finish updating"),
                    e,
                )
            })?;
        Ok(())
    }
}

fn ephemeral_storage() -> BackendResult<EphemeralStorage> {
    EphemeralStorage::builder()
        .size(EPHEMERAL_STORAGE_MB)
        .build()
        .map_err(|e| BackendError::with_source("cannot describe the runner's `/tmp` size", e))
}

/// The runner binary zipped as `bootstrap` beside the exec wrapper (deterministic, like every
/// lumo zip).
fn runner_zip(binary: &Path) -> BackendResult<Vec<u8>> {
    let fail = |e: std::io::Error| {
        BackendError::with_source(
            format!("cannot zip the runner binary `{}`", binary.display()),
            e,
        )
    };
    let size = std::fs::metadata(binary).map_err(fail)?.len();
    let entry = BundleEntry {
        path: "bootstrap".into(),
        source: EntrySource::File(binary.to_path_buf()),
        executable: true,
        size,
        stamp: None,
    };
    let wrapper = BundleEntry {
        path: EXEC_WRAPPER_NAME.into(),
        source: EntrySource::Bytes(EXEC_WRAPPER.as_bytes().to_vec()),
        executable: true,
        size: EXEC_WRAPPER.len() as u64,
        stamp: None,
    };
    let mut file = tempfile::tempfile().map_err(fail)?;
    crate::bundle::write_zip(&file, &[entry, wrapper], &crate::bundle::Cancel::default())
        .map_err(fail)?;
    file.rewind().map_err(fail)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

/// The sha256 of the runner binary, cached in `<cache_dir>/runner.sha256` under the file's
/// path, size, modification time and inode, so an unchanged binary costs one `stat`.
fn binary_sha256(binary: &Path, cache_dir: &Path) -> BackendResult<String> {
    let meta = std::fs::metadata(binary).map_err(|e| {
        BackendError::with_source(
            format!("cannot read the runner binary `{}`", binary.display()),
            e,
        )
    })?;
    let key = format!(
        "{}\t{}\t{}.{}\t{}",
        binary.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let cache = cache_dir.join("runner.sha256");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((cached_key, sha)) = text.trim_end().rsplit_once('\t')
        && cached_key == key
    {
        return Ok(sha.to_string());
    }
    let sha = lumo_runner::bundle::sha256_file(binary).map_err(|e| {
        BackendError::with_source(
            format!("cannot hash the runner binary `{}`", binary.display()),
            e,
        )
    })?;
    // Only a cache: failing to write it costs the next deploy a hash, nothing else.
    let _ = std::fs::create_dir_all(cache_dir)
        .and_then(|()| std::fs::write(&cache, format!("{key}\t{sha}\n")));
    Ok(sha)
}
