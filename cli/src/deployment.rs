//! A deployment's lifecycle (PRODUCT.md §5), once its bundles are built: refuse it if the actor
//! lacks the environment's deploy role, take the environment's lock, plan again under it, store
//! the bundles, record the deployment, run the tasks the plan calls for, record how it ended,
//! and say so in a [`DeployReport`]. A dry run plans without the lock and leaves no trace.
//! `lumo deploy` parses and builds; everything from here on is this module's.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lumo_runner::contract::RunStatus;
use lumo_runner::{BundleHash, Version};
use serde::Serialize;

use crate::access::Standing;
use crate::backend::records::{Deployment, DeploymentStatus, EnvState, TaskRun, Timestamp, new_id};
use crate::backend::{Backend, Prepare};
use crate::bundle::BuiltBundle;
use crate::error::CliError;
use crate::execute::{self, Execution, Session, TaskJob};
use crate::lock;
use crate::operation::Operation;
use crate::output::format_duration;
use crate::plan::{self, Decision, History, Plan};
use crate::project::Project;
use crate::report::outcome::TaskOutcome;
use crate::stop::StopReason;
use crate::task::Task;

/// Everything a deployment is made of, settled before the environment is touched.
pub struct Release<'a> {
    /// The environment's tasks, in project order.
    pub tasks: &'a [&'a Task],
    pub built: &'a [BuiltBundle],
    pub version: Version,
    /// Secret values by environment variable name.
    pub secrets: BTreeMap<String, String>,
    /// `--only`: when non-empty, the only tasks that may run.
    pub only: &'a [String],
    /// How many tasks may run at once.
    pub concurrency: usize,
}

/// How a deployment ended.
pub struct Deployed {
    pub report: DeployReport,
    /// Why it ended before its tasks did, if it did.
    pub stopped: Option<StopReason>,
}

impl Deployed {
    pub fn succeeded(&self) -> bool {
        self.report.status == Some(DeploymentStatus::Succeeded)
    }
}

impl Release<'_> {
    fn bundles(&self) -> BTreeMap<String, BundleHash> {
        self.built
            .iter()
            .map(|b| (b.task.clone(), b.sha256.clone()))
            .collect()
    }

    fn plan(&self, state: &EnvState) -> Plan {
        let history = History {
            previous_version: state.version.as_ref(),
            last_success: &state.last_success,
        };
        plan::plan(self.tasks, &self.bundles(), &history, self.only)
    }

    fn report(
        &self,
        project: &Project,
        env: &str,
        state: &EnvState,
        plan: &Plan,
        dry_run: bool,
    ) -> DeployReport {
        DeployReport {
            project: project.config.project_name.clone(),
            env: env.to_string(),
            provider: project.config.provider.as_str(),
            deployment_id: None,
            version: self.version.clone(),
            previous_version: state.version.clone(),
            is_first_deploy: plan.is_first_deploy,
            dry_run,
            status: None,
            duration_ms: None,
            tasks: Vec::new(),
            access: None,
        }
    }
}

/// What deploying `release` to `env` would do, and whether `standing`'s actor may. Read-only:
/// no lock, nothing uploaded, nothing recorded.
pub async fn dry_run(
    backend: &Backend,
    project: &Project,
    env: &str,
    release: &Release<'_>,
    standing: Standing,
) -> Result<DeployReport, CliError> {
    let state = backend.audit.env_state(env).await?;
    let plan = release.plan(&state);
    let mut report = release.report(project, env, &state, &plan, true);
    report.access = Some(standing);
    report.tasks = plan
        .tasks
        .iter()
        .map(|p| TaskLine::planned(p.task.clone(), &p.decision))
        .collect();
    Ok(report)
}

/// Deploys `release` to the operation's environment, waiting up to `wait` for its lock.
pub async fn deploy(
    op: &Operation,
    release: Release<'_>,
    wait: Duration,
) -> Result<Deployed, CliError> {
    // Refused before the lock when the actor lacks the environment's deploy role.
    crate::access::authorize_deploy(op).await?;
    let what = format!("deploy {}", release.version);
    lock::with_writer_lock(op, what, wait, async move || {
        deploy_locked(op, release).await
    })
    .await
}

