//! Running tasks and recording them: one attempt at a time through the backend's executor,
//! every attempt recorded `running` before it starts and updated when it ends (PRODUCT.md §5,
//! §6). Shared by `lumo deploy` (many tasks, maybe side by side), `lumo run` (one task) and
//! `lumo exec` (one command, [`run_command`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lumo_runner::contract::{DeploymentInfo, RunStatus, TaskContext, Trigger};
use lumo_runner::{BundleHash, TaskSpec, Version};
use tokio::task::JoinSet;

use crate::backend::records::{
    Deployment, RunKind, TaskRun, Timestamp, masked_args, masked_argv, new_run_id,
};
use crate::backend::{BackendError, RunRequest};
use crate::operation::Operation;
use crate::plan::PlannedTask;
use crate::stop::StopReason;
use crate::task::Task;

/// What every run of one deploy or manual run shares: the operation, where the runs sit in the
/// environment's history, and the secrets they get.
#[derive(Clone)]
pub struct Session {
    pub operation: Operation,
    /// The version the runs belong to and the one before, as each task is told.
    pub deployment: DeploymentInfo,
    /// The same two as the runs record them; `version` is `None` only for an `exec` in an
    /// environment never deployed.
    version: Option<Version>,
    previous_version: Option<Version>,
    /// The deployment the runs are part of; `None` for a manual run.
    pub deployment_id: Option<String>,
    /// Secret values by environment variable name.
    pub secrets: Arc<BTreeMap<String, String>>,
}

impl Session {
    /// The runs of `deployment`, recorded as part of it.
    pub fn of_deployment(
        operation: &Operation,
        deployment: &Deployment,
        secrets: BTreeMap<String, String>,
    ) -> Session {
        Session {
            operation: operation.clone(),
            deployment: DeploymentInfo {
                is_first_deploy: deployment.is_first_deploy,
                previous_version: deployment.previous_version.as_ref().map(Version::to_string),
                environment: operation.env.clone(),
                version: deployment.version.to_string(),
            },
            version: Some(deployment.version.clone()),
            previous_version: deployment.previous_version.clone(),
            deployment_id: Some(deployment.id.clone()),
            secrets: Arc::new(secrets),
        }
    }

    /// A run by hand of the environment's deployed `version` (which followed
    /// `previous_version`); `None` only for an `exec` in an environment never deployed, whose
    /// command is told the version `""`.
    pub fn of_manual_run(
        operation: &Operation,
        version: Option<Version>,
        previous_version: Option<Version>,
        secrets: BTreeMap<String, String>,
    ) -> Session {
        Session {
            operation: operation.clone(),
            deployment: DeploymentInfo {
                is_first_deploy: false,
                previous_version: previous_version.as_ref().map(Version::to_string),
                environment: operation.env.clone(),
                version: version.as_ref().map(Version::to_string).unwrap_or_default(),
            },
            version,
            previous_version,
            deployment_id: None,
            secrets: Arc::new(secrets),
        }
    }

    /// A new record of `job` in this session, started now.
    fn record(&self, job: &TaskJob, attempt: u32, status: RunStatus) -> TaskRun {
        TaskRun {
            args: masked_args(&job.args, self.secrets.values()),
            from_source: job.from_source,
            ..self.record_of(
                &job.task.name,
                Some(&job.bundle),
                job.trigger,
                attempt,
                status,
            )
        }
    }

    /// A new record of a run of `task` from `bundle` in this session, started now, with no
    /// arguments.
    fn record_of(
        &self,
        task: &str,
        bundle: Option<&BundleHash>,
        trigger: Trigger,
        attempt: u32,
        status: RunStatus,
    ) -> TaskRun {
        TaskRun {
            id: new_run_id(),
            deployment_id: self.deployment_id.clone(),
            project: self.operation.project_name().to_string(),
            env: self.operation.env.clone(),
            task: task.to_string(),
            trigger,
            version: self.version.clone(),
            previous_version: self.previous_version.clone(),
            bundle_hash: bundle.cloned(),
            actor: self.operation.actor.clone(),
            status,
            attempt,
            started_at: Timestamp::now(),
            ended_at: None,
            duration_ms: None,
            exit_code: None,
            message: None,
            data: None,
            data_ref: None,
            log_ref: None,
            output_tail: None,
            output_bytes: 0,
            kind: RunKind::Task,
            args: BTreeMap::new(),
            from_source: false,
            command: None,
        }
    }
}

