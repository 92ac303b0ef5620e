//! Who may do what in an environment (Lagoon's roles, PRODUCT.md §3/§6). `access.<env>.<role>`
//! lists actors; a deploy needs the environment's `deploy` role (`developer` by default), and
//! the tasks it runs are part of it (whoever may deploy may change a task's code anyway, so
//! checking them one by one guards nothing and turns a CI pipeline red on its second push); a
//! task's `permission` gates its manual runs; taking or releasing an environment's lock by hand
//! needs `developer` (someone else's lock: `maintainer`). This is the CLI's guardrail and its
//! audit trail; the hard boundary is IAM on the runner function (`infra/`).

use serde::Serialize;

use crate::backend::records::EventKind;
use crate::config::{ConfirmRule, EnvAccess, Permission, ProjectConfig};
use crate::error::CliError;
use crate::operation::Operation;

/// The role a manual `lumo lock` / `lumo unlock` needs (not configurable: PRODUCT.md §6).
pub const LOCK_ROLE: Permission = Permission::Developer;

/// The role releasing someone else's lock (`lumo unlock --force`) needs.
pub const FORCE_UNLOCK_ROLE: Permission = Permission::Maintainer;

/// The role `actor` holds in `env`: maintainer when the config has no `access` entry for `env`
/// or one that lists no role; otherwise the highest role whose list names the actor (`*`
/// names everyone, and a single `*` inside an entry matches any text: `*@example.com`); `None`
/// when none does.
pub fn role_of(config: &ProjectConfig, env: &str, actor: &str) -> Option<Permission> {
    role_with_source(config, env, actor).0
}

/// [`role_of`], and why: which key of the config gave the role, or that none did.
pub fn role_with_source(
    config: &ProjectConfig,
    env: &str,
    actor: &str,
) -> (Option<Permission>, RoleSource) {
    let Some(entry) = config.access.get(env).filter(|e| !e.roles.is_empty()) else {
        return (Some(Permission::Maintainer), RoleSource::Open);
    };
    let best = entry
        .roles
        .iter()
        .filter_map(|(role, actors)| {
            actors
                .iter()
                .find(|pattern| matches(pattern, actor))
                .map(|pattern| (*role, pattern))
        })
        .max_by_key(|(role, _)| *role);
    match best {
        Some((role, pattern)) => (
            Some(role),
            RoleSource::Listed {
                key: format!("access.{env}.{}", role.as_str()),
                pattern: pattern.clone(),
            },
        ),
        None => (
            None,
            RoleSource::Unlisted {
                key: format!("access.{env}"),
            },
        ),
    }
}

/// Why an actor holds the role it does in an environment (`roleFrom` in `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RoleSource {
    /// The config gives the environment no roles: everyone is maintainer.
    Open,
    /// `key` (`access.<env>.<role>`) lists `pattern`, which names the actor.
    Listed { key: String, pattern: String },
    /// `key` (`access.<env>`) lists roles, and no pattern of them names the actor.
    Unlisted { key: String },
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
    let message = refusal_message(&op.actor, role, &op.env, what, needed);
    Err(refuse(op, message).await)
}

/// Why `actor` may not do `what`: the text a refusal is recorded with, and (after `refused: `)
/// the error it stops the command with. One function, so a dry run's "would be refused" is
/// word for word the real command's error.
fn refusal_message(
    actor: &str,
    role: Option<Permission>,
    env: &str,
    what: &str,
    needed: Permission,
) -> String {
    format!(
        "`{actor}` has {} in `{env}`; {what} needs `{}`",
        held(role),
        needed.as_str()
    )
}

/// What a deploy of `env` is called in its refusal.
fn deploying(env: &str) -> String {
    format!("deploying `{env}`")
}

/// What a manual run of `task` is called in its refusal.
pub fn running_task(task: &str) -> String {
    format!("task `{task}`")
}

/// What `lumo exec` is called in its refusal.
pub const EXEC: &str = "`lumo exec`";

/// A deploy is refused (recorded, exit code 2) before the lock is taken or anything is
/// uploaded when the actor lacks the environment's deploy role. The plan's tasks are not
/// checked: they are part of the deploy.
pub async fn authorize_deploy(op: &Operation) -> Result<(), CliError> {
    let needed = deploy_role(&op.project.config, &op.env);
    require(op, needed, &deploying(&op.env)).await
}