/// The deployment proper, with the environment's writer lock held.
async fn deploy_locked(op: &Operation, release: Release<'_>) -> Result<Deployed, CliError> {
    let backend = &op.backend;
    let env = op.env.as_str();
    // Read under the lock: the state cannot move between planning and recording.
    let state = backend.audit.env_state(env).await?;
    let plan = release.plan(&state);
    let mut report = release.report(&op.project, env, &state, &plan, false);

    let uploaded = upload(op, release.built).await?;
    op.progress.detail(format!(
        "{uploaded} bundle(s) uploaded, {} already stored",
        release.built.len() - uploaded
    ));
    backend.executor.prepare(env, Prepare::Deploy).await?;

    let mut deployment = Deployment {
        id: new_id(),
        project: op.project_name().to_string(),
        env: env.to_string(),
        version: release.version.clone(),
        previous_version: state.version.clone(),
        is_first_deploy: plan.is_first_deploy,
        actor: op.actor.clone(),
        status: DeploymentStatus::Running,
        started_at: Timestamp::now(),
        ended_at: None,
        message: None,
        bundles: release.bundles(),
    };
    backend.audit.start_deployment(&deployment).await?;
    report.deployment_id = Some(deployment.id.clone());
    op.progress.deployment_started(&deployment);

    let jobs = jobs(&plan, release.tasks);
    let session = Session::of_deployment(op, &deployment, release.secrets);
    let execution = execute::run_plan(&session, &plan.tasks, &jobs, release.concurrency).await;

    let mut stopped = op.stop.reason();
    conclude(&mut deployment, &execution, stopped);
    let recorded = backend.audit.finish_deployment(&deployment).await;
    if let Some(e) = execution.backend_error {
        return Err(e.into());
    }
    if !recorded? {
        // The writer that took the environment over has recorded this deployment abandoned
        // (before our heartbeat noticed): the version did not move, and this deploy lost.
        deployment.status = DeploymentStatus::Abandoned;
        stopped = Some(StopReason::LockLost);
    }

    report.status = Some(deployment.status);
    report.duration_ms = deployment
        .ended_at
        .map(|e| (e.millis() - deployment.started_at.millis()).max(0) as u64);
    report.tasks = task_lines(&plan, &execution.runs);
    Ok(Deployed { report, stopped })
}

/// Ends `deployment`: how it went, from its runs and from why it was stopped, if it was.
fn conclude(deployment: &mut Deployment, execution: &Execution, stopped: Option<StopReason>) {
    let failed: Vec<&str> = execution
        .runs
        .values()
        .filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::TimedOut))
        .map(|r| r.task.as_str())
        .collect();
    deployment.ended_at = Some(Timestamp::now());
    deployment.status = match stopped {
        Some(StopReason::LockLost) => DeploymentStatus::Abandoned,
        Some(StopReason::Interrupted(_)) => DeploymentStatus::Failed,
        None if failed.is_empty() && execution.backend_error.is_none() => {
            DeploymentStatus::Succeeded
        }
        None => DeploymentStatus::Failed,
    };
    deployment.message = match (&execution.backend_error, stopped, failed.as_slice()) {
        (Some(e), _, _) => Some(format!("backend error: {e}")),
        (None, Some(stop), _) => Some(format!("stopped: {stop}")),
        (None, None, []) => None,
        (None, None, failed) => Some(format!("failed: {}", failed.join(", "))),
    };
}

/// Every task of the plan as the report shows it: its run, or why it did not run.
fn task_lines(plan: &Plan, runs: &BTreeMap<String, TaskRun>) -> Vec<TaskLine> {
    plan.tasks
        .iter()
        .map(|p| match runs.get(&p.task) {
            Some(run) => {
                let mut outcome = TaskOutcome::of_run(run);
                if run.status == RunStatus::Skipped {
                    // A task that never started took no time.
                    outcome.duration_ms = None;
                }
                TaskLine {
                    outcome,
                    reason: reason(&p.decision).to_string(),
                }
            }
            None => TaskLine::planned(p.task.clone(), &p.decision),
        })
        .collect()
}

/// Stores every bundle the backend does not have yet; returns how many were uploaded.
async fn upload(op: &Operation, built: &[BuiltBundle]) -> Result<usize, CliError> {
    let step = op
        .progress
        .step(format!("Storing {} bundle(s)", built.len()));
    let mut uploaded = 0;
    for bundle in built {
        if op.backend.bundles.put(bundle).await? {
            uploaded += 1;
        }
    }
    step.finish();
    Ok(uploaded)
}

