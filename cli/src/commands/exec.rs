//! `lumo exec --env E [--in TASK] [--timeout D] -- CMD [ARG..]`: one command in an environment,
//! as its tasks run and recorded like them (see `exec.rs`). Here: the command line's checks,
//! the role check, and the confirmation naming the command and the environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{CommandResult, Context, Outcome};
use crate::args::ExecArgs;
use crate::confirm::{Confirmation, Subject};
use crate::error::CliError;
use crate::exec::{self, ExecRun};
use crate::operation::Operation;

pub async fn run(args: ExecArgs, ctx: &Context) -> CommandResult {
    if args.command.is_empty() {
        return Err(CliError::invalid(
            "`lumo exec` needs a command to run, after `--`",
        )
        .hint("for example `lumo exec --env dev -- psql -c 'select 1'`, or `-- sh -c '…'` for a shell line"));
    }
    let timeout = exec::check_timeout(args.timeout)?;
    if let Some(path) = &args.junit {
        crate::report::check_junit_path(path)?;
    }
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    let in_task = match &args.in_task {
        Some(name) => Some(known_task(&project, name, &env)?),
        None => None,
    };
    let secrets = project.secret_values()?;

    let op = ctx.operation(&project, &env).await?;
    exec::authorize(&op).await?;
    if let Some(task) = in_task {
        // Said before anyone is asked to confirm; checked again under the lock.
        let state = op.backend.audit.env_state(&env).await?;
        exec::deployed_bundle(&op, &state, task)?;
    }
    let run = ExecRun {
        argv: args.command,
        in_task,
        timeout,
        secrets,
    };
    confirm(&op, &run, args.yes).await?;
    let ran = exec::run(&op, run, args.wait).await?;
    let subject = crate::report::Subject::exec(&ran.report.0);
    crate::report::publish(&ctx.printer, args.junit.as_deref(), &subject);
    let succeeded = ran.succeeded();
    Ok(Outcome::report(ran.report).ended(succeeded, ran.stopped))
}

/// The task `--in` names, which must exist in `env`; exit 2 naming it and the known ones.
fn known_task<'a>(
    project: &'a crate::project::Project,
    name: &str,
    env: &str,
) -> Result<&'a crate::task::Task, CliError> {
    project.task_in(name, env).map_err(|e| {
        let known = project
            .tasks_in(env)
            .map(|t| format!("`{}`", t.name))
            .collect::<Vec<_>>();
        let known = if known.is_empty() {
            format!("the project has no tasks in `{env}`")
        } else {
            format!("the tasks of `{env}` are {}", known.join(", "))
        };
        CliError::invalid(format!("`--in {name}`: {e}; {known}"))
    })
}

/// Every command asks, naming itself and the environment, on a terminal; anywhere else it
/// needs `--yes` (the same confirmation as a task's, [`crate::confirm`]).
async fn confirm(op: &Operation, run: &ExecRun<'_>, yes: bool) -> Result<(), CliError> {
    let line = match run.in_task {
        Some(task) => format!("{} (in the bundle of task `{}`)", run.shown(), task.name),
        None => run.shown(),
    };
    let confirmation = Confirmation {
        subject: Subject::Command { line: &line },
        env: &op.env,
        args: &BTreeMap::new(),
        rule: crate::access::confirm_rule(&op.project.config, &op.env),
    };
    crate::confirm::confirm(op, &confirmation, yes).await
}
