//! `lumo run TASK --env E`: run one task by hand from the environment's deployed bundle, with
//! `--arg`s checked against the task's `args`, confirmation when it asks for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{CommandResult, Context, Outcome};
use crate::args::RunArgs;
use crate::backend::records::masked_args;
use crate::config::{ArgDef, ArgType};
use crate::confirm::{Confirmation, Subject, confirm};
use crate::error::CliError;
use crate::manual_run::{self, ManualRun};
use crate::suggest;
use crate::task::Task;
use crate::working_copy;

pub async fn run(args: RunArgs, ctx: &Context) -> CommandResult {
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    let task = project.task_in(&args.task, &env)?;
    let scope = ArgScope {
        env: &env,
        environments: project.config.environments.as_deref(),
    };
    let task_args = parse_args(task, &args.args, &scope)?;
    if let Some(path) = &args.junit {
        crate::report::check_junit_path(path)?;
    }
    let secrets = project.secret_values()?;
    if args.dry_run {
        let backend = ctx.connect_read_only(&project).await?;
        let actor = ctx.actor(&project, &backend);
        let shown = masked_args(&task_args, secrets.values());
        let preview = crate::run_preview::preview(
            &backend,
            &project,
            &env,
            task,
            &actor,
            shown,
            args.from_source,
        )
        .await?;
        return Ok(Outcome::report(preview));
    }

    let working_copy = if args.from_source {
        ctx.backend_ready(&project).await?;
        let dir = project.lumo_dir().join("bundles");
        Some(working_copy::build(
            &project,
            task,
            ctx.build(&project),
            &dir,
        )?)
    } else {
        None
    };

    let op = ctx.operation(&project, &env).await?;
    manual_run::authorize(&op, task).await?;
    if working_copy.is_none()
        && let Some(drift) = working_copy::drift(&op, task, ctx.build(&project)).await
    {
        ctx.printer.warn(drift);
    }
    if let Some(warning) = &task.config.confirm {
        let shown = masked_args(&task_args, secrets.values());
        let confirmation = Confirmation {
            subject: Subject::Task {
                name: &task.name,
                warning: Some(warning),
            },
            env: &env,
            args: &shown,
            rule: crate::access::confirm_rule(&project.config, &env),
        };
        confirm(&op, &confirmation, args.yes).await?;
    }
    let run = ManualRun {
        task,
        args: task_args,
        secrets,
        working_copy,
    };
    let ran = manual_run::run(&op, run, args.wait).await?;
    let subject = crate::report::Subject::manual_run(&ran.report.0);
    crate::report::publish(&ctx.printer, args.junit.as_deref(), &subject);
    let succeeded = ran.succeeded();
    Ok(Outcome::report(ran.report).ended(succeeded, ran.stopped))
}

/// Where a manual run's arguments are judged: an `environment` argument names another
/// environment of the project than the run's.
pub struct ArgScope<'a> {
    /// The environment the task runs in.
    pub env: &'a str,
    /// The config's `environments`, when declared.
    pub environments: Option<&'a [String]>,
}

/// `--arg K=V` checked against the task's `args`: known names only (matched without regard to
/// case), each once, every required one present and not blank, every value of its type and
/// among its `choices`, defaults filled in. An error says what is allowed.
pub fn parse_args(
    task: &Task,
    raw: &[String],
    scope: &ArgScope<'_>,
) -> Result<BTreeMap<String, String>, CliError> {
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
        // Names are matched without regard to case: the task sees `LUMO_ARG_<NAME>` either way,
        // and the config refuses two names that differ only in case.
        let Some((name, def)) = declared.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)) else {
            let known = if declared.is_empty() {
                format!("task `{}` declares no args", task.name)
            } else {
                format!(
                    "task `{}` declares {}",
                    task.name,
                    crate::quoted::list(declared.keys())
                )
            };
            return Err(CliError::invalid(format!(
                "`--arg {key}`: unknown argument; {known}{}",
                suggest::hint_suffix(key, declared.keys().map(String::as_str))
            )));
        };
        if values.contains_key(name) {
            return Err(CliError::invalid(format!(
                "`--arg {key}` is given more than once{}",
                if key == name {
                    String::new()
                } else {
                    format!(" (as argument `{name}`)")
                }
            )));
        }
        check_value(name, def, value, scope)
            .map_err(|wrong| CliError::invalid(format!("`--arg {key}={value}`: {wrong}")))?;
        values.insert(name.clone(), value.to_string());
    }
    let mut missing = Vec::new();
    for (name, def) in declared {
        if values.contains_key(name) {
            continue;
        }
        match &def.default {
            Some(default) => {
                // The config checked the default's type and choices when it loaded; which
                // environment the run is in is known only now.
                check_value(name, def, default, scope).map_err(|wrong| {
                    CliError::invalid(format!(
                        "argument `{name}` of task `{}` defaults to `{default}`: {wrong}",
                        task.name
                    ))
                    .hint(format!("pass `--arg {name}=VALUE`"))
                })?;
                values.insert(name.clone(), default.clone());
            }
            None if def.required => missing.push((name, def)),
            None => {}
        }
    }
    if let Some((first, _)) = missing.first() {
        let listed = missing
            .iter()
            .map(|(name, def)| {
                let mut about: Vec<String> = def.description.iter().cloned().collect();
                if def.kind != ArgType::String || def.choices.is_some() {
                    about.push(allowed(def, scope));
                }
                if about.is_empty() {
                    format!("`{name}`")
                } else {
                    format!("`{name}` ({})", about.join("; "))
                }
            })
            .collect::<Vec<_>>();
        return Err(CliError::invalid(format!(
            "task `{}` needs the required argument(s) {}",
            task.name,
            listed.join(", ")
        ))
        .hint(format!("pass `--arg {first}=VALUE`")));
    }
    Ok(values)
}

