//! `lumo tasks [--env E]`: what tasks exist, where they come from, when they run.

use std::fmt;

use serde::Serialize;

use super::{CommandResult, Context};
use crate::args::TasksArgs;
use crate::config::{Permission, RunOn};
use crate::error::{CliError, ExitKind};

pub async fn run(args: TasksArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let env = match &args.env {
        Some(e) => Some(project.resolve_env(Some(e))?),
        None => None,
    };
    let actor = crate::actor::from_flag_or_ci(ctx.global.actor.as_deref())
        .unwrap_or_else(|| crate::actor::from_machine(project.root()));
    let role = env
        .as_deref()
        .map(|e| crate::access::role_of(&project.config, e, &actor));
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
            declared: t.declared,
            may_run: role.map(|r| crate::access::allows(r, t.config.permission)),
        })
        .collect();
    let list = TaskList {
        project: project.config.project_name.clone(),
        actor: env.as_ref().map(|_| actor.clone()),
        role: role.flatten(),
        env,
        tasks,
    };
    ctx.printer
        .result(&list)
        .map_err(|e| CliError::new(ExitKind::Backend, e))?;
    Ok(0)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub project: String,
    pub env: Option<String>,
    /// With `--env`: who is asking, and their role there.
    pub actor: Option<String>,
    pub role: Option<Permission>,
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
    pub args: Vec<String>,
    /// Declared in the config, rather than only found in `functions/tasks/`.
    pub declared: bool,
    /// With `--env`: whether the actor's role lets them run it by hand.
    pub may_run: Option<bool>,
}

fn run_on_text(run_on: &[RunOn]) -> String {
    if run_on.is_empty() {
        return "manual".to_string();
    }
    run_on
        .iter()
        .map(|r| match r {
            RunOn::Deploy => "deploy",
            RunOn::Update => "update",
            RunOn::Change => "change",
        })
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
        if let (Some(env), Some(actor)) = (&self.env, &self.actor) {
            let role = self.role.map_or("no role", |r| r.as_str());
            writeln!(f, "In `{env}`, `{actor}` has {role}:")?;
        }
        writeln!(
            f,
            "{:<width$}  {:<9}  {:<20} {:>7}  {:<10}  DESCRIPTION",
            "TASK", "KIND", "RUN ON", "TIMEOUT", "PERMISSION"
        )?;
        for t in &self.tasks {
            let mut description = t.description.clone().unwrap_or_default();
            if !t.args.is_empty() {
                description.push_str(&format!(" [args: {}]", t.args.join(", ")));
            }
            if let Some(envs) = &t.environments {
                description.push_str(&format!(" [envs: {}]", envs.join(", ")));
            }
            if t.may_run == Some(false) {
                description.push_str(" [not for you]");
            }
            writeln!(
                f,
                "{:<width$}  {:<9}  {:<20} {:>6}s  {:<10}  {}",
                t.name,
                t.kind,
                run_on_text(&t.run_on),
                t.timeout,
                t.permission.as_str(),
                description.trim()
            )?;
        }
        Ok(())
    }
}
