//! `lumo run TASK --env E`: run one task by hand from the environment's deployed bundle, with
//! `--arg`s checked against the task's `args`, confirmation when it asks for it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use lumo_runner::contract::{RunStatus, Trigger};
use serde::Serialize;

use super::{CommandResult, Context};
use crate::access;
use crate::args::RunArgs;
use crate::backend::Prepare;
use crate::backend::records::TaskRun;
use crate::config::TaskConfig;
use crate::error::CliError;
use crate::execute::{self, Session, TaskJob, format_duration};
use crate::lock::WriterLock;
use crate::project::Project;
use crate::suggest;
use crate::task::Task;

pub async fn run(args: RunArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let env = project.resolve_env(args.env.env.as_deref())?;
    let task = project.task_in(&args.task, &env)?;
    let task_args = parse_args(task, &args.args)?;
    let secrets = project.secret_values()?;

    let backend = ctx.connect(&project).await?;
    let actor = ctx.actor(&project, &backend);
    let project_name = &project.config.project_name;
    access::require(
        &backend,
        &project.config,
        &env,
        &actor,
        task.config.permission,
        &format!("task `{}`", task.name),
    )
    .await?;
    confirm(task, &env, args.yes)?;

    let lock = WriterLock::take(
        &backend,
        project_name,
        &env,
        &actor,
        format!("run {}", task.name),
        args.wait,
        &ctx.printer,
        &ctx.stop,
    )
    .await?;
    // Everything but the environment's version, which is read under the lock.
    let session = Session {
        backend: backend.clone(),
        printer: Arc::clone(&ctx.printer),
        project: project_name.clone(),
        env: env.clone(),
        actor,
        version: String::new(),
        previous_version: None,
        is_first_deploy: false,
        deployment_id: None,
        secrets: Arc::new(secrets),
        stop: ctx.stop.clone(),
    };
    let result = run_locked(session, &project, task, task_args, ctx).await;
    lock.release().await;
    result
}

/// The manual run proper, with the environment's writer lock held.
async fn run_locked(
    mut session: Session,
    project: &Project,
    task: &Task,
    args: BTreeMap<String, String>,
    ctx: &Context,
) -> CommandResult {
    let env = session.env.clone();
    let state = session.backend.audit.env_state(&env).await?;
    let (Some(version), Some(bundle)) = (state.version, state.bundles.get(&task.name).cloned())
    else {
        return Err(CliError::invalid(format!(
            "task `{}` has no deployed bundle in environment `{env}`",
            task.name
        ))
        .hint(format!("deploy it first: `lumo deploy --env {env}`")));
    };
    crate::preflight::check_stored(project, &task.name, &bundle)?;
    session.backend.executor.prepare(&env, Prepare::Run).await?;
    session.version = version;
    session.previous_version = state.previous_version;
    let job = TaskJob {
        task: task.clone(),
        bundle,
        trigger: Trigger::Manual,
        args,
    };
    let run = execute::run_task(&session, &job).await?;
    let run_status = run.status;
    let code = if run.status == RunStatus::Succeeded {
        0
    } else {
        1
    };
    ctx.printer
        .result(&RunReport(run))
        .map_err(|e| CliError::new(crate::error::ExitKind::Backend, e))?;
    // An abandoned run is one another writer took the environment from.
    let stopped = ctx.stop.reason().or_else(|| {
        (run_status == RunStatus::Abandoned).then_some(crate::stop::StopReason::LockLost)
    });
    if let Some(stop) = stopped {
        return Err(CliError::stopped(stop));
    }
    Ok(code)
}