/// A command to run in the environment (`lumo exec`), with everything needed to run it.
#[derive(Clone)]
pub struct CommandJob {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The task whose bundle it runs in (its `env` and `config` too); `None`: an empty
    /// directory.
    pub in_task: Option<Task>,
    /// That task's deployed bundle.
    pub bundle: Option<BundleHash>,
    pub timeout: Duration,
}

/// Runs a command once (never retried) and returns its record: kind `exec`, the command line
/// masked, `task` the task whose bundle it ran in (empty when none). `Err` only when the
/// backend failed, as for [`run_task`].
pub async fn run_command(session: &Session, job: &CommandJob) -> Result<TaskRun, BackendError> {
    let run = TaskRun {
        kind: RunKind::Exec,
        command: Some(masked_argv(&job.argv, session.secrets.values())),
        ..session.record_of(
            job.in_task.as_ref().map_or("", |t| t.name.as_str()),
            job.bundle.as_ref(),
            Trigger::Manual,
            1,
            RunStatus::Running,
        )
    };
    let (config, env) = match &job.in_task {
        Some(task) => (task.config.config.clone(), task.config.env.clone()),
        None => (serde_json::json!({}), BTreeMap::new()),
    };
    let spec = TaskSpec {
        context: session.context(&run, config, BTreeMap::new()),
        timeout: job.timeout,
        env,
        secrets: (*session.secrets).clone(),
        argv: Some(job.argv.clone()),
    };
    let bundle = job.bundle.clone();
    let ended = run_recorded(session, run, false, spec, bundle, "exec").await?;
    ended.record(session, None).await
}

/// One task to run, with everything needed to run it without the project at hand.
#[derive(Clone)]
pub struct TaskJob {
    pub task: Task,
    pub bundle: BundleHash,
    pub trigger: Trigger,
    pub args: BTreeMap<String, String>,
    /// `bundle` was built from the working tree (`lumo run --from-source`), not deployed.
    pub from_source: bool,
}

/// Runs a task, retrying as its `retries` allows, and returns the last attempt's record.
/// `Err` only when the backend failed; the run is then recorded `failed` if at all possible.
pub async fn run_task(session: &Session, job: &TaskJob) -> Result<TaskRun, BackendError> {
    run_attempts(session, job, None)
        .await?
        .record(session, None)
        .await
}

/// A run that has ended, its end maybe not recorded yet: [`Ended::record`] records it (alone,
/// or with the start of the run that follows it at once, as a deploy does: one write a run
/// boundary instead of two) and only then reports it. Its outcome is never shown before it
/// is recorded.
#[must_use]
pub struct Ended {
    run: TaskRun,
    /// Its end is recorded already (an attempt stopped while waiting to be retried).
    recorded: bool,
}

impl Ended {
    pub fn status(&self) -> RunStatus {
        self.run.status
    }

    /// Records the end (unless it is), and `next`'s start with it in one write where the store
    /// can, then reports the end. `Err` when the store failed; `next` is then not recorded
    /// as started.
    async fn record(
        self,
        session: &Session,
        next: Option<&TaskRun>,
    ) -> Result<TaskRun, BackendError> {
        let op = &session.operation;
        let Ended { mut run, recorded } = self;
        if recorded {
            if let Some(next) = next {
                op.backend.audit.start_run(next).await?;
            }
            return Ok(run);
        }
        let written = match next {
            Some(next) => op.backend.audit.finish_run_and_start(&run, next).await?,
            None => op.backend.audit.finish_run(&run).await?,
        };
        if !written {
            // Another writer took over and marked the run abandoned first: its record stands.
            run.status = RunStatus::Abandoned;
            run.message = Some(format!(
                "abandoned: the lock of `{}` was taken over before the run ended",
                op.env
            ));
        }
        op.progress.run_finished(&run);
        Ok(run)
    }
}

/// [`run_task`] without recording the last attempt's end. `first` is the first attempt's
/// record when its start is recorded already.
async fn run_attempts(
    session: &Session,
    job: &TaskJob,
    mut first: Option<TaskRun>,
) -> Result<Ended, BackendError> {
    let attempts = job.task.config.retries + 1;
    let mut attempt = 1;
    loop {
        let ended = run_once(session, job, attempt, first.take()).await?;
        let retry = matches!(ended.status(), RunStatus::Failed | RunStatus::TimedOut)
            && attempt < attempts
            && session.operation.stop.reason().is_none();
        if !retry {
            return Ok(ended);
        }
        let run = ended.record(session, None).await?;
        let backoff = backoff(attempt);
        session
            .operation
            .progress
            .run_retrying(&run, attempts, backoff);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = session.operation.stop.stopped() => return Ok(Ended { run, recorded: true }),
        }
        attempt += 1;
    }
}

