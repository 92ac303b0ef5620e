//! Finding the tasks that live in `functions/tasks/` (PRODUCT.md §2).
//!
//! A task is a JS/TS module exporting a handler (Lumo's form: `.ts .mts .cts .js .mjs .cjs`
//! exporting `run`, a default export or `handler`; no `x` bit or `#!` needed), an executable
//! file, a directory holding an executable `run` / `run.<ext>` entry point, or a Rust crate (a
//! directory with `Cargo.toml`); each is named by its path without extension. Any other
//! directory is a namespace: `functions/tasks/db/migrate.ts` is the task `db/migrate`.
//!
//! Files that are not tasks by convention (`*.d.ts`, tests, `_`/`.` names, READMEs) are left
//! alone; every other file lumo cannot run is remembered in [`Discovery::unrunnable`] with the
//! reason, so `--verbose` lists it and a config naming it gets that reason, never silence.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::bundle::assets::special_file_kind;
use crate::bundle::handler;
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
    /// Files in `functions/tasks/` lumo cannot run, by the task name they would have had: kept
    /// so `--verbose` lists them and a config naming one says why instead of "not found". A
    /// task directory whose `run` entry point is not executable is here under its own name.
    pub unrunnable: BTreeMap<String, Unrunnable>,
    /// Names whose file or directory was refused (a symlink resolving outside the project);
    /// the refusal is already reported, so a config naming one gets no second error.
    pub refused: BTreeSet<String>,
}

