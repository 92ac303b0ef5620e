//! `bootstrap` of the `<project>-<env>-lumo-runner` Lambda function (the managed Node.js
//! runtime, whose `AWS_LAMBDA_EXEC_WRAPPER` execs this instead of Node's runtime client): polls
//! the Lambda runtime API and runs each invocation's task with [`lambda::handler`].
//!
//! Kept to start-up only, so a cold start is the exec and the first poll: everything the
//! handler needs (the HTTP agent and its TLS configuration, the cache directory) is made on the
//! first invocation that needs it.

use lumo_runner::lambda;

// One invocation at a time, and a task run is mostly waiting on a child process: one thread
// is plenty, and starts faster and smaller than a worker pool. Blocking transfers go to tokio's
// blocking pool either way.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    lambda::init_tracing();
    // Orphans of a task's processes are re-parented to us and reaped (see the executor).
    lumo_runner::become_subreaper();
    if let Err(e) = lambda_runtime::run(lambda_runtime::service_fn(lambda::handler)).await {
        // Only the runtime API failing gets here; Lambda restarts the function.
        eprintln!(
            "error: the Lambda runtime loop ended: {}",
            lambda::error_chain(e.as_ref())
        );
        std::process::exit(1);
    }
}
