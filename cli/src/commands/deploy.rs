//! `lumo deploy`: bundle every task of the environment, upload, and run the tasks this
//! deployment calls for (PRODUCT.md §5), recording the deployment and every run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use lumo_runner::contract::RunStatus;
use serde::Serialize;

use super::{CommandResult, Context};
use crate::args::DeployArgs;
use crate::backend::records::{Deployment, DeploymentStatus, EnvState, Timestamp, new_id};
use crate::backend::{Backend, Prepare};
use crate::bundle;
use crate::error::CliError;
use crate::execute::{self, Session, TaskJob, format_duration};
use crate::lock::WriterLock;
use crate::output::Style;
use crate::plan::{self, Decision, History, Plan};
use crate::project::Project;
use crate::stop::StopReason;
use crate::suggest;
use crate::task::Task;
use crate::version;

pub async fn run(args: DeployArgs, ctx: &Context) -> CommandResult {
    let printer = &ctx.printer;
    let project = ctx.project()?;
    let env = project.resolve_env(args.env.env.as_deref())?;
    let tasks: Vec<&Task> = project.tasks_in(&env).collect();
    check_only(&args.only, &tasks, &project, &env)?;
    if let Some(v) = &args.deploy_version {
        version::check(v)?;
    }
    let secrets = project.secret_values()?;
    // Before bundling: a provider that cannot be opened would waste the build.
    project.backend_ready()?;

    let spinner = printer.spinner(format!("Bundling {} task(s)", tasks.len()));
    // A dry run bundles too (`runOn: 'change'` needs the hashes), but leaves no trace.
    let scratch = if args.dry_run {
        Some(tempfile::tempdir().map_err(|e| {
            CliError::new(crate::error::ExitKind::Backend, e)
                .hint("a dry run bundles into a temporary directory; check TMPDIR")
        })?)
    } else {
        None
    };
    let bundles_dir = match &scratch {
        Some(dir) => dir.path().to_path_buf(),
        None => project.lumo_dir().join("bundles"),
    };
    let built = bundle::build_all(project.root(), &bundles_dir, &tasks, ctx.build(&project));
    spinner.finish();
    let built = built.map_err(|e| CliError::bundle(e, &project.config.path))?;
    crate::preflight::check(built.iter().map(|b| b.planned()), project.config.provider)?;
    let version = version::resolve(args.deploy_version.as_deref(), project.root(), &built);

    let backend = if args.dry_run {
        ctx.connect_read_only(&project).await?
    } else {
        ctx.connect(&project).await?
    };
    let inputs = Inputs {
        project: &project,
        env: &env,
        tasks: &tasks,
        built: &built,
        version,
        secrets,
    };
    if args.dry_run {
        // Read-only: no lock, nothing uploaded, nothing recorded.
        let state = backend.audit.env_state(&env).await?;
        let plan = inputs.plan(&state, &args.only);
        let mut report = inputs.report(&state, &plan, true);
        report.tasks = plan
            .tasks
            .iter()
            .map(|p| TaskLine::planned(p.task.clone(), &p.decision))
            .collect();
        printer.result(&report).map_err(output_error)?;
        return Ok(0);
    }

    let actor = ctx.actor(&project, &backend);
    // Refused before the lock when the plan would run a task above the actor's role.
    crate::access::check_deploy(&backend, &project, &env, &actor, |state| {
        inputs.plan(state, &args.only)
    })
    .await?;
    let lock = WriterLock::take(
        &backend,
        &project.config.project_name,
        &env,
        &actor,
        format!("deploy {}", inputs.version),
        args.wait,
        printer,
        &ctx.stop,
    )
    .await?;
    let result = deploy(&inputs, &backend, &actor, &args, ctx).await;
    lock.release().await;
    result
}

/// Everything a deployment is made of, settled before the environment is touched.
struct Inputs<'a> {
    project: &'a Project,
    env: &'a str,
    tasks: &'a [&'a Task],
    built: &'a [bundle::BuiltBundle],
    version: String,
    secrets: BTreeMap<String, String>,
}

