//! Finding the tasks that live in `functions/tasks/` (PRODUCT.md §2).
//!
//! A task is an executable file (named by its path without extension), a directory holding an
//! executable `run` / `run.<ext>` entry point, or a Rust crate (a directory with `Cargo.toml`).
//! Any other directory is a namespace: `functions/tasks/db/migrate.sh` is the task `db/migrate`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::ConfigProblem;

/// Where tasks live, relative to the project root.
pub const TASKS_DIR: &str = "functions/tasks";

/// What a task is made of on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSource {
    /// An executable file; it becomes the bundle's entry point under its own file name.
    File { path: PathBuf },
    /// A directory whose whole content is bundled; `entry` is its executable `run` file.
    Directory { dir: PathBuf, entry: String },
    /// A Rust crate built with cargo; its binary becomes the bundle's entry point.
    Crate { dir: PathBuf },
    /// `command:` in the config, run with `sh -c` in the bundle root.
    Command { command: String },
}

impl TaskSource {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSource::File { .. } => "file",
            TaskSource::Directory { .. } => "directory",
            TaskSource::Crate { .. } => "rust",
            TaskSource::Command { .. } => "command",
        }
    }
}

/// A task found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTask {
    pub name: String,
    pub source: TaskSource,
    /// The path shown to users, relative to the project root (`functions/tasks/db/migrate.sh`).
    pub display_path: String,
}

/// Everything found under `functions/tasks/`.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Sorted by name.
    pub tasks: Vec<DiscoveredTask>,
    /// Regular files that are not executable, by the task name they would have had; kept so a
    /// config naming one can say "not executable" instead of "not found".
    pub not_executable: BTreeMap<String, String>,
}

/// Scan `<root>/functions/tasks`. A missing directory is not an error: a project may have only
/// `command:` tasks.
pub fn discover(root: &Path) -> Result<Discovery, Vec<ConfigProblem>> {
    let base = root.join(TASKS_DIR);
    let mut found = Discovery::default();
    let mut problems = Vec::new();
    if base.is_dir() {
        scan_dir(root, &base, "", &mut found, &mut problems);
    }
    check_collisions(&found.tasks, &mut problems);
    found.tasks.sort_by(|a, b| a.name.cmp(&b.name));
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

fn scan_dir(
    root: &Path,
    dir: &Path,
    prefix: &str,
    found: &mut Discovery,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut entries = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
        Err(e) => {
            problems.push(problem_at(root, dir, format!("cannot read directory: {e}")));
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            problems.push(problem_at(
                root,
                &entry.path(),
                "file name is not valid UTF-8".into(),
            ));
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follow symlinks: a task may be linked in from elsewhere in the project. The bundler
        // refuses anything that resolves outside the project root.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(problem_at(root, &path, format!("cannot read: {e}")));
                continue;
            }
        };
        if meta.is_dir() {
            let name = format!("{prefix}{file_name}");
            if path.join("Cargo.toml").is_file() {
                found.tasks.push(DiscoveredTask {
                    name,
                    source: TaskSource::Crate { dir: path.clone() },
                    display_path: display(root, &path),
                });
                continue;
            }
            match find_entry_point(&path) {
                Ok(Some(entry)) => found.tasks.push(DiscoveredTask {
                    name,
                    source: TaskSource::Directory {
                        dir: path.clone(),
                        entry,
                    },
                    display_path: display(root, &path),
                }),
                Ok(None) => scan_dir(root, &path, &format!("{name}/"), found, problems),
                Err(message) => problems.push(problem_at(root, &path, message)),
            }
        } else if meta.is_file() {
            let stem = task_stem(file_name);
            let name = format!("{prefix}{stem}");
            if meta.permissions().mode() & 0o111 != 0 {
                found.tasks.push(DiscoveredTask {
                    name,
                    source: TaskSource::File { path: path.clone() },
                    display_path: display(root, &path),
                });
            } else {
                found.not_executable.insert(name, display(root, &path));
            }
        }
    }
}

/// The executable `run` or `run.<ext>` file of a task directory, if it has one.
fn find_entry_point(dir: &Path) -> Result<Option<String>, String> {
    let mut candidates = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("cannot read directory: {e}"))? {
        let entry = entry.map_err(|e| format!("cannot read directory: {e}"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name != "run" && !name.starts_with("run.") {
            continue;
        }
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            candidates.push(name.to_string());
        }
    }
    candidates.sort();
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.pop()),
        _ => Err(format!(
            "a task directory needs exactly one executable entry point, found {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `migrate.sh` → `migrate`; `archive.tar.gz` → `archive.tar`; `run` → `run`.
fn task_stem(file_name: &str) -> &str {
    match file_name.rfind('.') {
        Some(i) if i > 0 => &file_name[..i],
        _ => file_name,
    }
}

/// Names must be unique after normalisation (case and `_`/`-` folded), so `Migrate.sh` and
/// `migrate.py`, or `warm_cache` and `warm-cache`, cannot both exist.
fn check_collisions(tasks: &[DiscoveredTask], problems: &mut Vec<ConfigProblem>) {
    let mut seen: BTreeMap<String, &DiscoveredTask> = BTreeMap::new();
    for task in tasks {
        let key = normalise(&task.name);
        if let Some(first) = seen.get(&key) {
            problems.push(ConfigProblem {
                key: task.display_path.clone(),
                message: format!(
                    "task name `{}` collides with `{}` from `{}`; rename one of them",
                    task.name, first.name, first.display_path
                ),
            });
        } else {
            seen.insert(key, task);
        }
    }
}

/// The form two task names are compared in for collisions.
pub fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn problem_at(root: &Path, path: &Path, message: String) -> ConfigProblem {
    ConfigProblem {
        key: display(root, path),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str, exec: bool) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, body).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_files_directories_crates_and_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "functions/tasks/run-migrations.sh",
            "#!/bin/sh\n",
            true,
        );
        write(root, "functions/tasks/db/migrate.sh", "#!/bin/sh\n", true);
        write(
            root,
            "functions/tasks/warm-cache/run.py",
            "#!/usr/bin/env python3\n",
            true,
        );
        write(root, "functions/tasks/warm-cache/lib.py", "", false);
        write(
            root,
            "functions/tasks/seed/Cargo.toml",
            "[package]\n",
            false,
        );
        write(root, "functions/tasks/notes.md", "", false);
        write(root, "functions/tasks/.hidden.sh", "", true);

        let found = discover(root).unwrap();
        let names: Vec<_> = found.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["db/migrate", "run-migrations", "seed", "warm-cache"]
        );
        assert_eq!(found.tasks[3].source.kind(), "directory");
        assert_eq!(found.tasks[2].source.kind(), "rust");
        assert!(found.not_executable.contains_key("notes"));
    }

    #[test]
    fn name_collision_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "functions/tasks/migrate.sh", "", true);
        write(root, "functions/tasks/migrate.py", "", true);
        let problems = discover(root).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("functions/tasks/migrate.py"),
            "{problems:?}"
        );
        assert_eq!(problems[0].key, "functions/tasks/migrate.sh");
    }

    #[test]
    fn two_entry_points_in_one_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "functions/tasks/t/run.sh", "", true);
        write(root, "functions/tasks/t/run.py", "", true);
        let problems = discover(root).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("exactly one executable entry point")
        );
    }

    #[test]
    fn missing_tasks_directory_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(discover(dir.path()).unwrap().tasks.is_empty());
    }
}
