//! `lumo run TASK --env E --dry-run`: what a manual run would do and whether it would be let
//! through, without taking the lock, running or recording anything — what `deploy --dry-run`
//! is to a deploy. A CI job or an operator checks "may this identity run `purge` in `prod`,
//! with these args, and is it deployed there?" before anyone is refused (and the refusal
//! recorded) or a confirmation is asked for. The arguments are checked as the real run checks
//! them (a wrong one is the same exit 2), so a dry run that passes differs from the run only in
//! what happens at run time.

use std::collections::BTreeMap;
use std::fmt;

use lumo_runner::{BundleHash, Version};
use serde::Serialize;

use crate::access::{Right, Standing, verdict};
use crate::backend::Backend;
use crate::config::{ConfirmRule, Permission};
use crate::error::CliError;
use crate::project::Project;
use crate::task::Task;

/// A manual run as it would go.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPreview {
    pub project: String,
    pub env: String,
    pub task: String,
    /// Always `true`: nothing ran.
    pub dry_run: bool,
    /// Whether the real run would start the task (given `--yes` where it asks to confirm).
    pub allowed: bool,
    /// The error the real run would stop with first (the refusal, else a missing bundle);
    /// `None` when `allowed`.
    pub error: Option<String>,
    /// The role the task's manual runs need (its `permission`), and whether the actor has it.
    pub permission: Permission,
    pub may_run: bool,
    /// Who is asking, and what else they may do in `env` (as `lumo tasks --env --json`).
    pub access: Standing,
    /// The environment's version; `None` before its first deploy.
    pub version: Option<Version>,
    /// The deployed bundle the run would use; `None` when there is none, or with
    /// `--from-source` (the working copy is bundled when it runs).
    pub bundle_hash: Option<BundleHash>,
    pub from_source: bool,
    /// The arguments as the task would get them (defaults filled in), secrets masked.
    pub args: BTreeMap<String, String>,
    /// What the run would ask to confirm; `None` when it asks nothing.
    pub confirm: Option<String>,
    /// What answers that confirmation: `yes`, or the environment's name.
    pub confirm_with: Option<String>,
}

/// What running `task` by hand in `env` as `actor` would do. Read-only.
pub async fn preview(
    backend: &Backend,
    project: &Project,
    env: &str,
    task: &Task,
    actor: &str,
    args: BTreeMap<String, String>,
    from_source: bool,
) -> Result<RunPreview, CliError> {
    let config = &project.config;
    let access = Standing::of(config, env, actor);
    let state = backend.audit.env_state(env).await?;
    let deployed = state.bundles.get(&task.name).cloned();
    let refusal = access.run_refusal(&task.name, task.config.permission);
    // The real run's order: the role first, then (under the lock) the deployed bundle.
    let missing = match (&state.version, &deployed, from_source) {
        (None, _, true) => Some(crate::manual_run::from_source_needs_a_deploy(
            env,
            config.provider,
        )),
        (None, _, false) | (_, None, false) => Some(format!(
            "task `{}` has no deployed bundle in environment `{env}`",
            task.name
        )),
        _ => None,
    };
    let error = refusal.or(missing);
    let confirm_with =
        task.config
            .confirm
            .as_ref()
            .map(|_| match crate::access::confirm_rule(config, env) {
                ConfirmRule::Yes => "yes".to_string(),
                ConfirmRule::Name => env.to_string(),
            });
    Ok(RunPreview {
        project: config.project_name.clone(),
        env: env.to_string(),
        task: task.name.clone(),
        dry_run: true,
        allowed: error.is_none(),
        error,
        permission: task.config.permission,
        may_run: access.may_run(task.config.permission),
        access,
        version: state.version,
        bundle_hash: if from_source { None } else { deployed },
        from_source,
        args,
        confirm: task.config.confirm.clone(),
        confirm_with,
    })
}

impl RunPreview {
    /// The task's `permission` as a right, for [`verdict`].
    fn run_right(&self) -> Right {
        Right {
            allowed: self.may_run,
            needs: self.permission,
            from: format!("tasks.{}.permission", self.task),
            refusal: self.access.run_refusal(&self.task, self.permission),
        }
    }
}

impl fmt::Display for RunPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Dry run: task `{}` by hand in {} of {}",
            self.task, self.env, self.project
        )?;
        writeln!(f, "  {}", self.access.who())?;
        writeln!(
            f,
            "  {}",
            verdict(&format!("task `{}`", self.task), &self.run_right())
        )?;
        let version = self.version.as_ref().map_or("none", Version::as_str);
        match (&self.bundle_hash, self.from_source) {
            (_, true) => writeln!(
                f,
                "  bundle: the working copy (`--from-source`), in version {version}"
            )?,
            (Some(hash), false) => writeln!(
                f,
                "  bundle: {}, deployed in version {version}",
                &hash.as_str()[..12]
            )?,
            (None, false) => {}
        }
        if let Some(error) = self.error.as_deref().filter(|_| self.may_run) {
            writeln!(f, "  would fail (exit 2): {error}")?;
        }
        if !self.args.is_empty() {
            let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "  args: {}", args.join(" "))?;
        }
        if let (Some(text), Some(answer)) = (&self.confirm, &self.confirm_with) {
            writeln!(
                f,
                "  asks to confirm: \"{text}\" (answer `{answer}`, or pass `--yes`)"
            )?;
        }
        Ok(())
    }
}