/// 1 s, 2 s, 4 s, … capped at 30 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << (attempt - 1).min(5)).min(30))
}

/// One attempt; `started` is its record when its start is recorded already.
async fn run_once(
    session: &Session,
    job: &TaskJob,
    attempt: u32,
    started: Option<TaskRun>,
) -> Result<Ended, BackendError> {
    let task = &job.task;
    let recorded = started.is_some();
    let run = started.unwrap_or_else(|| session.record(job, attempt, RunStatus::Running));
    let spec = TaskSpec {
        context: session.context(&run, task.config.config.clone(), job.args.clone()),
        timeout: Duration::from_secs(task.config.timeout.into()),
        env: task.config.env.clone(),
        secrets: (*session.secrets).clone(),
        argv: None,
    };
    let bundle = job.bundle.clone();
    run_recorded(session, run, recorded, spec, Some(bundle), &task.name).await
}

impl Session {
    /// What `run`'s process is told about itself.
    fn context(
        &self,
        run: &TaskRun,
        config: serde_json::Value,
        args: BTreeMap<String, String>,
    ) -> TaskContext {
        TaskContext {
            deployment: self.deployment.clone(),
            config,
            args,
            // The executor fills this in once the bundle is unpacked.
            working_directory: String::new(),
            task: run.task.clone(),
            run_id: run.id.to_string(),
            trigger: run.trigger,
        }
    }
}

/// Records `run` as started (unless `start_recorded`), runs `spec` (from `bundle`, when it has
/// one) through the backend's executor with its output shown under `label`, and hands back
/// how it ended, to be recorded ([`Ended::record`]).
async fn run_recorded(
    session: &Session,
    mut run: TaskRun,
    start_recorded: bool,
    spec: TaskSpec,
    bundle: Option<BundleHash>,
    label: &str,
) -> Result<Ended, BackendError> {
    let op = &session.operation;
    if !start_recorded {
        op.backend.audit.start_run(&run).await?;
    }
    op.progress.run_started(&run);
    let mut output = op.progress.run_output(label);
    let request = RunRequest {
        bundle,
        spec,
        stop: op.stop.clone(),
    };
    let result = op.backend.executor.run(request, output.as_mut()).await;
    // The observer shows what it still holds of an unterminated last line when dropped.
    drop(output);
    match result {
        Ok(report) => {
            report.record_on(&mut run);
            run.message = run.message.take().map(cap_message);
        }
        Err(e) => {
            // Record what we know before giving up: the run did not happen as asked.
            run.status = RunStatus::Failed;
            run.message = Some(format!("backend error: {e}"));
            run.ended_at = Some(Timestamp::now());
            run.duration_ms = Some(duration_ms(&run));
            let _ = op.backend.audit.finish_run(&run).await;
            return Err(e);
        }
    }
    if op.stop.reason() == Some(StopReason::LockLost) {
        // The writer that took the environment over marks this run abandoned; say the same.
        run.status = RunStatus::Abandoned;
    }
    run.duration_ms = Some(duration_ms(&run));
    Ok(Ended {
        run,
        recorded: false,
    })
}

/// Messages are for reading at a glance; records stay small on every store (DynamoDB: 400 KB
/// an item). The full story is in the log.
const MAX_MESSAGE_CHARS: usize = 4000;

