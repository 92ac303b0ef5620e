//! Finding the tasks that live in `functions/tasks/` (PRODUCT.md §2).
//!
//! A task is an executable file (named by its path without extension), a directory holding an
//! executable `run` / `run.<ext>` entry point, or a Rust crate (a directory with `Cargo.toml`).
//! Any other directory is a namespace: `functions/tasks/db/migrate.sh` is the task `db/migrate`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::ConfigProblem;
use crate::task::TaskSource;

/// Where tasks live, relative to the project root.
pub const TASKS_DIR: &str = "functions/tasks";

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
    /// config naming one can say "not executable" instead of "not found". A task directory
    /// whose `run` entry point is not executable is here under the directory's name.
    pub not_executable: BTreeMap<String, String>,
    /// Names whose file or directory was refused (a symlink resolving outside the project);
    /// the refusal is already reported, so a config naming one gets no second error.
    pub refused: BTreeSet<String>,
}

/// Scan `<root>/functions/tasks`: every task found, and every problem (collisions, symlinks
/// out of the project, unreadable entries). A missing directory is not an error: a project may
/// have only `command:` tasks. The tasks come back even when there are problems, so the
/// config can still be checked against them in the same round.
pub fn discover(root: &Path) -> (Discovery, Vec<ConfigProblem>) {
    let base = root.join(TASKS_DIR);
    let mut scan = Scan {
        root,
        canonical_root: fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        found: Discovery::default(),
        problems: Vec::new(),
    };
    if base.is_dir() {
        if scan.outside_root(&base) {
            scan.refuse_outside(&base, String::new());
        } else {
            scan.scan_dir(&base, "");
        }
    }
    let Scan {
        mut found,
        mut problems,
        ..
    } = scan;
    check_collisions(&found.tasks, &mut problems);
    found.tasks.sort_by(|a, b| a.name.cmp(&b.name));
    (found, problems)
}

/// One walk of `functions/tasks/`.
struct Scan<'a> {
    root: &'a Path,
    /// Symlinks are judged by where they resolve, so the root is compared resolved too.
    canonical_root: PathBuf,
    found: Discovery,
    problems: Vec<ConfigProblem>,
}

impl Scan<'_> {
    fn scan_dir(&mut self, dir: &Path, prefix: &str) {
        let root = self.root;
        let mut entries = match fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => {
                self.problems
                    .push(problem_at(root, dir, format!("cannot read directory: {e}")));
                return;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                self.problems.push(problem_at(
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
            // Follow symlinks: a task may be linked in from elsewhere in the project, but not
            // from outside it (a bundle holds only what is inside the project, as with
            // `copyAssets`), so a link that resolves outside is refused here.
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.problems
                        .push(problem_at(root, &path, format!("cannot read: {e}")));
                    continue;
                }
            };
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if meta.is_dir() {
                let name = format!("{prefix}{file_name}");
                if is_link && self.outside_root(&path) {
                    self.refuse_outside(&path, name);
                    continue;
                }
                if path.join("Cargo.toml").is_file() {
                    self.found.tasks.push(DiscoveredTask {
                        name,
                        source: TaskSource::Crate { dir: path.clone() },
                        display_path: display(root, &path),
                    });
                    continue;
                }
                match find_entry_point(&path) {
                    Ok(EntryPoint::Executable(entry)) => self.found.tasks.push(DiscoveredTask {
                        name,
                        source: TaskSource::Directory {
                            dir: path.clone(),
                            entry,
                        },
                        display_path: display(root, &path),
                    }),
                    Ok(EntryPoint::NotExecutable(entry)) => {
                        // Meant as a task directory, but `run` lacks its `x` bit: a config
                        // naming the task says `chmod +x` on that file. The directory is still
                        // scanned as a namespace, as any directory without an entry point is.
                        self.found
                            .not_executable
                            .insert(name.clone(), display(root, &path.join(entry)));
                        self.scan_dir(&path, &format!("{name}/"));
                    }
                    Ok(EntryPoint::Absent) => self.scan_dir(&path, &format!("{name}/")),
                    Err(message) => self.problems.push(problem_at(root, &path, message)),
                }
            } else if meta.is_file() {
                let stem = task_stem(file_name);
                let name = format!("{prefix}{stem}");
                if is_link && self.outside_root(&path) {
                    self.refuse_outside(&path, name);
                } else if meta.permissions().mode() & 0o111 != 0 {
                    self.found.tasks.push(DiscoveredTask {
                        name,
                        source: TaskSource::File { path: path.clone() },
                        display_path: display(root, &path),
                    });
                } else {
                    self.found.not_executable.insert(name, display(root, &path));
                }
            }
        }
    }

    /// Whether `path` resolves (through symlinks) to somewhere outside the project root.
    fn outside_root(&self, path: &Path) -> bool {
        fs::canonicalize(path).is_ok_and(|p| !p.starts_with(&self.canonical_root))
    }

    fn refuse_outside(&mut self, path: &Path, name: String) {
        let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.problems.push(problem_at(
            self.root,
            path,
            format!(
                "resolves to `{}`, outside the project root `{}`, through a symlink; a bundle \
                 holds only files inside the project: move the task into the project, or link \
                 to a file inside it",
                target.display(),
                self.root.display()
            ),
        ));
        if !name.is_empty() {
            self.found.refused.insert(name);
        }
    }
}

