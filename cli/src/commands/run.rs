//! `lumo run TASK --env E`: run one task by hand from the environment's deployed bundle, with
//! `--arg`s checked against the task's `args`, confirmation when it asks for it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use super::{CommandResult, Context, Outcome};
use crate::args::RunArgs;
use crate::config::TaskConfig;
use crate::error::CliError;
use crate::manual_run::{self, ManualRun};
use crate::suggest;
use crate::task::Task;

pub async fn run(args: RunArgs, ctx: &Context) -> CommandResult {
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    let task = project.task_in(&args.task, &env)?;
    let task_args = parse_args(task, &args.args)?;
    let secrets = project.secret_values()?;

    let op = ctx.operation(&project, &env).await?;
    manual_run::authorize(&op, task).await?;
    confirm(task, &env, args.yes)?;
    let run = ManualRun {
        task,
        args: task_args,
        secrets,
    };
    let ran = manual_run::run(&op, run, args.wait).await?;
    let succeeded = ran.succeeded();
    Ok(Outcome::report(ran.report).ended(succeeded, ran.stopped))
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
