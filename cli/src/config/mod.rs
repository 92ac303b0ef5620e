//! Loading `lumo.config.js`: evaluation in an embedded JS engine, then validation into
//! [`ProjectConfig`] (PRODUCT.md §3).
//!
//! ```text
//! find_config(dir) ─► load(path) ─► engine::evaluate ─► JSON ─► validate::validate ─► ProjectConfig
//! ```
//! Nothing is bundled, uploaded or run before `load` returns `Ok`; every failure is a
//! [`ConfigError`] (exit code 2).

pub(crate) mod checks;
mod engine;
mod error;
mod model;
mod modules;
pub mod retention;
mod task;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigProblem};
pub use model::*;
pub(crate) use task::{TASK_NAME_RULE, is_task_name};

/// The file lumo looks for, as in the Lumo Framework.
pub const CONFIG_FILE_NAME: &str = "lumo.config.js";

/// `lumo.config.js` in `start` or its nearest ancestor directory.
///
/// A relative `start` is taken from the current directory, and the path returned is absolute
/// then. `None` when no directory up to the root has one.
pub fn find_config(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|candidate| candidate.is_file())
}

/// Evaluates and validates the config at `path` (a file, or a directory holding
/// `lumo.config.js`).
pub fn load(path: &Path) -> Result<ProjectConfig, ConfigError> {
    load_within(path, None, engine::TIME_LIMIT)
}

/// [`load`] for `--provider`: the override replaces the config's `provider`, whose value is
/// then not checked, so a Lumo Framework config for a provider lumo does not know (such as
/// `cloudflare`) still runs with `--provider local` (PRODUCT.md §7).
pub fn load_with_provider(
    path: &Path,
    provider: Option<Provider>,
) -> Result<ProjectConfig, ConfigError> {
    load_within(path, provider, engine::TIME_LIMIT)
}

fn load_within(
    path: &Path,
    provider: Option<Provider>,
    time_limit: Duration,
) -> Result<ProjectConfig, ConfigError> {
    let path = if path.is_dir() {
        path.join(CONFIG_FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let root = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Absolute, so `root` means the same thing after a task changes directory; computed without
    // touching the filesystem (no symlink resolution), matching what the user typed.
    let root = std::path::absolute(&root).unwrap_or(root);
    let evaluated = engine::evaluate(&path, &root, time_limit)?;
    validate::validate(&path, &root, &evaluated, provider).map_err(|(problems, partial)| {
        ConfigError::Invalid {
            path,
            problems,
            partial: Some(partial),
        }
    })
}