/// A file lumo found but cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrunnable {
    /// Relative to the project root (`functions/tasks/notes.md`).
    pub display_path: String,
    pub reason: UnrunnableReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnrunnableReason {
    /// Not a JS/TS module and without its `x` bit.
    NotExecutable,
    /// A JS/TS module exporting none of `run`, a default export or `handler` (a helper, most
    /// likely, that the tasks import).
    NoHandlerExport,
    /// Neither a regular file nor a directory (a FIFO, a socket, a device): nothing lumo could
    /// bundle, and opening a FIFO to look inside would block. The text says which kind.
    NotAFile(&'static str),
}

impl Unrunnable {
    /// Why a config naming this file as a task is wrong, and what to do.
    pub fn problem(&self) -> String {
        let path = &self.display_path;
        match self.reason {
            UnrunnableReason::NotExecutable => {
                format!("`{path}` is not executable; run `chmod +x {path}`")
            }
            UnrunnableReason::NoHandlerExport => format!(
                "`{path}` exports none of `run`, a default export or `handler`, so it is not a \
                 task; export the handler lumo calls, e.g. \
                 `export const run = async (ctx) => ({{ success: true, message: 'done' }})`"
            ),
            UnrunnableReason::NotAFile(kind) => {
                format!("`{path}` is {kind}, not a task: a task is a regular file or a directory")
            }
        }
    }

    /// The `--verbose` line for a file that is left alone.
    pub fn note(&self) -> String {
        let path = &self.display_path;
        match self.reason {
            UnrunnableReason::NotExecutable => {
                format!("`{path}` is not a task (not a JS/TS handler, and not executable); ignored")
            }
            UnrunnableReason::NoHandlerExport => format!(
                "`{path}` is not a task (it exports none of `run`, a default export or \
                 `handler`); ignored"
            ),
            UnrunnableReason::NotAFile(kind) => {
                format!("`{path}` is not a task (it is {kind}); ignored")
            }
        }
    }
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
            let path = entry.path();
            // Follow symlinks: a task may be linked in from elsewhere in the project, but not
            // from outside it (a bundle holds only what is inside the project, as with
            // `copyAssets`), so a link that resolves outside is refused here. One `stat` serves
            // the convention and the checks after it.
            let meta = fs::metadata(&path);
            if not_a_task_by_convention(file_name, meta.as_ref().is_ok_and(fs::Metadata::is_dir)) {
                continue;
            }
            let meta = match meta {
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
                    self.add_task(DiscoveredTask {
                        name,
                        source: TaskSource::Crate { dir: path.clone() },
                        display_path: display(root, &path),
                    });
                    continue;
                }
                match find_entry_point(&path) {
                    Ok(EntryPoint::Executable(entry)) => self.add_task(DiscoveredTask {
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
                        self.found.unrunnable.insert(
                            name.clone(),
                            Unrunnable {
                                display_path: display(root, &path.join(entry)),
                                reason: UnrunnableReason::NotExecutable,
                            },
                        );
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
                    continue;
                }
                let executable = meta.permissions().mode() & 0o111 != 0;
                let source = if handler::is_module_file(file_name) {
                    match handler::file_exports_handler(&path) {
                        Ok(true) => Ok(TaskSource::Handler { path: path.clone() }),
                        // An executable script that happens to be JS (`#!/usr/bin/env node`)
                        // stays a program, as before handlers were known.
                        Ok(false) if executable => Ok(TaskSource::File { path: path.clone() }),
                        Ok(false) => Err(UnrunnableReason::NoHandlerExport),
                        Err(e) => {
                            self.problems.push(problem_at(
                                root,
                                &path,
                                format!("cannot read: {e}"),
                            ));
                            continue;
                        }
                    }
                } else if executable {
                    Ok(TaskSource::File { path: path.clone() })
                } else {
                    Err(UnrunnableReason::NotExecutable)
                };
                let display_path = display(root, &path);
                match source {
                    Ok(source) => self.add_task(DiscoveredTask {
                        name,
                        source,
                        display_path,
                    }),
                    Err(reason) => {
                        self.found.unrunnable.insert(
                            name,
                            Unrunnable {
                                display_path,
                                reason,
                            },
                        );
                    }
                }
            } else {
                // A FIFO, socket or device: never opened (a FIFO would block discovery), but
                // remembered, so `--verbose` lists it and a config naming it says what it is.
                let name = format!("{prefix}{}", task_stem(file_name));
                if is_link && self.outside_root(&path) {
                    self.refuse_outside(&path, name);
                    continue;
                }
                self.found.unrunnable.insert(
                    name,
                    Unrunnable {
                        display_path: display(root, &path),
                        reason: UnrunnableReason::NotAFile(special_file_kind(&meta)),
                    },
                );
            }
        }
    }

    /// Keeps a task whose name obeys the config keys' rule; any other is refused naming its
    /// file: a newline or a space in a name splits CI log lines, and no config key could name
    /// it to tune it.
    fn add_task(&mut self, task: DiscoveredTask) {
        if crate::config::is_task_name(&task.name) {
            self.found.tasks.push(task);
            return;
        }
        self.problems.push(ConfigProblem {
            // Escaped: a newline in the key would split the error line it is meant to explain.
            key: task.display_path.escape_debug().to_string(),
            message: format!(
                "its name would be the task name \"{}\", which no config key can name: {}; \
                 rename the file (or its directory)",
                task.name.escape_debug(),
                crate::config::TASK_NAME_RULE
            ),
        });
        self.found.refused.insert(task.name);
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
        } else if !handler::is_module_file(name) {
            // A `run.ts` needs no `x` bit: it is a handler task of its own (`<dir>/run`), so
            // `chmod +x` would be the wrong advice.
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
            crate::quoted::list(candidates)
        )),
    }
}

