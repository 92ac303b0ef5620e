//! `lumo tasks [--env E]`: what tasks exist, where they come from, when they run, what a manual
//! run of each takes (args, confirmation) and, with `--env`, who may run it.

use std::fmt;

use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::access::Standing;
use crate::args::TasksArgs;
use crate::config::{ArgType, Permission, RunOn};
use crate::error::CliError;
use crate::project::Project;

pub async fn run(args: TasksArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let env = match &args.env {
        Some(e) => Some(project.resolve_env(Some(e))?),
        None => None,
    };
    // Who is asking matters only with `--env`: without it no actor is looked up (no `git`
    // started, no backend opened).
    let (actor, standing) = match env.as_deref() {
        Some(e) => {
            let actor = actor(&project, e, ctx).await?;
            let standing = Standing::of(&project.config, e, &actor);
            (Some(actor), Some(standing))
        }
        None => (None, None),
    };
    let tasks = project
        .tasks
        .iter()
        .filter(|t| env.as_deref().is_none_or(|e| t.exists_in(e)))
        .map(|t| TaskInfo {
            name: t.name.clone(),
            kind: t.source.kind(),
            source: t.display_path.clone(),
            description: t.config.description.clone(),
            run_on: t.config.run_on.clone(),
            timeout: t.config.timeout,
            permission: t.config.permission,
            environments: t.config.environments.clone(),
            depends_on: t.config.depends_on.clone(),
            args: t.config.args.keys().cloned().collect(),
            arg_defs: t
                .config
                .args
                .iter()
                .map(|(name, def)| ArgInfo {
                    name: name.clone(),
                    required: def.required,
                    default: def.default.clone(),
                    description: def.description.clone(),
                    kind: def.kind,
                    choices: def.choices.clone(),
                })
                .collect(),
            confirm: t.config.confirm.clone(),
            declared: t.declared,
            may_run: standing.as_ref().map(|s| s.may_run(t.config.permission)),
        })
        .collect();
    let list = TaskList {
        project: project.config.project_name.clone(),
        actor,
        role: standing.as_ref().and_then(|s| s.role),
        may_deploy: standing.as_ref().map(|s| s.may_deploy),
        deploy_role: standing.as_ref().map(|s| s.deploy_needs),
        access: standing,
        env,
        tasks,
    };
    Ok(Outcome::report(list))
}