/// `--arg K=V` checked against the task's `args`: known names only, each once, every required
/// one present, defaults filled in.
pub fn parse_args(task: &Task, raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let declared = &task.config.args;
    let mut values = BTreeMap::new();
    for item in raw {
        let Some((key, value)) = item.split_once('=') else {
            return Err(CliError::invalid(format!(
                "`--arg {item}`: expected `NAME=VALUE`"
            )));
        };
        if key.trim().is_empty() {
            return Err(CliError::invalid(format!(
                "`--arg {item}`: the argument's name is missing; the form is `--arg NAME=VALUE`"
            ))
            .hint(format!(
                "`lumo tasks` shows the args of task `{}`",
                task.name
            )));
        }
        if !declared.contains_key(key) {
            let known = if declared.is_empty() {
                format!("task `{}` declares no args", task.name)
            } else {
                format!(
                    "task `{}` declares {}",
                    task.name,
                    declared
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(CliError::invalid(format!(
                "`--arg {key}`: unknown argument; {known}{}",
                suggest::hint_suffix(key, declared.keys().map(String::as_str))
            )));
        }
        if values.insert(key.to_string(), value.to_string()).is_some() {
            return Err(CliError::invalid(format!(
                "`--arg {key}` is given more than once"
            )));
        }
    }
    let mut missing = Vec::new();
    for (name, def) in declared {
        if values.contains_key(name) {
            continue;
        }
        match &def.default {
            Some(default) => {
                values.insert(name.clone(), default.clone());
            }
            None if def.required => missing.push(match &def.description {
                Some(d) => format!("`{name}` ({d})"),
                None => format!("`{name}`"),
            }),
            None => {}
        }
    }
    if !missing.is_empty() {
        let first = declared
            .keys()
            .find(|k| missing[0].starts_with(&format!("`{k}`")))
            .cloned()
            .unwrap_or_default();
        return Err(CliError::invalid(format!(
            "task `{}` needs the required argument(s) {}",
            task.name,
            missing.join(", ")
        ))
        .hint(format!("pass `--arg {first}=VALUE`")));
    }
    Ok(values)
}

/// A task with `confirm` asks on a terminal and needs `--yes` anywhere else.
fn confirm(task: &Task, env: &str, yes: bool) -> Result<(), CliError> {
    let TaskConfig {
        confirm: Some(text),
        ..
    } = &task.config
    else {
        return Ok(());
    };
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::invalid(format!(
            "task `{}` asks for confirmation (\"{text}\") and there is no terminal to ask on",
            task.name
        ))
        .hint("pass `--yes` to confirm"));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(
        stderr,
        "{text}\nRun `{}` in `{env}`? Type `yes` to continue: ",
        task.name
    );
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::invalid(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "yes" | "y" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "not confirmed; task `{}` was not run",
            task.name
        )))
    }
}

/// What `lumo run` prints: the run's record.
#[derive(Serialize)]
#[serde(transparent)]
pub struct RunReport(pub TaskRun);

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "Run {} of {} in {}: {} in {}",
            r.id,
            r.task,
            r.env,
            r.status,
            format_duration(r.duration_ms.unwrap_or(0))
        )?;
        if let Some(m) = r.message.as_deref().filter(|m| !m.is_empty()) {
            writeln!(f, "  message: {m}")?;
        }
        if let Some(code) = r.exit_code {
            writeln!(f, "  exit code: {code}")?;
        }
        if let Some(data) = &r.data {
            writeln!(f, "  data: {data}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArgDef;
    use crate::task::TaskSource;

    fn task() -> Task {
        let mut config = TaskConfig::default();
        config.args.insert(
            "target".into(),
            ArgDef {
                description: Some("the table".into()),
                required: true,
                default: None,
            },
        );
        config.args.insert(
            "mode".into(),
            ArgDef {
                description: None,
                required: false,
                default: Some("fast".into()),
            },
        );
        Task {
            name: "purge".into(),
            source: TaskSource::Command {
                command: "true".into(),
            },
            config,
            declared: true,
            display_path: "tasks.purge.command".into(),
        }
    }

    #[test]
    fn args_are_checked_and_defaulted() {
        let t = task();
        let ok = parse_args(&t, &["target=users".into()]).unwrap();
        assert_eq!(ok["target"], "users");
        assert_eq!(ok["mode"], "fast");

        let missing = parse_args(&t, &[]).unwrap_err();
        assert!(
            missing.to_string().contains("`target` (the table)"),
            "{missing}"
        );
        assert_eq!(missing.hint.as_deref(), Some("pass `--arg target=VALUE`"));

        let unknown = parse_args(&t, &["targt=x".into()]).unwrap_err();
        assert!(
            unknown.to_string().contains("did you mean `target`"),
            "{unknown}"
        );
        assert!(parse_args(&t, &["target".into()]).is_err());
        assert!(parse_args(&t, &["target=a".into(), "target=b".into()]).is_err());
    }
}