impl Inputs<'_> {
    fn bundles(&self) -> BTreeMap<String, String> {
        self.built
            .iter()
            .map(|b| (b.task.clone(), b.sha256.clone()))
            .collect()
    }

    fn plan(&self, state: &EnvState, only: &[String]) -> Plan {
        let history = History {
            previous_version: state.version.as_deref(),
            last_success: &state.last_success,
        };
        plan::plan(self.tasks, &self.bundles(), &history, only)
    }

    fn report(&self, state: &EnvState, plan: &Plan, dry_run: bool) -> DeployReport {
        DeployReport {
            project: self.project.config.project_name.clone(),
            env: self.env.to_string(),
            provider: self.project.config.provider.as_str(),
            deployment_id: None,
            version: self.version.clone(),
            previous_version: state.version.clone(),
            is_first_deploy: plan.is_first_deploy,
            dry_run,
            status: None,
            duration_ms: None,
            tasks: Vec::new(),
        }
    }
}

/// The deployment proper, with the environment's writer lock held.
async fn deploy(
    inputs: &Inputs<'_>,
    backend: &Backend,
    actor: &str,
    args: &DeployArgs,
    ctx: &Context,
) -> CommandResult {
    let printer = &ctx.printer;
    let env = inputs.env;
    // Read under the lock: the state cannot move between planning and recording.
    let state = backend.audit.env_state(env).await?;
    let plan = inputs.plan(&state, &args.only);
    // Again under the lock: a deploy that landed meanwhile may have changed what runs (a first
    // deploy became an update).
    crate::access::check_plan(backend, inputs.project, env, actor, &plan).await?;
    let mut report = inputs.report(&state, &plan, false);

    let uploaded = upload(backend, inputs.built, ctx).await?;
    printer.note(format!(
        "{uploaded} bundle(s) uploaded, {} already stored",
        inputs.built.len() - uploaded
    ));
    backend.executor.prepare(env, Prepare::Deploy).await?;

    let mut deployment = Deployment {
        id: new_id(),
        project: inputs.project.config.project_name.clone(),
        env: env.to_string(),
        version: inputs.version.clone(),
        previous_version: state.version.clone(),
        is_first_deploy: plan.is_first_deploy,
        actor: actor.to_string(),
        status: DeploymentStatus::Running,
        started_at: Timestamp::now(),
        ended_at: None,
        message: None,
        bundles: inputs.bundles(),
    };
    backend.audit.start_deployment(&deployment).await?;
    report.deployment_id = Some(deployment.id.clone());
    printer.status(format!(
        "Deploying {} to {} as {} ({})",
        printer.paint_err(Style::Bold, &deployment.project),
        printer.paint_err(Style::Bold, env),
        printer.paint_err(Style::Bold, &inputs.version),
        match &state.version {
            None => "first deploy".to_string(),
            Some(v) => format!("update from {v}"),
        }
    ));

    let session = Session {
        backend: backend.clone(),
        printer: Arc::clone(printer),
        project: deployment.project.clone(),
        env: env.to_string(),
        actor: actor.to_string(),
        version: inputs.version.clone(),
        previous_version: state.version.clone(),
        is_first_deploy: plan.is_first_deploy,
        deployment_id: Some(deployment.id.clone()),
        secrets: Arc::new(inputs.secrets.clone()),
        stop: ctx.stop.clone(),
    };
    let jobs = jobs(&plan, inputs.tasks);
    let execution =
        execute::run_plan(&session, &plan.tasks, &jobs, usize::from(args.concurrency)).await;

    let failed: Vec<&str> = execution
        .runs
        .values()
        .filter(|r| matches!(r.status, RunStatus::Failed | RunStatus::TimedOut))
        .map(|r| r.task.as_str())
        .collect();
    let mut stopped = ctx.stop.reason();
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
    report.tasks = plan
        .tasks
        .iter()
        .map(|p| match execution.runs.get(&p.task) {
            Some(run) => TaskLine {
                task: p.task.clone(),
                status: run.status.as_str().to_string(),
                run_id: (run.status != RunStatus::Skipped).then(|| run.id.clone()),
                duration_ms: run.duration_ms.filter(|_| run.status != RunStatus::Skipped),
                message: run.message.clone(),
                reason: reason(&p.decision).to_string(),
                data: run.data.clone(),
            },
            None => TaskLine::planned(p.task.clone(), &p.decision),
        })
        .collect();
    printer.result(&report).map_err(output_error)?;
    if let Some(stop) = stopped {
        return Err(CliError::stopped(stop));
    }
    Ok(if deployment.status == DeploymentStatus::Succeeded {
        0
    } else {
        1
    })
}

