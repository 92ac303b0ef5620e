//! Who may do what in an environment (Lagoon's roles, PRODUCT.md §3/§6): `access.<env>.<role>`
//! lists actors; a role may run the tasks of its own and lower roles, by hand or through a
//! deploy, and taking or releasing an environment's lock by hand needs `developer` (someone
//! else's lock: `maintainer`). This is the CLI's guardrail and its audit trail; the hard
//! boundary is IAM on the runner function (`infra/`).

use crate::backend::records::{EnvState, EventKind};
use crate::config::{Permission, ProjectConfig};
use crate::error::CliError;
use crate::operation::Operation;
use crate::plan::Plan;
use crate::task::Task;

/// The role `actor` holds in `env`: maintainer when the config has no `access` map or none for
/// `env`; otherwise the highest role whose list names the actor (`*` names everyone, and a
/// single `*` inside an entry matches any text: `*@example.com`); `None` when none does.
pub fn role_of(config: &ProjectConfig, env: &str, actor: &str) -> Option<Permission> {
    let Some(roles) = config.access.get(env) else {
        return Some(Permission::Maintainer);
    };
    roles
        .iter()
        .filter(|(_, actors)| actors.iter().any(|pattern| matches(pattern, actor)))
        .map(|(role, _)| *role)
        .max()
}

/// Whether `role` may run a task that asks for `needed`.
pub fn allows(role: Option<Permission>, needed: Permission) -> bool {
    role.is_some_and(|r| r >= needed)
}

/// The operation's actor may do `what` (e.g. "locking `prod` by hand") in its environment only
/// with the role `needed`; otherwise the refusal is recorded as a `refused` event and returned
/// (exit code 2).
pub async fn require(op: &Operation, needed: Permission, what: &str) -> Result<(), CliError> {
    let role = role_of(&op.project.config, &op.env, &op.actor);
    if allows(role, needed) {
        return Ok(());
    }
    let message = format!(
        "`{}` has {} in `{}`; {what} needs `{}`",
        op.actor,
        held(role),
        op.env,
        needed.as_str()
    );
    Err(refuse(op, message).await)
}

/// A deploy runs its tasks as the operation's actor, so it is refused, before the lock is
/// taken or anything runs, when the plan would run a task whose `permission` the actor's role
/// lacks. `plan` makes the plan from the environment's state, which is read only when the role
/// matters.
///
/// This plan is the one `--dry-run` shows; a deploy of another writer finishing before the lock
/// is held can change it (first deploy → update), so the deploy checks the plan it makes under
/// the lock again with [`check_plan`].
pub async fn check_deploy(
    op: &Operation,
    plan: impl FnOnce(&EnvState) -> Plan,
) -> Result<(), CliError> {
    if role_of(&op.project.config, &op.env, &op.actor) == Some(Permission::Maintainer) {
        return Ok(());
    }
    let state = op.backend.audit.env_state(&op.env).await?;
    check_plan(op, &plan(&state)).await
}

/// Refuses (recorded, exit code 2) a deploy of `plan` by the operation's actor if it runs a
/// task above the actor's role.
pub async fn check_plan(op: &Operation, plan: &Plan) -> Result<(), CliError> {
    let env = &op.env;
    let role = role_of(&op.project.config, env, &op.actor);
    let beyond = tasks_beyond(role, plan, &op.project.tasks);
    if beyond.is_empty() {
        return Ok(());
    }
    let tasks = beyond
        .iter()
        .map(|(task, needed)| format!("`{task}` (needs `{}`)", needed.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "`{}` has {} in `{env}`; this deploy would run {tasks}",
        op.actor,
        held(role)
    );
    Err(refuse(op, message).await.hint(format!(
        "the config's `access.{env}` says who holds which role; `lumo deploy --env {env} --dry-run` shows what would run"
    )))
}

/// The tasks `plan` runs that `role` may not run, each with the role it needs, in run order.
pub fn tasks_beyond<'a>(
    role: Option<Permission>,
    plan: &'a Plan,
    tasks: &[Task],
) -> Vec<(&'a str, Permission)> {
    plan.tasks
        .iter()
        .filter(|p| p.runs())
        .filter_map(|p| {
            let needed = tasks.iter().find(|t| t.name == p.task)?.config.permission;
            (!allows(role, needed)).then_some((p.task.as_str(), needed))
        })
        .collect()
}

fn held(role: Option<Permission>) -> String {
    role.map_or("no role".to_string(), |r| {
        format!("the role `{}`", r.as_str())
    })
}

