//! What an operation reports while it works, as events rather than text: the core (locking,
//! running tasks, the deployment's lifecycle) says *what* happened, and whoever watches decides
//! how to show it. The terminal `Printer` (in `output.rs`) is one watcher; a CI report
//! (a step summary, annotations, JUnit) or a test can be another without the core changing.
//!
//! The result of a command is not progress: it is returned as the command's outcome and
//! printed once by `main`.

use std::time::Duration;

use lumo_runner::executor::OutputObserver;

use crate::backend::records::{Deployment, LockHolder, TaskRun};

/// Watches an operation's progress. Every method is a notification; none can fail or stop
/// the work.
pub trait Progress: Send + Sync {
    /// Something slow begins (bundling, storing bundles); it ends when the returned [`Step`]
    /// is dropped or finished.
    fn step(&self, message: String) -> Box<dyn Step>;

    /// Detail worth showing only to someone who asked for it (`--verbose`).
    fn detail(&self, message: String);

    /// The environment is held by `holder`; the operation waits for it (said once per wait).
    fn waiting_for_lock(&self, env: &str, holder: &LockHolder);

    /// Something the user should know although the operation goes on: a writer taken over
    /// from, runs marked abandoned. `message` is what was also recorded in the audit trail.
    fn environment_cleaned_up(&self, env: &str, message: &str);

    /// The deployment is recorded and its tasks are about to run.
    fn deployment_started(&self, deployment: &Deployment);

    /// A deployment is about to run `count` tasks (the terminal shows each one's place among
    /// them); not called for a single manual run.
    fn runs_planned(&self, count: usize) {
        let _ = count;
    }

    /// An attempt of a task started (recorded `running`).
    fn run_started(&self, run: &TaskRun);

    /// Where the output of `task`'s running attempt goes, chunk by chunk as it arrives. The
    /// observer is dropped when the attempt ends, and must then show what it still holds.
    fn run_output(&self, task: &str) -> Box<dyn OutputObserver>;

    /// An attempt ended and is recorded.
    fn run_finished(&self, run: &TaskRun);

    /// `run`, attempt `run.attempt` of `attempts`, did not succeed; the next starts after
    /// `backoff`.
    fn run_retrying(&self, run: &TaskRun, attempts: u32, backoff: Duration);
}

/// A slow step in progress (see [`Progress::step`]).
pub trait Step: Send {
    /// The step is done.
    fn finish(self: Box<Self>);
}