fn cap_message(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

fn duration_ms(run: &TaskRun) -> u64 {
    run.ended_at.map_or(0, |end| {
        (end.millis() - run.started_at.millis()).max(0) as u64
    })
}

/// Files a run whose end is recorded among `runs`. A success another writer marked abandoned
/// while it was recorded is no success: the tasks after it do not start.
fn settle(
    runs: &mut BTreeMap<String, TaskRun>,
    succeeded: &mut BTreeSet<String>,
    failed_task: &mut Option<String>,
    run: TaskRun,
) {
    if run.status != RunStatus::Succeeded && succeeded.remove(&run.task) {
        failed_task.get_or_insert_with(|| run.task.clone());
    }
    runs.insert(run.task.clone(), run);
}

/// What happened to each task a deployment meant to run.
pub struct Execution {
    /// Finished runs and skipped records, by task.
    pub runs: BTreeMap<String, TaskRun>,
    /// The first backend failure, after which nothing more was started.
    pub backend_error: Option<BackendError>,
}

/// Runs the plan's tasks: each after the tasks in its `after`, up to `concurrency` at once, in
/// plan order. After a failure nothing new starts; tasks not started are recorded `skipped`.
///
/// A run's end is recorded together with the start of the run that follows it, when one
/// does at once ([`Ended::record`]): each run is still recorded `running` before its task
/// starts, and its outcome recorded before it is reported.
pub async fn run_plan(
    session: &Session,
    plan: &[PlannedTask],
    jobs: &BTreeMap<String, TaskJob>,
    concurrency: usize,
) -> Execution {
    let mut waiting: Vec<&PlannedTask> = plan.iter().filter(|p| p.runs()).collect();
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    let mut runs = BTreeMap::new();
    let mut failed_task: Option<String> = None;
    let mut backend_error: Option<BackendError> = None;
    let mut running: JoinSet<(String, Result<Ended, BackendError>)> = JoinSet::new();
    // The run that just ended, its end not recorded yet.
    let mut ended: Option<Ended> = None;

    session.operation.progress.runs_planned(waiting.len());
    let stop = &session.operation.stop;
    loop {
        if failed_task.is_none() && backend_error.is_none() && stop.reason().is_none() {
            let mut i = 0;
            while i < waiting.len() && running.len() < concurrency {
                if !waiting[i].after.iter().all(|d| succeeded.contains(d)) {
                    i += 1;
                    continue;
                }
                let Some(job) = jobs.get(&waiting[i].task).cloned() else {
                    waiting.remove(i);
                    continue;
                };
                // The first run to start records the end of the one before with its start.
                let first = match ended.take() {
                    Some(before) => {
                        let first = session.record(&job, 1, RunStatus::Running);
                        let task = before.run.task.clone();
                        match before.record(session, Some(&first)).await {
                            Ok(run) => {
                                settle(&mut runs, &mut succeeded, &mut failed_task, run);
                                Some(first)
                            }
                            Err(e) => {
                                // Not started: the task stays waiting, to be recorded skipped.
                                failed_task.get_or_insert(task);
                                backend_error.get_or_insert(e);
                                break;
                            }
                        }
                    }
                    None => None,
                };
                waiting.remove(i);
                let session = session.clone();
                // Boxed: the run's future is large, and tokio moves an unboxed one into its
                // task's cell by copying it, twice a task.
                running.spawn(Box::pin(async move {
                    let result = run_attempts(&session, &job, first).await;
                    (job.task.name, result)
                }));
            }
        }
        if let Some(before) = ended.take() {
            let task = before.run.task.clone();
            match before.record(session, None).await {
                Ok(run) => settle(&mut runs, &mut succeeded, &mut failed_task, run),
                Err(e) => {
                    failed_task.get_or_insert(task);
                    backend_error.get_or_insert(e);
                }
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok((task, Ok(run))) => {
                if run.status() == RunStatus::Succeeded {
                    succeeded.insert(task);
                } else if failed_task.is_none() {
                    failed_task = Some(task);
                }
                ended = Some(run);
            }
            Ok((task, Err(e))) => {
                failed_task.get_or_insert(task);
                backend_error.get_or_insert(e);
            }
            Err(join_error) => {
                backend_error.get_or_insert(BackendError::new(format!(
                    "a task runner crashed: {join_error}"
                )));
            }
        }
    }

    let reason = match (&failed_task, &backend_error, stop.reason()) {
        (_, Some(_), _) => "not started: backend error".to_string(),
        (_, None, Some(stop)) => format!("not started: {stop}"),
        (Some(t), None, None) => format!("not started: `{t}` did not succeed"),
        (None, None, None) => "not started".to_string(),
    };
    for planned in waiting {
        let Some(job) = jobs.get(&planned.task) else {
            continue;
        };
        let mut run = session.record(job, 0, RunStatus::Skipped);
        run.ended_at = Some(run.started_at);
        run.duration_ms = Some(0);
        run.message = Some(reason.clone());
        if let Err(e) = session.operation.backend.audit.start_run(&run).await {
            backend_error.get_or_insert(e);
        }
        runs.insert(planned.task.clone(), run);
    }
    Execution {
        runs,
        backend_error,
    }
}
