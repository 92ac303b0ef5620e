//! `lumo history --env E [--task T] [--limit N]`: the latest runs, newest first.

use std::fmt;

use lumo_runner::Version;
use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::HistoryArgs;
use crate::backend::records::TaskRun;
use crate::output::format_duration;

pub async fn run(args: HistoryArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let env = project.resolve_env(args.env.env.as_deref())?;
    let backend = ctx.connect_read_only(&project).await?;
    let runs = backend
        .audit
        .runs(&env, args.task.as_deref(), args.limit)
        .await?;
    // A task removed from the project keeps its history; only a name never seen is an error.
    if let Some(task) = &args.task
        && runs.is_empty()
    {
        project.task(task)?;
    }
    Ok(Outcome::report(History {
        env,
        task: args.task,
        runs,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub env: String,
    pub task: Option<String>,
    #[serde(serialize_with = "crate::report::outcome::serialize_runs")]
    pub runs: Vec<TaskRun>,
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.runs.is_empty() {
            return match &self.task {
                Some(t) => writeln!(f, "No runs of `{t}` in `{}` yet.", self.env),
                None => writeln!(f, "No runs in `{}` yet.", self.env),
            };
        }
        let width = self
            .runs
            .iter()
            .map(|r| r.title().chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<26}  {:<24}  {:<width$}  {:<8} {:<10} {:>7}  {:<12} MESSAGE",
            "RUN", "STARTED", "TASK", "TRIGGER", "STATUS", "TIME", "VERSION"
        )?;
        for r in &self.runs {
            let message = r
                .message
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            let mut message = if r.from_source {
                format!("(working copy) {message}")
            } else {
                message.to_string()
            };
            // What a manual run was given (recorded masked), so two runs of one task tell
            // apart without `--json`.
            if !r.args.is_empty() {
                let args: Vec<String> = r.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                message.push_str(&format!(" [args: {}]", args.join(" ")));
            }
            writeln!(
                f,
                "{:<26}  {:<24}  {:<width$}  {:<8} {:<10} {:>7}  {:<12} {}",
                r.id,
                r.started_at.to_string(),
                r.title(),
                r.trigger.as_str(),
                r.status.as_str(),
                r.duration_ms.map(format_duration).unwrap_or_default(),
                r.version.as_ref().map_or("", Version::as_str),
                message.trim_start()
            )?;
        }
        Ok(())
    }
}