/// What an actor may do in an environment, and why: what `lumo tasks --env` and the dry runs
/// show before anyone is refused (`access` in their `--json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub actor: String,
    pub env: String,
    /// `None`: the environment's `access` entry names the actor in no role.
    pub role: Option<Permission>,
    /// Why the actor holds `role`.
    pub role_from: RoleSource,
    /// The role a deploy of `env` needs (as `rights.deploy.needs`).
    pub deploy_needs: Permission,
    /// As `rights.deploy.allowed`.
    pub may_deploy: bool,
    /// Each thing the actor may or may not do in `env` besides running a task by hand (each
    /// task's `permission` says that one).
    pub rights: Rights,
}

/// The rights of [`Standing`], one per command that checks a role.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rights {
    /// `lumo deploy`.
    pub deploy: Right,
    /// `lumo exec`.
    pub exec: Right,
    /// `lumo lock` and `lumo unlock` of one's own lock.
    pub lock: Right,
    /// `lumo unlock --force` of someone else's lock.
    pub force_unlock: Right,
}

/// Whether the actor may do one thing, the role it takes and where that rule comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Right {
    pub allowed: bool,
    pub needs: Permission,
    /// The config key that sets `needs` (`access.prod.exec`), `default` when the config could
    /// and does not, `fixed` when no config can (lock, unlock).
    pub from: String,
    /// The error the command would stop with (exit 2); `None` when allowed.
    pub refusal: Option<String>,
}

impl Standing {
    pub fn of(config: &ProjectConfig, env: &str, actor: &str) -> Standing {
        let (role, role_from) = role_with_source(config, env, actor);
        let entry = config.access.get(env);
        let right = |needs: Permission, from: String, what: &str| Right {
            allowed: allows(role, needs),
            needs,
            from,
            refusal: (!allows(role, needs)).then(|| {
                format!(
                    "refused: {}",
                    refusal_message(actor, role, env, what, needs)
                )
            }),
        };
        let configured = |set: Option<Permission>, key: &str| match set {
            Some(_) => format!("access.{env}.{key}"),
            None => "default".to_string(),
        };
        let deploy = right(
            deploy_role(config, env),
            configured(entry.and_then(|e| e.deploy), "deploy"),
            &deploying(env),
        );
        let exec = right(
            exec_role(config, env),
            configured(entry.and_then(|e| e.exec), "exec"),
            EXEC,
        );
        let lock = right(
            LOCK_ROLE,
            "fixed".to_string(),
            &format!("locking `{env}` by hand"),
        );
        let force_unlock = right(
            FORCE_UNLOCK_ROLE,
            "fixed".to_string(),
            "releasing someone else's lock (`--force`)",
        );
        Standing {
            actor: actor.to_string(),
            env: env.to_string(),
            role,
            role_from,
            deploy_needs: deploy.needs,
            may_deploy: deploy.allowed,
            rights: Rights {
                deploy,
                exec,
                lock,
                force_unlock,
            },
        }
    }

    /// Whether the actor may run a task asking for `permission` by hand.
    pub fn may_run(&self, permission: Permission) -> bool {
        allows(self.role, permission)
    }

    /// The error a manual run of `task` (asking for `permission`) would stop with, if any.
    pub fn run_refusal(&self, task: &str, permission: Permission) -> Option<String> {
        (!self.may_run(permission)).then(|| {
            format!(
                "refused: {}",
                refusal_message(
                    &self.actor,
                    self.role,
                    &self.env,
                    &running_task(task),
                    permission
                )
            )
        })
    }

    /// Who the actor is here and why: "`bob` is developer in `prod` (`access.prod.developer`
    /// lists `*@x`)".
    pub fn who(&self) -> String {
        let role = match self.role {
            Some(r) => format!("is {} in `{}`", r.as_str(), self.env),
            None => format!("has no role in `{}`", self.env),
        };
        let why = match &self.role_from {
            RoleSource::Open => format!("no `access.{}` roles: everyone is maintainer", self.env),
            RoleSource::Listed { key, pattern } => format!("`{key}` lists `{pattern}`"),
            RoleSource::Unlisted { key } => format!("no role of `{key}` lists them"),
        };
        format!("`{}` {role} ({why})", self.actor)
    }

