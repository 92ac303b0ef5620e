//! The operation: this actor, acting on this environment of this project, through this
//! backend, reporting progress to this watcher, stopping on this signal. Every command that
//! touches an environment (deploy, run, lock, unlock, and the verbs to come) builds one and
//! hands it down, instead of passing the six one by one.

use std::sync::Arc;

use crate::backend::Backend;
use crate::backend::records::{AuditEvent, EventKind, Timestamp, new_id};
use crate::progress::Progress;
use crate::project::Project;
use crate::stop::StopSignal;

/// Who acts on which environment, and how; cheap to clone (shared parts are reference-counted).
#[derive(Clone)]
pub struct Operation {
    pub project: Arc<Project>,
    /// A name [`Project::resolve_env`] accepted.
    pub env: String,
    /// Who is acting, for the audit trail and the access rules.
    pub actor: String,
    pub backend: Backend,
    pub progress: Arc<dyn Progress>,
    /// Pulled on an interrupt or when the environment's lock is lost.
    pub stop: StopSignal,
}

impl Operation {
    pub fn project_name(&self) -> &str {
        &self.project.config.project_name
    }

    /// Records an audit event of this environment by this actor; a failure to record is
    /// logged, never fatal.
    pub async fn record_event(&self, kind: EventKind, message: String) {
        let event = AuditEvent {
            id: new_id(),
            project: self.project_name().to_string(),
            env: self.env.clone(),
            kind,
            actor: self.actor.clone(),
            at: Timestamp::now(),
            message,
        };
        if let Err(e) = self.backend.audit.record_event(&event).await {
            tracing::warn!("cannot record the `{kind}` event of `{}`: {e}", self.env);
        }
    }
}
