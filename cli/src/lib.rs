//! lumo's CLI as a library: the `lumo` binary (`main.rs`) only parses and dispatches, and the
//! test suites (the backend conformance suite above all) reach the same modules.

pub mod access;
pub mod actor;
pub mod args;
pub mod backend;
pub mod bundle;
pub mod color;
pub mod commands;
pub mod config;
pub mod confirm;
pub mod deployment;
pub mod diagnostics;
pub mod error;
pub mod exec;
pub mod execute;
pub mod flag_source;
pub mod flag_values;
pub mod live_runs;
pub mod lock;
pub mod manual_run;
pub mod operation;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod project;
pub mod quoted;
pub mod report;
pub mod run_preview;
pub mod stop;
pub mod suggest;
pub mod task;
pub mod version;
pub mod working_copy;

#[cfg(test)]
mod import_cycles;
