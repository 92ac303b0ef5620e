//! lumo's runner: the task contract, and (feature `executor`) the code that runs one task bundle
//! under that contract. The CLI's `local` provider and the Lambda bootstrap both call
//! [`run_bundle`], so a task behaves the same wherever it runs.
//!
//! What crosses between the CLI, the executor and the runner function is declared once, here:
//! a run's [`TaskSpec`] and [`RunOutcome`] (`task_run.rs`), the ids that name things
//! ([`RunId`], [`BundleHash`], [`Version`]) and the versioned Invoke wire ([`invoke`]).

// Tests may unwrap: a panic is how a test reports. Library code is still checked without it by
// the non-test build of this crate.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod contract;
pub mod ids;
pub mod invoke;
pub mod task_run;

#[cfg(feature = "executor")]
pub mod bundle;
#[cfg(feature = "executor")]
pub mod executor;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "executor")]
pub mod mask;
#[cfg(feature = "executor")]
pub mod node;
#[cfg(feature = "executor")]
mod run;
#[cfg(feature = "executor")]
pub mod unpacked;

pub use ids::{BundleHash, IdError, RunId, Version};
pub use task_run::{RunOutcome, TaskSpec};

#[cfg(feature = "executor")]
pub use bundle::{BundleError, sha256_file, unpack};
#[cfg(feature = "executor")]
pub use executor::{
    DEFAULT_KILL_GRACE, DiscardOutput, ExecError, OutputObserver, TAIL_BYTES, TaskProcess,
    become_subreaper, execute,
};
#[cfg(feature = "executor")]
pub use mask::{MASK, Masker, StreamMasker};
#[cfg(feature = "executor")]
pub use run::{BundleFile, BundleRun, RunnerError, remove_run_files, run_bundle};
