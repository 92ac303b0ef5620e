//! `lumo exec --env E [--in TASK] [--timeout D] -- CMD [ARG..]`: one command in an environment,
//! as its tasks run and recorded like them (see `exec.rs`). Here: the command line's checks,
//! the role check, and the confirmation naming the command and the environment.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use super::{CommandResult, Context, Outcome};
use crate::args::ExecArgs;
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
    confirm(&op, &run, args.yes)?;
    let ran = exec::run(&op, run, args.wait).await?;
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
/// needs `--yes`.
fn confirm(op: &Operation, run: &ExecRun<'_>, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let place = match run.in_task {
        Some(task) => format!("`{}`, in the bundle of task `{}`", op.env, task.name),
        None => format!("`{}`", op.env),
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::invalid(format!(
            "`lumo exec` asks for confirmation before it runs `{}` in {place}, and there is no terminal to ask on",
            run.shown()
        ))
        .hint("pass `--yes` to confirm"));
    }
    let mut stderr = std::io::stderr();
    let _ = write!(
        stderr,
        "Run `{}` in {place}? Type `yes` to continue: ",
        run.shown()
    );
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::invalid(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "not confirmed; `{}` was not run",
            run.shown()
        )))
    }
}
