//! Write a lumo task in Rust: an `async fn(TaskContext) -> TaskResult` plus one macro call.
//!
//! ```no_run
//! use lumo_task::{TaskContext, TaskResult};
//!
//! async fn run(ctx: TaskContext) -> TaskResult {
//!     TaskResult::ok(format!("seeded {}", ctx.deployment.environment))
//! }
//!
//! lumo_task::main!(run);
//! ```
//!
//! Put the crate in `functions/tasks/<name>/` (a directory with a `Cargo.toml` is a Rust task);
//! `lumo deploy` builds it with `cargo build --release` and bundles its one binary. This crate
//! speaks the task contract (PRODUCT.md §4) so the handler does not have to:
//!
//! - the [`TaskContext`] is read from stdin, or from the file `LUMO_CONTEXT_FILE` names when
//!   stdin is empty, closed or a terminal;
//! - the handler's [`TaskResult`] is written as JSON to `LUMO_RESULT_FILE` (to stdout when that
//!   variable is not set, e.g. when you run the binary by hand);
//! - the process exits 0 when the result says `success: true`, 1 otherwise;
//! - a handler that panics becomes a failed result carrying the panic message (exit 1);
//! - a context that cannot be read or parsed is reported on stderr, recorded as a failed result
//!   when `LUMO_RESULT_FILE` is set, and exits 2.
//!
//! # Results
//!
//! [`TaskResult`] is the contract type itself, so its constructors come from the
//! [`TaskResultExt`] trait: `TaskResult::ok(msg)`, `TaskResult::fail(msg)` and
//! `.with_data(value)`. [`main!`] brings the trait into scope in the module it is called from;
//! elsewhere `use lumo_task::TaskResultExt;` (or `use lumo_task::prelude::*;`).
//!
//! A handler may also return `Result<TaskResult, E>` for any `E: Display`, so `?` works: an
//! `Err` becomes a failed result whose message is the error (see [`IntoTaskResult`]).
//!
//! # Runtime
//!
//! By default the handler runs on a tiny built-in executor ([`block_on`]: std only, the thread
//! parks until the future wakes it). That is enough for handlers that only `await` their own
//! futures, or none. A handler that uses tokio-based crates (database clients, HTTP clients,
//! `tokio::fs`, `tokio::time::sleep`, `tokio::process`) needs a tokio runtime: enable the
//! `tokio` feature and the handler runs on a tokio current-thread runtime with IO and time
//! enabled.
//!
//! ```toml
//! [dependencies]
//! lumo-task = { path = "…/sdk", features = ["tokio"] }
//! ```
//!
//! # Panics
//!
//! Panics are caught with `catch_unwind`, which needs `panic = "unwind"` (Rust's default) in
//! the profile the task is built with. With `panic = "abort"` a panic kills the process and lumo
//! records the run as failed by `SIGABRT`, without the panic message.
//!
//! # Your own `main`
//!
//! [`main!`] is `fn main() -> ExitCode { lumo_task::run(handler) }`; call [`run`] yourself to do
//! something before or after it (set up logging, say).

mod invocation;
mod result;
mod runtime;

use std::future::Future;
use std::process::ExitCode;

pub use lumo_runner::contract::{DeploymentInfo, TaskContext, TaskResult, Trigger};
pub use result::{IntoTaskResult, TaskResultExt};
pub use runtime::block_on;
/// The `serde_json` this crate builds results with, for `json!` and `Value` without another
/// dependency.
pub use serde_json::{self, json};
#[cfg(feature = "tokio")]
pub use tokio;

/// Everything a task's `main.rs` usually needs: `use lumo_task::prelude::*;`.
pub mod prelude {
    pub use crate::{
        DeploymentInfo, IntoTaskResult, TaskContext, TaskResult, TaskResultExt, Trigger, json,
    };
}

/// Defines `fn main()` running `handler`: `lumo_task::main!(run);` for
/// `async fn run(ctx: TaskContext) -> TaskResult`.
///
/// It also imports [`TaskResultExt`] (anonymously) into the calling module, so
/// `TaskResult::ok(..)` works there with nothing but `use lumo_task::{TaskContext, TaskResult}`.
#[macro_export]
macro_rules! main {
    ($handler:expr $(,)?) => {
        #[allow(unused_imports)]
        use $crate::TaskResultExt as _;

        fn main() -> ::std::process::ExitCode {
            $crate::run($handler)
        }
    };
}

/// Runs `handler` under the task contract and returns the process's exit code: reads the
/// context, runs the handler (catching a panic), writes the result to `LUMO_RESULT_FILE`.
///
/// The exit code is 0 when the result is a success, 1 when it is a failure or the handler
/// panicked, 2 when the context could not be read. Return it from `main`:
///
/// ```no_run
/// use lumo_task::{TaskContext, TaskResult, TaskResultExt};
///
/// async fn handler(ctx: TaskContext) -> TaskResult {
///     TaskResult::ok(format!("hello from {}", ctx.task))
/// }
///
/// fn main() -> std::process::ExitCode {
///     eprintln!("starting");
///     lumo_task::run(handler)
/// }
/// ```
pub fn run<H, F>(handler: H) -> ExitCode
where
    H: FnOnce(TaskContext) -> F,
    F: Future,
    F::Output: IntoTaskResult,
{
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let outcome = invocation::Invocation::from_process(&mut stdout, &mut stderr).run(handler);
    ExitCode::from(outcome.exit_code)
}
