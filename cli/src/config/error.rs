//! What can go wrong between "where is the config?" and a validated [`ProjectConfig`], worded
//! for the user: every variant names the file, and validation problems name the key path and
//! what is allowed (PRODUCT.md §3, §8). The binary maps every variant to exit code 2.
//!
//! [`ProjectConfig`]: super::ProjectConfig

use super::ProjectConfig;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// One thing wrong with one key of the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigProblem {
    /// Dotted path of the offending key, e.g. `tasks.run-migrations.timeout`; list items are
    /// `runOn[1]`.
    pub key: String,
    /// What is wrong, what is allowed and what was given.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No config at the given path, or none in the start directory and its ancestors.
    #[error("{}", not_found_message(path))]
    NotFound { path: PathBuf },

    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The config (or a file it imports, then `path` names that file) did not parse, threw, or
    /// took too long. `message` starts with the JavaScript error name (`SyntaxError: ...`).
    #[error("{}: {message}", location(path, *line, *column))]
    Evaluate {
        path: PathBuf,
        line: Option<u32>,
        column: Option<u32>,
        message: String,
    },

    #[error(
        "`{}` does not export a configuration object; hint: end it with \
         `export default {{ projectName: '...', tasks: {{ ... }} }}` or `module.exports = {{ ... }}`",
        path.display()
    )]
    NoExport { path: PathBuf },

    #[error("{}", invalid_message(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
        /// What could be made of the config despite its problems (invalid values replaced by
        /// their defaults), so later checks — task files, `copyAssets` — can report theirs in
        /// the same round.
        partial: Option<Box<ProjectConfig>>,
    },
}

/// The fix (`lumo init`, `--config PATH`) is the CLI error's hint, so it is printed once.
fn not_found_message(path: &Path) -> String {
    // A directory is where the search for `lumo.config.js` started; anything else is the file
    // that was asked for (`--config PATH`, or the search's candidate).
    if path.is_dir() {
        format!(
            "no `{}` in `{}` or any parent directory",
            super::CONFIG_FILE_NAME,
            path.display()
        )
    } else {
        format!("`{}` does not exist", path.display())
    }
}

fn location(path: &Path, line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

fn invalid_message(path: &Path, problems: &[ConfigProblem]) -> String {
    let count = match problems.len() {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    let mut message = format!("invalid configuration in `{}` ({count}):", path.display());
    for problem in problems {
        message.push_str("\n  - ");
        message.push_str(&problem.to_string());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_error_reads_like_a_compiler_location() {
        let error = ConfigError::Evaluate {
            path: PathBuf::from("lumo.config.js"),
            line: Some(12),
            column: Some(5),
            message: "SyntaxError: unexpected token".into(),
        };
        assert_eq!(
            error.to_string(),
            "lumo.config.js:12:5: SyntaxError: unexpected token"
        );
    }

    #[test]
    fn invalid_lists_every_problem_on_its_own_line() {
        let error = ConfigError::Invalid {
            partial: None,
            path: PathBuf::from("lumo.config.js"),
            problems: vec![
                ConfigProblem {
                    key: "projectName".into(),
                    message: "is required".into(),
                },
                ConfigProblem {
                    key: "tasks.a.timeout".into(),
                    message: "must be a whole number of seconds from 1 to 900, got 1200".into(),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "invalid configuration in `lumo.config.js` (2 problems):\n  \
             - `projectName`: is required\n  \
             - `tasks.a.timeout`: must be a whole number of seconds from 1 to 900, got 1200"
        );
    }

    #[test]
    fn not_found_names_the_missing_file_or_the_search() {
        let message = ConfigError::NotFound {
            path: PathBuf::from("/nowhere/lumo.config.js"),
        }
        .to_string();
        assert!(
            message.contains("`/nowhere/lumo.config.js` does not exist"),
            "{message}"
        );
        // Regression: an explicit `--config` path with another name was reported as a search
        // of its parent directories.
        let message = ConfigError::NotFound {
            path: PathBuf::from("/nowhere/lumo.prod.js"),
        }
        .to_string();
        assert!(
            message.contains("`/nowhere/lumo.prod.js` does not exist"),
            "{message}"
        );

        let dir = std::env::temp_dir();
        let message = ConfigError::NotFound { path: dir }.to_string();
        assert!(message.contains("or any parent directory"), "{message}");
    }
}
