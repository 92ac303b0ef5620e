//! End-to-end tests of the `lumo` binary on the `local` provider: real processes, each test in
//! its own temporary project, everything checked through what a user sees (exit codes, stderr,
//! `--json` documents parsed into typed structs, `lumo history`/`logs`/`status`) and through
//! what the tasks themselves observed (files they write to an `out/` directory beside the
//! project).
//!
//! One module per topic, so a new test has an obvious home and a failure names its area;
//! helpers shared between topics live in `tests/support` (`support::local` for this suite).

#![allow(clippy::unwrap_used)] // A panic is how a test reports.

#[path = "../support/mod.rs"]
mod support;

mod bundle_cache;
mod ci_reports;
mod config_errors;
mod deploy_flags;
mod init_and_build;
mod json_and_exit_codes;
mod lifecycle;
mod logs;
mod lumo_compat;
mod manual_run;
mod output_and_secrets;
mod processes;
mod retention;
mod task_definitions;
mod text_output;
