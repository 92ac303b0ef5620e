//! Who may do what in an environment (Lagoon's roles, PRODUCT.md §3/§6). `access.<env>.<role>`
//! lists actors; a deploy needs the environment's `deploy` role (`developer` by default), and
//! the tasks it runs are part of it (whoever may deploy may change a task's code anyway, so
//! checking them one by one guards nothing and turns a CI pipeline red on its second push); a
//! task's `permission` gates its manual runs; taking or releasing an environment's lock by hand
//! needs `developer` (someone else's lock: `maintainer`). This is the CLI's guardrail and its
//! audit trail; the hard boundary is IAM on the runner function (`infra/`).

use std::fmt;

use serde::Serialize;

use crate::backend::records::EventKind;
use crate::config::{ConfirmRule, EnvAccess, Permission, ProjectConfig};
use crate::error::CliError;
use crate::operation::Operation;

/// The role `actor` holds in `env`: maintainer when the config has no `access` entry for `env`
/// or one that lists no role; otherwise the highest role whose list names the actor (`*`
/// names everyone, and a single `*` inside an entry matches any text: `*@example.com`); `None`
/// when none does.
pub fn role_of(config: &ProjectConfig, env: &str, actor: &str) -> Option<Permission> {
    let Some(entry) = config.access.get(env).filter(|e| !e.roles.is_empty()) else {
        return Some(Permission::Maintainer);
    };
    entry
        .roles
        .iter()
        .filter(|(_, actors)| actors.iter().any(|pattern| matches(pattern, actor)))
        .map(|(role, _)| *role)
        .max()
}

/// The role a deploy of `env` needs: `access.<env>.deploy`, else `developer`.
pub fn deploy_role(config: &ProjectConfig, env: &str) -> Permission {
    config
        .access
        .get(env)
        .and_then(|e| e.deploy)
        .unwrap_or(EnvAccess::DEFAULT_DEPLOY)
}

/// What answers a confirmation in `env`: `access.<env>.confirm`, else `yes`.
pub fn confirm_rule(config: &ProjectConfig, env: &str) -> ConfirmRule {
    config
        .access
        .get(env)
        .map(|e| e.confirm)
        .unwrap_or_default()
}

/// The role `lumo exec` needs in `env`: `access.<env>.exec`, else `maintainer`.
pub fn exec_role(config: &ProjectConfig, env: &str) -> Permission {
    config
        .access
        .get(env)
        .and_then(|e| e.exec)
        .unwrap_or(EnvAccess::DEFAULT_EXEC)
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

/// A deploy is refused (recorded, exit code 2) before the lock is taken or anything is
/// uploaded when the actor lacks the environment's deploy role. The plan's tasks are not
/// checked: they are part of the deploy.
pub async fn authorize_deploy(op: &Operation) -> Result<(), CliError> {
    let needed = deploy_role(&op.project.config, &op.env);
    require(op, needed, &format!("deploying `{}`", op.env)).await
}

/// What an actor may deploy in an environment, and why: what `lumo tasks --env` and
/// `lumo deploy --dry-run` show before anyone is refused.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub actor: String,
    pub env: String,
    /// `None`: the environment's `access` entry names the actor in no role.
    pub role: Option<Permission>,
    /// The role a deploy of `env` needs.
    pub deploy_needs: Permission,
    pub may_deploy: bool,
}

impl Standing {
    pub fn of(config: &ProjectConfig, env: &str, actor: &str) -> Standing {
        let role = role_of(config, env, actor);
        let deploy_needs = deploy_role(config, env);
        Standing {
            actor: actor.to_string(),
            env: env.to_string(),
            role,
            deploy_needs,
            may_deploy: allows(role, deploy_needs),
        }
    }

    /// Whether the actor may run a task asking for `permission` by hand.
    pub fn may_run(&self, permission: Permission) -> bool {
        allows(self.role, permission)
    }
}

/// `you (`bob`, developer) may deploy `dev``, or why not.
impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = self.role.map_or("no role", Permission::as_str);
        write!(f, "you (`{}`, {role}) ", self.actor)?;
        if self.may_deploy {
            write!(f, "may deploy `{}`", self.env)
        } else {
            write!(
                f,
                "may not deploy `{}`: a deploy there needs {}",
                self.env,
                self.deploy_needs.as_str()
            )
        }
    }
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
            c.access.insert(
                env.to_string(),
                EnvAccess {
                    roles,
                    ..EnvAccess::default()
                },
            );
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

    /// Regression: a developer CI identity's second deploy was refused because an update-only
    /// maintainer task joined the plan. A deploy needs the environment's deploy role only.
    #[test]
    fn a_deploy_needs_the_environments_deploy_role_only() {
        let mut c = config(&[(
            "prod",
            &[
                (Permission::Maintainer, &["alice"]),
                (Permission::Developer, &["ci"]),
                (Permission::Guest, &["*"]),
            ],
        )]);
        let ci = Standing::of(&c, "prod", "ci");
        assert!(ci.may_deploy);
        assert!(!ci.may_run(Permission::Maintainer));
        assert_eq!(ci.to_string(), "you (`ci`, developer) may deploy `prod`");
        let guest = Standing::of(&c, "prod", "mallory");
        assert_eq!(
            guest.to_string(),
            "you (`mallory`, guest) may not deploy `prod`: a deploy there needs developer"
        );

        c.access.get_mut("prod").unwrap().deploy = Some(Permission::Maintainer);
        assert!(!Standing::of(&c, "prod", "ci").may_deploy);
        assert!(Standing::of(&c, "prod", "alice").may_deploy);
        assert!(
            Standing::of(&c, "dev", "anyone").may_deploy,
            "no entry: open"
        );
    }

    #[test]
    fn an_entry_without_role_lists_leaves_the_roles_open() {
        let mut c = config(&[]);
        c.access.insert(
            "prod".into(),
            EnvAccess {
                confirm: ConfirmRule::Name,
                ..EnvAccess::default()
            },
        );
        assert_eq!(role_of(&c, "prod", "bob"), Some(Permission::Maintainer));
        assert_eq!(confirm_rule(&c, "prod"), ConfirmRule::Name);
        assert_eq!(confirm_rule(&c, "dev"), ConfirmRule::Yes);
    }
}
