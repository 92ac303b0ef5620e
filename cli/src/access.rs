//! Who may run which task by hand (Lagoon's roles, PRODUCT.md §3/§6): `access.<env>.<role>`
//! lists actors; a role may run the tasks of its own and lower roles. This is the CLI's
//! guardrail and its audit trail; the hard boundary is IAM on the runner function (`infra/`).

use crate::config::{Permission, ProjectConfig};

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
            ignored_keys: Vec::new(),
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
}