/// Whether `value` may be argument `name`'s; the error says what it takes.
fn check_value(name: &str, def: &ArgDef, value: &str, scope: &ArgScope<'_>) -> Result<(), String> {
    let plain_text = def.kind == ArgType::String && def.choices.is_none();
    if value.trim().is_empty() && def.required {
        return Err(if plain_text {
            format!("`{name}` is required and must not be blank")
        } else {
            format!(
                "`{name}` is required and must not be blank; it takes {}",
                allowed(def, scope)
            )
        });
    }
    let of_type = match (def.kind, scope.environments) {
        (ArgType::Environment, Some(known)) => known.iter().any(|e| e == value),
        (kind, _) => kind.admits(value),
    };
    let here = def.kind == ArgType::Environment && value == scope.env;
    let chosen = def
        .choices
        .as_ref()
        .is_none_or(|choices| choices.iter().any(|c| c == value));
    if of_type && !here && chosen {
        return Ok(());
    }
    let note = if here {
        format!(" (`{value}` is the environment the task runs in)")
    } else {
        String::new()
    };
    let close_to = match (&def.choices, def.kind) {
        (Some(choices), _) => choices.clone(),
        (None, ArgType::Environment) => other_environments(scope),
        (None, _) => Vec::new(),
    };
    let hint = if here {
        String::new()
    } else {
        suggest::hint_suffix(value, close_to.iter().map(String::as_str))
    };
    Err(format!(
        "`{name}` takes {}{note}{hint}",
        allowed(def, scope)
    ))
}

/// What argument `def` takes, for errors: its choices, else its type (for an `environment`,
/// the environments it may name).
fn allowed(def: &ArgDef, scope: &ArgScope<'_>) -> String {
    let choices = def.choices.as_ref().map(|choices| {
        let fitting: Vec<String> = choices
            .iter()
            .filter(|c| def.kind != ArgType::Environment || *c != scope.env)
            .cloned()
            .collect();
        fitting
    });
    match (def.kind, choices) {
        (ArgType::Environment, Some(choices)) if choices.is_empty() => format!(
            "one of its choices, of which `{}` is the only one and the environment the task \
             runs in",
            scope.env
        ),
        (_, Some(choices)) => format!("one of {}", crate::quoted::list(&choices)),
        (ArgType::Environment, None) => match scope.environments {
            Some(_) => {
                let others = other_environments(scope);
                if others.is_empty() {
                    format!(
                        "{}, and `{}` is the only one declared",
                        ArgType::Environment.described(),
                        scope.env
                    )
                } else {
                    format!(
                        "{}: {}",
                        ArgType::Environment.described(),
                        crate::quoted::list(&others)
                    )
                }
            }
            None => format!(
                "{} (`environments` is not declared, so any environment name: a-z, 0-9 and \
                 `-`, up to 40 characters; not `{}`)",
                ArgType::Environment.described(),
                scope.env
            ),
        },
        (kind, None) => kind.described().to_string(),
    }
}