/// Every `--only` name must be a task of this environment.
fn check_only(
    only: &[String],
    tasks: &[&Task],
    project: &crate::project::Project,
    env: &str,
) -> Result<(), CliError> {
    for name in only {
        if tasks.iter().any(|t| &t.name == name) {
            continue;
        }
        if project.tasks.iter().any(|t| &t.name == name) {
            return Err(CliError::invalid(format!(
                "`--only {name}`: task `{name}` does not exist in environment `{env}`"
            )));
        }
        return Err(CliError::invalid(format!(
            "`--only {name}`: unknown task{}",
            suggest::hint_suffix(name, tasks.iter().map(|t| t.name.as_str()))
        ))
        .hint("`lumo tasks` lists the project's tasks"));
    }
    Ok(())
}

async fn upload(
    backend: &Backend,
    built: &[bundle::BuiltBundle],
    ctx: &Context,
) -> Result<usize, CliError> {
    let spinner = ctx
        .printer
        .spinner(format!("Storing {} bundle(s)", built.len()));
    let mut uploaded = 0;
    for bundle in built {
        if backend.bundles.put(bundle).await? {
            uploaded += 1;
        }
    }
    spinner.finish();
    Ok(uploaded)
}

fn jobs(plan: &Plan, tasks: &[&Task]) -> BTreeMap<String, TaskJob> {
    plan.tasks
        .iter()
        .filter_map(|p| {
            let Decision::Run { trigger, .. } = &p.decision else {
                return None;
            };
            let task = tasks.iter().find(|t| t.name == p.task)?;
            Some((
                p.task.clone(),
                TaskJob {
                    task: (*task).clone(),
                    bundle: p.bundle.clone(),
                    trigger: *trigger,
                    args: task.config.deploy_args(),
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

fn output_error(e: std::io::Error) -> CliError {
    CliError::new(crate::error::ExitKind::Backend, e)
}

/// What `lumo deploy` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub project: String,
    pub env: String,
    pub provider: &'static str,
    pub deployment_id: Option<String>,
    pub version: String,
    pub previous_version: Option<String>,
    pub is_first_deploy: bool,
    pub dry_run: bool,
    /// `None` for a dry run.
    pub status: Option<DeploymentStatus>,
    pub duration_ms: Option<u64>,
    pub tasks: Vec<TaskLine>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLine {
    pub task: String,
    /// A run status, `would_run` (dry run) or `not_run`.
    pub status: String,
    pub run_id: Option<String>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
    /// Why the task ran or did not.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl TaskLine {
    fn planned(task: String, decision: &Decision) -> TaskLine {
        let status = match decision {
            Decision::Run { .. } => "would_run",
            Decision::Skip { .. } => "not_run",
        };
        TaskLine {
            task,
            status: status.to_string(),
            run_id: None,
            duration_ms: None,
            message: None,
            reason: reason(decision).to_string(),
            data: None,
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
                self.previous_version.as_deref().unwrap_or("?")
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
        let width = self.tasks.iter().map(|t| t.task.len()).max().unwrap_or(4);
        for t in &self.tasks {
            let detail = match (&t.message, t.status.as_str()) {
                (Some(m), s) if s != "would_run" && s != "not_run" && !m.is_empty() => m.clone(),
                _ => t.reason.clone(),
            };
            let duration = t.duration_ms.map(format_duration).unwrap_or_default();
            writeln!(
                f,
                "  {:<width$}  {:<10} {:>7}  {detail}",
                t.task, t.status, duration
            )?;
        }
        Ok(())
    }
}