    /// The rights as two lines' worth: what the actor may do, and what not (either may be
    /// empty).
    pub fn may_and_may_not(&self) -> (Vec<String>, Vec<String>) {
        let r = &self.rights;
        let named = [
            ("deploy", &r.deploy),
            ("exec", &r.exec),
            ("lock/unlock", &r.lock),
            ("unlock --force", &r.force_unlock),
        ];
        let (may, may_not): (Vec<_>, Vec<_>) = named.iter().partition(|(_, right)| right.allowed);
        let text = |list: Vec<&(&str, &Right)>| {
            list.into_iter()
                .map(|(name, right)| format!("{name} ({})", right.role_and_source()))
                .collect()
        };
        (text(may), text(may_not))
    }
}

impl Right {
    /// "developer, default", "maintainer, `access.prod.exec`", or (fixed) "developer".
    fn role_and_source(&self) -> String {
        match self.from.as_str() {
            "fixed" => self.needs.as_str().to_string(),
            "default" => format!("{}, default", self.needs.as_str()),
            key => format!("{}, `{key}`", self.needs.as_str()),
        }
    }
}

/// What a dry run says of one right: "allowed: deploying `dev` needs developer (default)", or
/// the error the real command would give.
pub fn verdict(what: &str, right: &Right) -> String {
    match &right.refusal {
        None => {
            let needs = right.needs.as_str();
            match right.from.as_str() {
                "fixed" => format!("allowed: {what} needs {needs}"),
                "default" => format!("allowed: {what} needs {needs} (default)"),
                key => format!("allowed: {what} needs {needs} (`{key}`)"),
            }
        }
        Some(error) => format!(
            "would be refused (exit 2): {}",
            error.strip_prefix("refused: ").unwrap_or(error)
        ),
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
        assert_eq!(
            verdict("deploying `prod`", &ci.rights.deploy),
            "allowed: deploying `prod` needs developer (default)"
        );
        let guest = Standing::of(&c, "prod", "mallory");
        assert_eq!(
            verdict("deploying `prod`", &guest.rights.deploy),
            "would be refused (exit 2): `mallory` has the role `guest` in `prod`; deploying \
             `prod` needs `developer`"
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

    /// `lumo tasks` and the dry runs say why: which key gave the actor its role, and for each
    /// right the role it takes and the key that sets it (or that it is the default).
    #[test]
    fn a_standing_says_where_the_role_and_each_right_come_from() {
        let mut c = config(&[(
            "prod",
            &[
                (Permission::Maintainer, &["alice"]),
                (Permission::Developer, &["*@ci.example.com"]),
            ],
        )]);
        c.access.get_mut("prod").unwrap().exec = Some(Permission::Developer);

        let bot = Standing::of(&c, "prod", "deploy@ci.example.com");
        assert_eq!(
            bot.who(),
            "`deploy@ci.example.com` is developer in `prod` (`access.prod.developer` lists \
             `*@ci.example.com`)"
        );
        assert_eq!(
            (
                bot.rights.deploy.from.as_str(),
                bot.rights.exec.from.as_str()
            ),
            ("default", "access.prod.exec")
        );
        assert!(bot.rights.exec.allowed && bot.rights.lock.allowed);
        assert!(!bot.rights.force_unlock.allowed);
        assert_eq!(
            bot.may_and_may_not(),
            (
                vec![
                    "deploy (developer, default)".to_string(),
                    "exec (developer, `access.prod.exec`)".into(),
                    "lock/unlock (developer)".into(),
                ],
                vec!["unlock --force (maintainer)".to_string()],
            )
        );
        assert_eq!(
            bot.run_refusal("rotate", Permission::Maintainer).as_deref(),
            Some(
                "refused: `deploy@ci.example.com` has the role `developer` in `prod`; task \
                 `rotate` needs `maintainer`"
            )
        );
        assert_eq!(bot.run_refusal("seed", Permission::Developer), None);

        let stranger = Standing::of(&c, "prod", "mallory");
        assert_eq!(
            stranger.who(),
            "`mallory` has no role in `prod` (no role of `access.prod` lists them)"
        );
        assert_eq!(
            stranger.rights.lock.refusal.as_deref(),
            Some(
                "refused: `mallory` has no role in `prod`; locking `prod` by hand needs `developer`"
            )
        );
        let anyone = Standing::of(&c, "dev", "mallory");
        assert_eq!(anyone.role_from, RoleSource::Open);
        assert_eq!(
            anyone.who(),
            "`mallory` is maintainer in `dev` (no `access.dev` roles: everyone is maintainer)"
        );
        assert!(anyone.may_and_may_not().1.is_empty());
    }
}