/// Who is asking, for "may run": the actor `lumo run` would check ([`Context::actor`]). The
/// backend is opened only when its answer can matter: on `aws` (the caller identity) with
/// `--env`, an `access` map for that environment, and no actor from the flag or the CI.
async fn actor(project: &Project, env: &str, ctx: &Context) -> Result<String, CliError> {
    let needs_caller = crate::backend::identifies_caller(project.config.provider)
        && project
            .config
            .access
            .get(env)
            .is_some_and(|a| !a.roles.is_empty())
        && crate::actor::from_flag_or_ci(ctx.global.actor.as_deref()).is_none();
    if needs_caller {
        let backend = ctx.connect_read_only(project).await?;
        return Ok(ctx.actor(project, &backend));
    }
    Ok(crate::actor::from_flag_or_ci(ctx.global.actor.as_deref())
        .unwrap_or_else(|| crate::actor::from_machine(project.root())))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub project: String,
    pub env: Option<String>,
    /// With `--env`: who is asking, and their role there.
    pub actor: Option<String>,
    pub role: Option<Permission>,
    /// With `--env`: whether the actor may deploy there, and the role a deploy needs (the
    /// tasks a deploy runs are part of it; a task's `permission` gates its manual runs).
    pub may_deploy: Option<bool>,
    pub deploy_role: Option<Permission>,
    /// With `--env`: what the actor may do there and why (their role and where it comes from,
    /// each right with the role it takes), as `deploy --dry-run --json` has it.
    pub access: Option<Standing>,
    pub tasks: Vec<TaskInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    pub name: String,
    pub kind: &'static str,
    pub source: String,
    pub description: Option<String>,
    pub run_on: Vec<RunOn>,
    pub timeout: u32,
    pub permission: Permission,
    pub environments: Option<Vec<String>>,
    pub depends_on: Vec<String>,
    /// The names of `argDefs`, in declaration order.
    pub args: Vec<String>,
    /// The task's `args` for manual runs (`--arg NAME=VALUE`).
    pub arg_defs: Vec<ArgInfo>,
    /// What a manual run asks the user to confirm (or `--yes`).
    pub confirm: Option<String>,
    /// Declared in the config, rather than only found in `functions/tasks/`.
    pub declared: bool,
    /// With `--env`: whether the actor's role lets them run it by hand.
    pub may_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgInfo {
    pub name: String,
    pub required: bool,
    pub default: Option<String>,
    pub description: Option<String>,
    /// `string`, `number`, `boolean` or `environment`.
    #[serde(rename = "type")]
    pub kind: ArgType,
    /// The values allowed; `null` = any value of its type.
    pub choices: Option<Vec<String>>,
}

/// `--arg mode=soft|hard (string, default `soft`): how hard`: the choices stand in for the
/// value, then the type and whether it must be given.
impl fmt::Display for ArgInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.choices {
            Some(choices) => write!(f, "--arg {}={}", self.name, choices.join("|"))?,
            None => write!(f, "--arg {}=…", self.name)?,
        }
        let kind = self.kind.as_str();
        match (&self.default, self.required) {
            (Some(default), _) => write!(f, " ({kind}, default `{default}`)")?,
            (None, true) => write!(f, " ({kind}, required)")?,
            (None, false) => write!(f, " ({kind}, optional)")?,
        }
        match &self.description {
            Some(d) => write!(f, ": {d}"),
            None => Ok(()),
        }
    }
}

fn run_on_text(run_on: &[RunOn]) -> String {
    if run_on.is_empty() {
        return "manual".to_string();
    }
    run_on
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for TaskList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tasks.is_empty() {
            return writeln!(
                f,
                "No tasks. Add an executable file to `functions/tasks/` or a `command` task to the config."
            );
        }
        let width = self
            .tasks
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        if let Some(standing) = &self.access {
            writeln!(f, "{}.", standing.who())?;
            let (may, may_not) = standing.may_and_may_not();
            if !may.is_empty() {
                writeln!(f, "  may: {}", may.join(", "))?;
            }
            if !may_not.is_empty() {
                writeln!(f, "  may not: {}", may_not.join(", "))?;
            }
            writeln!(
                f,
                "  run a task by hand: needs its PERMISSION; MAY RUN: whether you may"
            )?;
        }
        let may_run_column = if self.access.is_some() {
            "MAY RUN  "
        } else {
            ""
        };
        writeln!(
            f,
            "{:<width$}  {:<9}  {:<20} {:>7}  {:<10}  {may_run_column}DESCRIPTION",
            "TASK", "KIND", "RUN ON", "TIMEOUT", "PERMISSION"
        )?;
        for t in &self.tasks {
            let mut description = t.description.clone().unwrap_or_default();
            if let Some(envs) = &t.environments {
                description.push_str(&format!(" [envs: {}]", envs.join(", ")));
            }
            let may_run = match t.may_run {
                Some(true) => "yes      ",
                Some(false) => "no       ",
                None => "",
            };
            let line = format!(
                "{:<width$}  {:<9}  {:<20} {:>6}s  {:<10}  {may_run}{}",
                t.name,
                t.kind,
                run_on_text(&t.run_on),
                t.timeout,
                t.permission.as_str(),
                description.trim()
            );
            writeln!(f, "{}", line.trim_end())?;
            for arg in &t.arg_defs {
                writeln!(f, "{:width$}  {arg}", "")?;
            }
            if let Some(text) = &t.confirm {
                writeln!(f, "{:width$}  asks to confirm: \"{text}\"", "")?;
            }
        }
        Ok(())
    }
}