/// The declared environments but the run's (none when the config declares none).
fn other_environments(scope: &ArgScope<'_>) -> Vec<String> {
    scope
        .environments
        .unwrap_or_default()
        .iter()
        .filter(|e| *e != scope.env)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskConfig;
    use crate::task::TaskSource;

    fn task() -> Task {
        let mut config = TaskConfig::default();
        config.args.insert(
            "target".into(),
            ArgDef {
                description: Some("the table".into()),
                required: true,
                ..ArgDef::default()
            },
        );
        config.args.insert(
            "mode".into(),
            ArgDef {
                default: Some("fast".into()),
                choices: Some(vec!["fast".into(), "slow".into()]),
                ..ArgDef::default()
            },
        );
        config.args.insert(
            "count".into(),
            ArgDef {
                kind: ArgType::Number,
                ..ArgDef::default()
            },
        );
        config.args.insert(
            "dryRun".into(),
            ArgDef {
                kind: ArgType::Boolean,
                default: Some("true".into()),
                ..ArgDef::default()
            },
        );
        config.args.insert(
            "source".into(),
            ArgDef {
                kind: ArgType::Environment,
                ..ArgDef::default()
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

    fn parse(t: &Task, raw: &[String]) -> Result<BTreeMap<String, String>, CliError> {
        let environments = ["dev".to_string(), "staging".into(), "prod".into()];
        let scope = ArgScope {
            env: "staging",
            environments: Some(&environments),
        };
        parse_args(t, raw, &scope)
    }

    fn refused(t: &Task, raw: &[&str]) -> String {
        let raw: Vec<String> = raw.iter().map(|a| a.to_string()).collect();
        match parse(t, &raw) {
            Ok(values) => panic!("{raw:?} accepted as {values:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn args_are_checked_and_defaulted() {
        let t = task();
        let ok = parse(&t, &["target=users".into()]).unwrap();
        assert_eq!(ok["target"], "users");
        assert_eq!(ok["mode"], "fast");

        let missing = parse(&t, &[]).unwrap_err();
        assert!(
            missing.to_string().contains("`target` (the table)"),
            "{missing}"
        );
        assert_eq!(missing.hint.as_deref(), Some("pass `--arg target=VALUE`"));

        let unknown = parse(&t, &["targt=x".into()]).unwrap_err();
        assert!(
            unknown.to_string().contains("did you mean `target`"),
            "{unknown}"
        );
        assert!(parse(&t, &["target".into()]).is_err());
        assert!(parse(&t, &["target=a".into(), "target=b".into()]).is_err());
    }

    #[test]
    fn required_means_present_and_not_blank() {
        let t = task();
        assert!(
            refused(&t, &["target="])
                .contains("`--arg target=`: `target` is required and must not be blank"),
        );
        assert!(refused(&t, &["target=  "]).contains("must not be blank"));
        // An optional plain-text argument may be empty.
        let mut optional = task();
        optional.config.args["target"].required = false;
        assert_eq!(parse(&optional, &["target=".into()]).unwrap()["target"], "");
    }

    #[test]
    fn names_are_matched_without_regard_to_case() {
        let t = task();
        let values = parse(&t, &["TARGET=users".into(), "DRYRUN=false".into()]).unwrap();
        assert_eq!(values["target"], "users");
        assert_eq!(values["dryRun"], "false");
        assert!(refused(&t, &["target=a", "Target=b"]).contains("more than once"));
        assert!(refused(&t, &["TARGT=a"]).contains("did you mean `target`?"));
    }

    #[test]
    fn each_value_is_of_its_type_and_among_its_choices_and_errors_say_what_is_allowed() {
        let t = task();
        let ok = parse(
            &t,
            &[
                "target=t".into(),
                "count=-2.5".into(),
                "source=prod".into(),
                "mode=slow".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (ok["count"].as_str(), ok["source"].as_str()),
            ("-2.5", "prod")
        );

        let mode = refused(&t, &["target=t", "mode=fsat"]);
        assert!(
            mode.contains("`mode` takes one of `fast`, `slow`; did you mean `fast`?"),
            "{mode}"
        );
        for count in ["abc", "", "1,5", "NaN", "inf", "0x10"] {
            let wrong = refused(&t, &["target=t", &format!("count={count}")]);
            assert!(
                wrong.contains("`count` takes a number (like `3`"),
                "{wrong}"
            );
        }
        let dry = refused(&t, &["target=t", "dryRun=yes"]);
        assert!(dry.contains("`dryRun` takes `true` or `false`"), "{dry}");
        let unknown = refused(&t, &["target=t", "source=prd"]);
        assert!(
            unknown.contains("the name of another environment of this project: `dev`, `prod`; did you mean `prod`?"),
            "{unknown}"
        );
        let here = refused(&t, &["target=t", "source=staging"]);
        assert!(
            here.contains("`dev`, `prod` (`staging` is the environment the task runs in)"),
            "{here}"
        );
    }

    #[test]
    fn without_declared_environments_any_valid_name_but_the_runs_is_an_environment() {
        let t = task();
        let scope = ArgScope {
            env: "dev",
            environments: None,
        };
        let with =
            |source: &str| parse_args(&t, &["target=t".into(), format!("source={source}")], &scope);
        assert_eq!(with("qa-2").unwrap()["source"], "qa-2");
        let wrong = with("QA").unwrap_err().to_string();
        assert!(wrong.contains("any environment name"), "{wrong}");
        assert!(with("dev").unwrap_err().to_string().contains("not `dev`"));
    }

    #[test]
    fn a_missing_required_argument_says_what_it_takes() {
        let mut t = task();
        t.config.args["source"].required = true;
        let missing = refused(&t, &["target=t"]);
        assert!(
            missing.contains(
                "`source` (the name of another environment of this project: `dev`, `prod`)"
            ),
            "{missing}"
        );
    }
}