/// Files and directories in `functions/tasks/` that are never tasks, whatever they hold, and
/// are not reported: hidden and `_`-prefixed names (helpers, editor files), type declarations,
/// tests and their `__tests__` folders, READMEs, and a nested `node_modules`. Documented in the
/// README ("Writing tasks").
fn not_a_task_by_convention(file_name: &str, is_dir: bool) -> bool {
    if file_name.starts_with('.') || file_name.starts_with('_') {
        return true;
    }
    if is_dir {
        return file_name == "node_modules";
    }
    let lower = file_name.to_ascii_lowercase();
    lower.starts_with("readme")
        || [".d.ts", ".d.mts", ".d.cts"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        || lower.contains(".test.")
        || lower.contains(".spec.")
}

/// Why a config entry naming `name` finds no task when a part of its path starts with `_` or
/// `.`: such files are never tasks ([`not_a_task_by_convention`]), so the entry is told that
/// rather than "no task file" beside the file it names, which it names as it is on disk under
/// `tasks_dir` (`_shared` is `_shared.ts`). `None` for any other name.
pub fn excluded_by_convention(tasks_dir: &Path, name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('/').collect();
    let index = parts
        .iter()
        .position(|part| part.starts_with('_') || part.starts_with('.'))?;
    let path = file_named_by(tasks_dir, name);
    let part = if index + 1 == parts.len() {
        path.rsplit('/').next().unwrap_or(parts[index])
    } else {
        parts[index]
    };
    let (prefix, convention) = if part.starts_with('_') {
        (
            "_",
            "by convention such files and folders are helpers for the tasks to import, not tasks",
        )
    } else {
        (".", "by convention hidden files and folders are not tasks")
    };
    Some(format!(
        "`{part}` starts with `{prefix}`: {convention}, so `{TASKS_DIR}/{path}` never runs; \
         rename it without the `{prefix}` to make it a task, or remove this entry"
    ))
}

/// The file under `tasks_dir` that task name `name` stands for, as a path from `tasks_dir`:
/// `name` itself when it exists (a directory, a file without an extension), else the one file
/// beside it whose name without its extension is `name`'s last part (`_shared` →
/// `_shared.ts`); `name` when there is none, or more than one.
fn file_named_by(tasks_dir: &Path, name: &str) -> String {
    if tasks_dir.join(name).exists() {
        return name.to_owned();
    }
    let (parent, stem) = name.rsplit_once('/').unwrap_or(("", name));
    let Ok(entries) = fs::read_dir(tasks_dir.join(parent)) else {
        return name.to_owned();
    };
    let mut found = entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|file| task_stem(file) == stem);
    match (found.next(), found.next()) {
        (Some(file), None) if parent.is_empty() => file,
        (Some(file), None) => format!("{parent}/{file}"),
        _ => name.to_owned(),
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
        write(root, "functions/tasks/_private.sh", "", true);

        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<_> = found.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["db/migrate", "run-migrations", "seed", "warm-cache"]
        );
        assert_eq!(found.tasks[3].source.kind(), "directory");
        assert_eq!(found.tasks[2].source.kind(), "rust");
        assert_eq!(
            found.unrunnable["notes"].reason,
            UnrunnableReason::NotExecutable
        );
    }

    const HANDLER: &str = "import { tasks } from '@lumo-framework/core';\n\
        export const run: tasks.TaskHandler = async (ctx) => ({ success: true, message: 'ok' });\n";

    /// Regression (issue 9): an undeclared `warm-cache.ts` was silently ignored, and a declared
    /// one was told to `chmod +x`. Every handler module is a task, without an `x` bit.
    #[test]
    fn every_js_or_ts_module_exporting_a_handler_is_a_task() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for ext in handler::MODULE_EXTENSIONS {
            write(
                root,
                &format!("functions/tasks/t-{ext}.{ext}"),
                HANDLER,
                false,
            );
        }
        write(root, "functions/tasks/database/migrate.ts", HANDLER, false);
        write(
            root,
            "functions/tasks/default.mjs",
            "export default async () => ({ success: true, message: 'ok' });",
            false,
        );
        write(
            root,
            "functions/tasks/legacy.cjs",
            "module.exports.handler = async () => ({ success: true, message: 'ok' });",
            false,
        );
        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        let handlers: Vec<_> = found
            .tasks
            .iter()
            .filter(|t| matches!(t.source, TaskSource::Handler { .. }))
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            handlers,
            [
                "database/migrate",
                "default",
                "legacy",
                "t-cjs",
                "t-cts",
                "t-js",
                "t-mjs",
                "t-mts",
                "t-ts"
            ]
        );
        assert!(found.unrunnable.is_empty(), "{:?}", found.unrunnable);
        assert_eq!(
            found.tasks[0].display_path,
            "functions/tasks/database/migrate.ts"
        );
        assert_eq!(found.tasks[0].source.kind(), "handler");
    }

    #[test]
    fn files_that_are_not_tasks_by_convention_are_left_alone_and_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "functions/tasks/types.d.ts",
            "functions/tasks/env.d.mts",
            "functions/tasks/migrate.test.ts",
            "functions/tasks/migrate.spec.js",
            "functions/tasks/__tests__/migrate.ts",
            "functions/tasks/_shared.ts",
            "functions/tasks/_lib/db.ts",
            "functions/tasks/.eslintrc.js",
            "functions/tasks/README.md",
            "functions/tasks/readme.txt",
            "functions/tasks/node_modules/pkg/index.js",
        ] {
            write(root, rel, HANDLER, false);
        }
        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(found.tasks.is_empty(), "{:?}", found.tasks);
        assert!(found.unrunnable.is_empty(), "{:?}", found.unrunnable);
    }

    #[test]
    fn a_module_without_a_handler_and_a_plain_data_file_are_remembered_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "functions/tasks/lib/helper.ts",
            "export enum Level { Low, High }\n",
            false,
        );
        write(root, "functions/tasks/pages.txt", "/\n", false);
        // An executable JS script without a handler stays a program, as before.
        write(
            root,
            "functions/tasks/script.mjs",
            "#!/usr/bin/env node\nconsole.log('hi')\n",
            true,
        );
        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        let helper = &found.unrunnable["lib/helper"];
        assert_eq!(helper.reason, UnrunnableReason::NoHandlerExport);
        assert!(
            helper.problem().contains("exports none of `run`"),
            "{helper:?}"
        );
        assert!(helper.note().contains("functions/tasks/lib/helper.ts"));
        assert!(!helper.problem().contains("chmod"));
        let data = &found.unrunnable["pages"];
        assert!(
            data.problem()
                .contains("chmod +x functions/tasks/pages.txt")
        );
        assert_eq!(found.tasks.len(), 1);
        assert_eq!(found.tasks[0].source.kind(), "file");
    }

    /// Regression (verify of issues 9/10): a FIFO in `functions/tasks/` was dropped without a
    /// word, though anything there lumo cannot run is to be reported, and a config naming it
    /// was told "no task file".
    #[test]
    fn a_fifo_or_socket_among_the_tasks_is_remembered_with_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "functions/tasks/ok.sh", "#!/bin/sh\n", true);
        let fifo = root.join("functions/tasks/pipe.ts");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo failed");
        let _socket =
            std::os::unix::net::UnixListener::bind(root.join("functions/tasks/sock")).unwrap();
        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(found.tasks.len(), 1, "{:?}", found.tasks);
        let pipe = &found.unrunnable["pipe"];
        assert_eq!(
            pipe.note(),
            "`functions/tasks/pipe.ts` is not a task (it is a FIFO (named pipe)); ignored"
        );
        assert!(
            pipe.problem()
                .contains("is a FIFO (named pipe), not a task")
        );
        assert_eq!(
            found.unrunnable["sock"].reason,
            UnrunnableReason::NotAFile("a socket")
        );
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

    /// Regression (issue 10, defect 4): a task file named with a newline, a space or an emoji
    /// was discovered and run, though no config key could name it and its name split CI log
    /// lines. Such a file is refused naming it; conventional non-tasks stay ignored.
    #[test]
    fn a_task_file_whose_name_breaks_the_config_key_rule_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "functions/tasks/ok-task.sh", "#!/bin/sh\n", true);
        write(root, "functions/tasks/two\nlines.sh", "#!/bin/sh\n", true);
        write(root, "functions/tasks/with space.ts", HANDLER, false);
        write(
            root,
            "functions/tasks/rocket-\u{1F680}.sh",
            "#!/bin/sh\n",
            true,
        );
        write(root, "functions/tasks/my dir/run", "#!/bin/sh\n", true);
        write(root, "functions/tasks/_odd name.sh", "#!/bin/sh\n", true);
        write(root, "functions/tasks/.odd name.sh", "#!/bin/sh\n", true);
        write(root, "functions/tasks/odd name.d.ts", HANDLER, false);
        write(root, "functions/tasks/odd name.test.ts", HANDLER, false);
        write(root, "functions/tasks/README odd.md", "", false);

        let (found, problems) = discover(root);
        let names: Vec<_> = found.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ok-task"]);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "functions/tasks/my dir",
                "functions/tasks/rocket-\u{1F680}.sh",
                "functions/tasks/two\\nlines.sh",
                "functions/tasks/with space.ts",
            ],
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .all(|p| p.message.contains("no config key can name")
                    && p.message.contains("letters, digits")
                    && !p.message.contains('\n')),
            "{problems:?}"
        );
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
            found.unrunnable["warm"].display_path,
            "functions/tasks/warm/run.sh"
        );
    }
}
