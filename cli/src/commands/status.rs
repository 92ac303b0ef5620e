//! `lumo status --env E`: the environment's version, its lock, its latest deployment and runs.

use std::fmt;

use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::EnvArgs;
use crate::backend::LockState;
use crate::backend::records::{AuditEvent, Deployment, EnvState, TaskRun};
use crate::output::format_duration;

pub async fn run(args: EnvArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let env = project.resolve_env(args.env.as_deref())?;
    let backend = ctx.connect_read_only(&project).await?;
    let state = backend.audit.env_state(&env).await?;
    let last_deployment = backend.audit.deployments(&env, 1).await?.into_iter().next();
    let runs = backend.audit.runs(&env, None, 10).await?;
    let lock = backend.locks.current(&env).await?;
    let events = backend.audit.events(&env, 5).await?;
    let status = Status {
        project: project.config.project_name.clone(),
        env,
        provider: project.config.provider.as_str(),
        state,
        last_deployment,
        last_runs: runs,
        lock,
        recent_events: events,
    };
    Ok(Outcome::report(status))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub project: String,
    pub env: String,
    pub provider: &'static str,
    pub state: EnvState,
    pub last_deployment: Option<Deployment>,
    #[serde(serialize_with = "crate::report::outcome::serialize_runs")]
    pub last_runs: Vec<TaskRun>,
    pub lock: LockState,
    pub recent_events: Vec<AuditEvent>,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} / {} ({})", self.project, self.env, self.provider)?;
        match (&self.state.version, self.state.deployed_at) {
            (Some(v), Some(at)) => writeln!(f, "  version:   {v} (deployed {at})")?,
            _ => writeln!(f, "  version:   none (never deployed successfully)")?,
        }
        match (&self.lock.manual, &self.lock.writer) {
            (None, None) => writeln!(f, "  lock:      free")?,
            (manual, writer) => {
                if let Some(m) = manual {
                    writeln!(f, "  lock:      locked by hand by {}", m.describe())?;
                }
                if let Some(w) = writer {
                    writeln!(f, "  writer:    {}", w.describe())?;
                }
            }
        }
        if let Some(d) = &self.last_deployment {
            writeln!(
                f,
                "  last deploy: {} {} of {} by {} at {}",
                d.id, d.status, d.version, d.actor, d.started_at
            )?;
            if let Some(m) = &d.message {
                writeln!(f, "               {m}")?;
            }
        }
        if self.last_runs.is_empty() {
            writeln!(f, "  no runs yet")?;
        } else {
            writeln!(f, "  latest runs:")?;
            for r in &self.last_runs {
                writeln!(
                    f,
                    "    {}  {:<20} {:<8} {:<10} {:>7}  {}",
                    r.started_at,
                    r.title(),
                    r.trigger.as_str(),
                    r.status.as_str(),
                    r.duration_ms.map(format_duration).unwrap_or_default(),
                    r.id
                )?;
            }
        }
        if !self.recent_events.is_empty() {
            writeln!(f, "  recent events:")?;
            for e in &self.recent_events {
                writeln!(
                    f,
                    "    {}  {:<14} {:<20} {}",
                    e.at,
                    e.kind.as_str(),
                    e.actor,
                    e.message
                )?;
            }
        }
        Ok(())
    }
}