/// What a directory holds as its `run` / `run.<ext>` entry point.
enum EntryPoint {
    /// The one executable entry point.
    Executable(String),
    /// No executable one, but this `run` file is there without its `x` bit.
    NotExecutable(String),
    /// No `run` file: the directory is a namespace.
    Absent,
}

/// The `run` or `run.<ext>` entry point of a task directory, if it has one.
fn find_entry_point(dir: &Path) -> Result<EntryPoint, String> {
    let mut candidates = Vec::new();
    let mut not_executable = Vec::new();
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
        if !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 != 0 {
            candidates.push(name.to_string());
        } else {
            not_executable.push(name.to_string());
        }
    }
    candidates.sort();
    not_executable.sort();
    match candidates.len() {
        0 => Ok(match not_executable.into_iter().next() {
            Some(entry) => EntryPoint::NotExecutable(entry),
            None => EntryPoint::Absent,
        }),
        1 => Ok(candidates
            .pop()
            .map_or(EntryPoint::Absent, EntryPoint::Executable)),
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

        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
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
        let (_, problems) = discover(root);
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
        let (_, problems) = discover(root);
        assert!(
            problems[0]
                .message
                .contains("exactly one executable entry point")
        );
    }

    #[test]
    fn missing_tasks_directory_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (found, problems) = discover(dir.path());
        assert!(found.tasks.is_empty() && problems.is_empty());
    }

    /// Regression: a task file linked to a file outside the project was bundled and run,
    /// though `copyAssets` refuses the same link.
    #[test]
    fn a_task_symlinked_outside_the_project_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(outside.path(), "x.sh", "#!/bin/sh\n", true);
        write(outside.path(), "d/run", "#!/bin/sh\n", true);
        write(root, "functions/tasks/inside.sh", "#!/bin/sh\n", true);
        fs::create_dir_all(root.join("shared")).unwrap();
        write(root, "shared/real.sh", "#!/bin/sh\n", true);
        std::os::unix::fs::symlink(
            outside.path().join("x.sh"),
            root.join("functions/tasks/linkout.sh"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("d"),
            root.join("functions/tasks/dirout"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            root.join("shared/real.sh"),
            root.join("functions/tasks/linkin.sh"),
        )
        .unwrap();

        let (found, problems) = discover(root);
        let names: Vec<_> = found.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["inside", "linkin"],
            "a link inside the project is fine"
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["functions/tasks/dirout", "functions/tasks/linkout.sh"],
            "{problems:?}"
        );
        assert!(
            problems[1].message.contains("outside the project root"),
            "{problems:?}"
        );
        assert!(found.refused.contains("linkout") && found.refused.contains("dirout"));
    }

    /// Regression: a task directory whose `run` was not executable was silently a namespace,
    /// so a config naming it read "no task file" instead of the `chmod +x` hint.
    #[test]
    fn a_directory_with_a_non_executable_run_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "functions/tasks/warm/run.sh", "#!/bin/sh\n", false);
        let (found, problems) = discover(root);
        assert!(
            found.tasks.is_empty() && problems.is_empty(),
            "{problems:?}"
        );
        assert_eq!(
            found.not_executable.get("warm").map(String::as_str),
            Some("functions/tasks/warm/run.sh")
        );
    }
}