fn jobs(plan: &Plan, tasks: &[&Task]) -> BTreeMap<String, TaskJob> {
    // By name: looking each planned task up in the list was quadratic (4 ms of a deploy of
    // 1,000 tasks, 0.4 s of one of 10,000).
    let tasks: BTreeMap<&str, &Task> = tasks.iter().map(|t| (t.name.as_str(), *t)).collect();
    plan.tasks
        .iter()
        .filter_map(|p| {
            let Decision::Run { trigger, .. } = &p.decision else {
                return None;
            };
            let task = tasks.get(p.task.as_str())?;
            Some((
                p.task.clone(),
                TaskJob {
                    task: (*task).clone(),
                    bundle: p.bundle.clone()?,
                    trigger: *trigger,
                    args: task.config.deploy_args(),
                    from_source: false,
                },
            ))
        })
        .collect()
}

fn reason(decision: &Decision) -> &str {
    match decision {
        Decision::Run { reason, .. } | Decision::Skip { reason } => reason,
    }
}

/// What `lumo deploy` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub project: String,
    pub env: String,
    pub provider: &'static str,
    pub deployment_id: Option<String>,
    pub version: Version,
    pub previous_version: Option<Version>,
    pub is_first_deploy: bool,
    pub dry_run: bool,
    /// `None` for a dry run.
    pub status: Option<DeploymentStatus>,
    pub duration_ms: Option<u64>,
    pub tasks: Vec<TaskLine>,
    /// A dry run's: whether the actor may deploy (and the error a deploy would stop with if
    /// not), and why; the same document as `lumo tasks --env --json`'s `access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Standing>,
}

/// One task of a deployment: its outcome, in the shape every report shows one, and why it ran
/// or did not.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLine {
    #[serde(flatten)]
    pub outcome: TaskOutcome,
    /// Why the task ran or did not.
    pub reason: String,
}

impl TaskLine {
    fn planned(task: String, decision: &Decision) -> TaskLine {
        let status = match decision {
            Decision::Run { .. } => "would_run",
            Decision::Skip { .. } => "not_run",
        };
        TaskLine {
            outcome: TaskOutcome::without_run(task, status),
            reason: reason(decision).to_string(),
        }
    }
}

impl fmt::Display for DeployReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_first_deploy {
            "first deploy".to_string()
        } else {
            format!(
                "update from {}",
                self.previous_version.as_ref().map_or("?", Version::as_str)
            )
        };
        match self.status {
            None => writeln!(
                f,
                "Dry run: {} to {} as {} ({kind})",
                self.project, self.env, self.version
            )?,
            Some(status) => writeln!(
                f,
                "Deployment {} of {} to {}: version {} ({kind}) {status} in {}",
                self.deployment_id.as_deref().unwrap_or("-"),
                self.project,
                self.env,
                self.version,
                format_duration(self.duration_ms.unwrap_or(0)),
            )?,
        }
        if let Some(standing) = &self.access {
            writeln!(f, "  {}", standing.who())?;
            let verdict = crate::access::verdict(
                &format!("deploying `{}`", self.env),
                &standing.rights.deploy,
            );
            if standing.may_deploy {
                writeln!(f, "  {verdict}; the tasks it runs are part of the deploy")?;
            } else {
                writeln!(f, "  {verdict}")?;
            }
        }
        let width = self
            .tasks
            .iter()
            .map(|t| t.outcome.task.len())
            .max()
            .unwrap_or(4);
        for line in &self.tasks {
            let t = &line.outcome;
            let detail = match (&t.message, t.status.as_str()) {
                (Some(m), s) if s != "would_run" && s != "not_run" && !m.is_empty() => m.clone(),
                _ => line.reason.clone(),
            };
            let duration = t.duration_ms.map(format_duration).unwrap_or_default();
            writeln!(
                f,
                "  {:<width$}  {:<10} {:>7}  {detail}",
                t.task, t.status, duration
            )?;
        }
        for t in self.tasks.iter().map(|l| &l.outcome).filter(|t| t.failed()) {
            if let (Some(id), Some(logs)) = (&t.run_id, t.logs_command()) {
                writeln!(
                    f,
                    "`{}` {} (run {id}); its full output: `{logs}`",
                    t.task, t.status
                )?;
            }
        }
        Ok(())
    }
}
