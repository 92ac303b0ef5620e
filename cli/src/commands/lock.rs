//! `lumo lock --env E --reason R` / `lumo unlock --env E [--force]`: take an environment by
//! hand (Spacelift's stack lock) so nobody else deploys or runs tasks there until it is
//! released. The holder's own deploys and runs go ahead. Both are recorded in the audit trail.
//! With an `access` map, both need `developer` in the environment, and releasing someone
//! else's lock (`--force`) needs `maintainer`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::access;
use crate::args::{LockArgs, UnlockArgs};
use crate::backend::LockSlot;
use crate::backend::records::{EventKind, LockHolder};
use crate::error::{CliError, ExitKind};
use crate::lock::{self, holder};

pub async fn lock(args: LockArgs, ctx: &Context) -> CommandResult {
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    if args.reason.trim().is_empty() {
        return Err(CliError::invalid(
            "`--reason` must say why the environment is locked",
        ));
    }
    let op = ctx.operation(&project, &env).await?;
    access::require(&op, access::LOCK_ROLE, &format!("locking `{env}` by hand")).await?;
    let me = holder(
        &op.actor,
        "lock".to_string(),
        Some(args.reason.trim().to_string()),
        false,
    );
    lock::acquire_waiting(&op, LockSlot::Manual, &me, args.wait).await?;
    let message = format!("locked by hand: {}", args.reason.trim());
    op.record_event(EventKind::Locked, message).await;
    Ok(Outcome::report(LockReport {
        env,
        action: "locked",
        holder: Some(me),
        previous: None,
    }))
}

pub async fn unlock(args: UnlockArgs, ctx: &Context) -> CommandResult {
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    let op = ctx.operation(&project, &env).await?;
    let actor = &op.actor;
    access::require(
        &op,
        access::LOCK_ROLE,
        &format!("unlocking `{env}` by hand"),
    )
    .await?;
    let Some(current) = op.backend.locks.current(&env).await?.manual else {
        return Ok(Outcome::report(LockReport {
            env,
            action: "not_locked",
            holder: None,
            previous: None,
        }));
    };
    let forced = &current.actor != actor;
    if forced && !args.force {
        return Err(CliError::new(
            ExitKind::Locked,
            format!("environment `{env}` is locked by {}, not by `{actor}`", current.describe()),
        )
        .hint(format!("`lumo unlock --env {env} --force` releases someone else's lock (and records that you did)")));
    }
    if forced {
        access::require(
            &op,
            access::FORCE_UNLOCK_ROLE,
            &format!("releasing the lock `{}` holds (`--force`)", current.actor),
        )
        .await?;
    }
    let released = op
        .backend
        .locks
        .release(&env, LockSlot::Manual, None)
        .await?;
    let (kind, message) = if forced {
        (
            EventKind::ForceUnlocked,
            format!("forced the release of the lock of {}", current.describe()),
        )
    } else {
        (EventKind::Unlocked, "released by hand".to_string())
    };
    op.record_event(kind, message).await;
    let action = if forced { "force_unlocked" } else { "unlocked" };
    Ok(Outcome::report(LockReport {
        env,
        action,
        holder: None,
        previous: released.or(Some(current)),
    }))
}

/// What `lumo lock` / `lumo unlock` print.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockReport {
    pub env: String,
    /// `locked`, `unlocked`, `force_unlocked` or `not_locked`.
    pub action: &'static str,
    pub holder: Option<LockHolder>,
    /// The lock that was released.
    pub previous: Option<LockHolder>,
}

impl fmt::Display for LockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.action, &self.holder, &self.previous) {
            ("locked", Some(h), _) => writeln!(f, "Locked `{}`: {}", self.env, h.describe()),
            ("not_locked", _, _) => writeln!(f, "`{}` is not locked.", self.env),
            (action, _, Some(p)) => writeln!(
                f,
                "{} `{}` (was {})",
                if action == "force_unlocked" {
                    "Force-unlocked"
                } else {
                    "Unlocked"
                },
                self.env,
                p.describe()
            ),
            _ => writeln!(f, "Unlocked `{}`.", self.env),
        }
    }
}
