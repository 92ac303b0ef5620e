//! A task and what it is made of: the one shape the project (config joined with discovery),
//! the bundler and the planner all share. It lives apart from all three so none of them has
//! to import another to name a task (they used to import each other in a circle).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::TaskConfig;

/// A task of the project: where it comes from and how it is configured.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub source: TaskSource,
    pub config: TaskConfig,
    /// Declared in `lumo.config.js` (otherwise found on disk and run with the defaults).
    pub declared: bool,
    /// The task's file or directory relative to the root, or `tasks.<name>.command`.
    pub display_path: String,
}

impl Task {
    /// Whether the task exists in `env` (its `environments`, when set, name it).
    pub fn exists_in(&self, env: &str) -> bool {
        self.config
            .environments
            .as_ref()
            .is_none_or(|envs| envs.iter().any(|e| e == env))
    }
}

/// What a task is made of on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSource {
    /// An executable file; it becomes the bundle's entry point under its own file name.
    File { path: PathBuf },
    /// A directory whose whole content is bundled; `entry` is its executable `run` file.
    Directory { dir: PathBuf, entry: String },
    /// A Rust crate built with cargo; its binary becomes the bundle's entry point.
    Crate { dir: PathBuf },
    /// A JS/TS module exporting a handler, bundled with what it imports into one ES module
    /// that lumo's Node entry calls (see `bundle::handler`).
    Handler { path: PathBuf },
    /// `command:` in the config, run with `sh -c` in the bundle root.
    Command { command: String },
}

impl TaskSource {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskSource::File { .. } => "file",
            TaskSource::Directory { .. } => "directory",
            TaskSource::Crate { .. } => "rust",
            TaskSource::Handler { .. } => "handler",
            TaskSource::Command { .. } => "command",
        }
    }
}

/// A dependency cycle among `tasks`, as the names along it (first repeated at the end).
pub fn find_cycle(tasks: &[Task]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, &[String]> = tasks
        .iter()
        .map(|t| (t.name.as_str(), t.config.depends_on.as_slice()))
        .collect();
    // Depth-first search with colours: 1 = on the current path, 2 = done.
    let mut colour: BTreeMap<&str, u8> = BTreeMap::new();
    for start in tasks.iter().map(|t| t.name.as_str()) {
        let mut path: Vec<(&str, usize)> = Vec::new();
        if colour.get(start).copied().unwrap_or(0) != 0 {
            continue;
        }
        colour.insert(start, 1);
        path.push((start, 0));
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let node_deps = deps.get(node).copied().unwrap_or(&[]);
            if *next < node_deps.len() {
                let dep = node_deps[*next].as_str();
                *next += 1;
                if !deps.contains_key(dep) {
                    continue;
                }
                match colour.get(dep).copied().unwrap_or(0) {
                    0 => {
                        colour.insert(dep, 1);
                        path.push((dep, 0));
                    }
                    1 => {
                        let from = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.to_string());
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                colour.insert(node, 2);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunOn;

    const BOTH: &[RunOn] = &[RunOn::Deploy, RunOn::Update];

    fn task(name: &str, run_on: &[RunOn], deps: &[&str]) -> Task {
        Task {
            name: name.into(),
            source: TaskSource::Command {
                command: "true".into(),
            },
            config: TaskConfig {
                run_on: run_on.to_vec(),
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                ..TaskConfig::default()
            },
            declared: true,
            display_path: format!("tasks.{name}.command"),
        }
    }

    #[test]
    fn cycles_are_found_and_named() {
        let tasks = [
            task("a", BOTH, &["c"]),
            task("b", BOTH, &["a"]),
            task("c", BOTH, &["b"]),
            task("d", BOTH, &[]),
        ];
        let cycle = find_cycle(&tasks).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        assert!(find_cycle(&tasks[3..]).is_none());
        let no_cycle = [
            task("a", BOTH, &[]),
            task("b", BOTH, &["a"]),
            task("c", BOTH, &["a", "b"]),
        ];
        assert!(find_cycle(&no_cycle).is_none());
    }
}