/// Records `message` as the environment's `refused` event and makes it the command's error.
async fn refuse(op: &Operation, message: String) -> CliError {
    op.record_event(EventKind::Refused, message.clone()).await;
    CliError::invalid(format!("refused: {message}")).hint(format!(
        "the config's `access.{}` says who holds which role",
        op.env
    ))
}

fn matches(pattern: &str, actor: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == actor,
        Some((prefix, suffix)) => {
            actor.len() >= prefix.len() + suffix.len()
                && actor.starts_with(prefix)
                && actor.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Roles<'a> = &'a [(Permission, &'a [&'a str])];

    fn config(access: &[(&str, Roles<'_>)]) -> ProjectConfig {
        let mut c = ProjectConfig {
            path: "lumo.config.js".into(),
            root: ".".into(),
            project_name: "p".into(),
            provider: crate::config::Provider::Local,
            environment: None,
            environments: None,
            region: None,
            aws: Default::default(),
            secrets: Default::default(),
            tasks: Default::default(),
            access: BTreeMap::new(),
            retention: Default::default(),
            ignored_keys: Vec::new(),
            backend_problems: Vec::new(),
        };
        for (env, roles) in access {
            let roles = roles
                .iter()
                .map(|(r, a)| (*r, a.iter().map(|s| s.to_string()).collect()))
                .collect();
            c.access.insert(env.to_string(), roles);
        }
        c
    }

    #[test]
    fn roles_come_from_the_access_map() {
        let c = config(&[(
            "prod",
            &[
                (Permission::Maintainer, &["alice"]),
                (Permission::Developer, &["bob", "*@ci.example.com"]),
                (Permission::Guest, &["*"]),
            ],
        )]);
        assert_eq!(role_of(&c, "prod", "alice"), Some(Permission::Maintainer));
        assert_eq!(role_of(&c, "prod", "bob"), Some(Permission::Developer));
        assert_eq!(
            role_of(&c, "prod", "deploy@ci.example.com"),
            Some(Permission::Developer)
        );
        assert_eq!(role_of(&c, "prod", "mallory"), Some(Permission::Guest));
        assert_eq!(
            role_of(&c, "dev", "mallory"),
            Some(Permission::Maintainer),
            "no entry: open"
        );
        assert!(allows(Some(Permission::Developer), Permission::Guest));
        assert!(!allows(Some(Permission::Guest), Permission::Developer));

        let closed = config(&[("prod", &[(Permission::Maintainer, &["alice"])])]);
        assert_eq!(role_of(&closed, "prod", "bob"), None);
        assert!(!allows(None, Permission::Guest));
    }

    fn task(name: &str, permission: Permission) -> Task {
        Task {
            name: name.into(),
            source: crate::task::TaskSource::Command {
                command: "true".into(),
            },
            config: crate::config::TaskConfig {
                permission,
                ..Default::default()
            },
            declared: true,
            display_path: format!("tasks.{name}.command"),
        }
    }

    /// Regression: a guest's deploy ran developer tasks; only tasks the plan runs count.
    #[test]
    fn a_deploy_is_checked_against_the_tasks_its_plan_runs() {
        use crate::plan::{Decision, PlannedTask};
        let planned = |name: &str, runs: bool| PlannedTask {
            task: name.into(),
            bundle: String::new(),
            decision: if runs {
                Decision::Run {
                    trigger: lumo_runner::contract::Trigger::Update,
                    reason: "runOn update".into(),
                }
            } else {
                Decision::Skip {
                    reason: "manual only".into(),
                }
            },
            after: Vec::new(),
        };
        let tasks = [
            task("peek", Permission::Guest),
            task("migrate", Permission::Developer),
            task("purge", Permission::Maintainer),
            task("chore", Permission::Developer),
        ];
        let plan = Plan {
            is_first_deploy: false,
            tasks: vec![
                planned("peek", true),
                planned("migrate", true),
                planned("purge", true),
                planned("chore", false),
            ],
        };
        assert_eq!(
            tasks_beyond(Some(Permission::Guest), &plan, &tasks),
            [
                ("migrate", Permission::Developer),
                ("purge", Permission::Maintainer)
            ]
        );
        assert_eq!(
            tasks_beyond(Some(Permission::Developer), &plan, &tasks),
            [("purge", Permission::Maintainer)]
        );
        assert!(tasks_beyond(Some(Permission::Maintainer), &plan, &tasks).is_empty());
        assert_eq!(tasks_beyond(None, &plan, &tasks).len(), 3);
    }
}
