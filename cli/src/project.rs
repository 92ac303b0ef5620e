//! A project: the validated config joined with the tasks found on disk. Every command starts
//! here, so every cross-check between the two (a config key without a task file, a dependency
//! on a task that does not exist, a cycle) is made once, before anything else happens.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::bundle;
use crate::bundle::discover::{self, Discovery, Unrunnable};
use crate::config::{
    self, ConfigError, ConfigProblem, ProjectConfig, Provider, TaskConfig, secret_env_var,
};
use crate::suggest;
use crate::task::{self, Task, TaskSource};

#[derive(Debug)]
pub struct Project {
    pub config: ProjectConfig,
    /// Declared tasks in declaration order, then undeclared ones by name.
    pub tasks: Vec<Task>,
    /// Files in `functions/tasks/` that are not tasks and that no config key names (a config
    /// naming one is an error): listed under `--verbose`, never silently dropped.
    pub not_tasks: Vec<Unrunnable>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid project `{}`:\n{}", path.display(), list(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<ConfigProblem>,
    },
    #[error("no environment given and `{}` sets no `environment`", path.display())]
    NoEnvironment { path: PathBuf },
    #[error("unknown environment `{env}`: `{}` declares {}{hint}", path.display(), crate::quoted::list(known))]
    UnknownEnvironment {
        path: PathBuf,
        env: String,
        known: Vec<String>,
        hint: String,
    },
    #[error(
        "invalid environment name `{env}`: use 1 to 40 of `a-z`, `0-9` and `-`, starting with a letter or digit"
    )]
    BadEnvironmentName { env: String },
    #[error("unknown task `{task}`{hint}")]
    UnknownTask { task: String, hint: String },
    #[error(
        "task `{task}` does not exist in environment `{env}` (its `environments` are {})",
        crate::quoted::list(allowed)
    )]
    TaskNotInEnvironment {
        task: String,
        env: String,
        allowed: Vec<String>,
    },
}

pub fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - `{}`: {}", p.key, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Project {
    /// Loads the config (`--config`, else `lumo.config.js` here or above) and discovers tasks.
    pub fn load(
        config_path: Option<&Path>,
        provider: Option<Provider>,
    ) -> Result<Project, ProjectError> {
        let path = match config_path {
            Some(p) => p.to_path_buf(),
            None => {
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                config::find_config(&cwd).ok_or(ConfigError::NotFound { path: cwd })?
            }
        };
        let started = std::time::Instant::now();
        // `--provider` replaces the config's provider before validation, so any config (a Lumo
        // one with a provider lumo does not know, say) runs locally with `--provider local`.
        let (config, mut problems) = match config::load_with_provider(&path, provider) {
            Ok(config) => (config, Vec::new()),
            Err(ConfigError::Invalid {
                problems,
                partial: Some(partial),
                ..
            }) => (*partial, problems),
            Err(e) => return Err(e.into()),
        };
        tracing::debug!(
            "config loaded in {:.3}ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        let config_invalid = !problems.is_empty();
        let (discovery, mut on_disk) = discover::discover(&config.root);
        problems.append(&mut on_disk);
        let (project, mut mismatches) = Project::resolve(config, discovery);
        problems.append(&mut mismatches);
        if problems.is_empty() {
            return Ok(project);
        }
        // Something is wrong already: say everything the bundler would say too, so one round
        // of fixes is enough. (A valid project leaves these checks to the bundler, once.)
        for problem in bundle::check_sources(project.root(), &project.tasks) {
            if !problems.contains(&problem) {
                problems.push(problem);
            }
        }
        let path = project.config.path.clone();
        Err(if config_invalid {
            ConfigError::Invalid {
                path,
                problems,
                partial: None,
            }
            .into()
        } else {
            ProjectError::Invalid { path, problems }
        })
    }

    /// Joins config and discovery: the project as far as it goes, and every mismatch.
    pub fn resolve(config: ProjectConfig, discovery: Discovery) -> (Project, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut on_disk: BTreeMap<String, _> = discovery
            .tasks
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let disk_names: Vec<String> = on_disk.keys().cloned().collect();
        let mut tasks = Vec::new();
        for (name, task_config) in &config.tasks {
            let key = format!("tasks.{name}");
            let found = on_disk.remove(name);
            let source = match (&task_config.command, found) {
                (Some(command), None) => Some((
                    TaskSource::Command {
                        command: command.clone(),
                    },
                    format!("{key}.command"),
                )),
                (Some(_), Some(file)) => {
                    problems.push(ConfigProblem {
                        key: format!("{key}.command"),
                        message: format!(
                            "is set, but `{}` is also this task; a task is either a file or a `command`, remove one",
                            file.display_path
                        ),
                    });
                    None
                }
                (None, Some(file)) => Some((file.source, file.display_path)),
                // Discovery has said why this task's file was refused.
                (None, None) if discovery.refused.contains(name) => None,
                (None, None) => {
                    let message = match discovery.unrunnable.get(name) {
                        Some(file) => file.problem(),
                        None => discover::excluded_by_convention(&config.root.join(discover::TASKS_DIR), name).unwrap_or_else(|| format!(
                            "no task file `{}/{name}` (a JS/TS module exporting `run`, an executable file, a directory with an executable `run`, or a Rust crate) and no `command`{}",
                            discover::TASKS_DIR,
                            suggest::hint_suffix(name, disk_names.iter().map(String::as_str)),
                        )),
                    };
                    problems.push(ConfigProblem { key, message });
                    None
                }
            };
            if let Some((source, display_path)) = source {
                tasks.push(Task {
                    name: name.clone(),
                    source,
                    config: task_config.clone(),
                    declared: true,
                    display_path,
                });
            }
        }
        // Tasks on disk the config does not mention run with the defaults, after declared ones.
        for (name, found) in on_disk {
            tasks.push(Task {
                name,
                source: found.source,
                config: TaskConfig::default(),
                declared: false,
                display_path: found.display_path,
            });
        }
        check_command_collisions(&tasks, &mut problems);
        check_dependencies(&config, &tasks, &mut problems);
        let not_tasks = discovery
            .unrunnable
            .into_iter()
            .filter(|(name, _)| !config.tasks.contains_key(name))
            .map(|(_, file)| file)
            .collect();
        (
            Project {
                config,
                tasks,
                not_tasks,
            },
            problems,
        )
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// `.lumo/` in the project: the local provider's store, and the bundle cache of both.
    pub fn lumo_dir(&self) -> PathBuf {
        self.config.root.join(".lumo")
    }

    pub fn task(&self, name: &str) -> Result<&Task, ProjectError> {
        self.tasks
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ProjectError::UnknownTask {
                task: name.to_string(),
                hint: suggest::hint_suffix(name, self.tasks.iter().map(|t| t.name.as_str())),
            })
    }

    /// A task that must exist in `env`.
    pub fn task_in(&self, name: &str, env: &str) -> Result<&Task, ProjectError> {
        let task = self.task(name)?;
        if task.exists_in(env) {
            Ok(task)
        } else {
            Err(ProjectError::TaskNotInEnvironment {
                task: name.to_string(),
                env: env.to_string(),
                allowed: task.config.environments.clone().unwrap_or_default(),
            })
        }
    }

    /// The tasks that exist in `env`, in run order before dependencies are applied.
    pub fn tasks_in<'a>(&'a self, env: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.iter().filter(move |t| t.exists_in(env))
    }

    /// Whether the provider's backend can be opened (see [`ProjectConfig::backend_ready`]).
    pub fn backend_ready(&self) -> Result<(), ProjectError> {
        Ok(self.config.backend_ready()?)
    }

    /// `--env`, else the config's `environment`; checked against `environments` when declared.
    pub fn resolve_env(&self, flag: Option<&str>) -> Result<String, ProjectError> {
        let env = match flag.or(self.config.environment.as_deref()) {
            Some(e) => e.to_string(),
            None => {
                return Err(ProjectError::NoEnvironment {
                    path: self.config.path.clone(),
                });
            }
        };
        if !valid_env_name(&env) {
            return Err(ProjectError::BadEnvironmentName { env });
        }
        if let Some(known) = &self.config.environments
            && !known.contains(&env)
        {
            return Err(ProjectError::UnknownEnvironment {
                path: self.config.path.clone(),
                hint: suggest::hint_suffix(&env, known.iter().map(String::as_str)),
                env,
                known: known.clone(),
            });
        }
        Ok(env)
    }
}

/// `[a-z0-9][a-z0-9-]{0,39}`, the same rule as the config's environment names.
pub fn valid_env_name(env: &str) -> bool {
    !env.is_empty()
        && env.len() <= 40
        && !env.starts_with('-')
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Task names are unique after normalisation (PRODUCT.md §2). Discovery checks the files
/// against each other; a `command:` task has no file, so it is checked here against every other
/// task (regression: a command task `A` beside `functions/tasks/a.sh`, or command tasks `b_c`
/// and `B-c`, were two tasks).
fn check_command_collisions(tasks: &[Task], problems: &mut Vec<ConfigProblem>) {
    let is_command = |t: &Task| matches!(t.source, TaskSource::Command { .. });
    let mut seen: BTreeMap<String, &Task> = BTreeMap::new();
    for task in tasks {
        let key = discover::normalise(&task.name);
        let Some(first) = seen.get(&key) else {
            seen.insert(key, task);
            continue;
        };
        let (command, other) = match (is_command(first), is_command(task)) {
            (_, true) => (task, *first),
            (true, false) => (*first, task),
            // Two files: discovery has reported them.
            (false, false) => continue,
        };
        let other_source = if is_command(other) {
            format!("the command task `tasks.{}`", other.name)
        } else {
            format!("`{}`", other.display_path)
        };
        problems.push(ConfigProblem {
            key: format!("tasks.{}", command.name),
            message: format!(
                "task name `{}` collides with `{}` from {other_source}: names must differ \
                 after folding case and `_`/`-`; rename one of them",
                command.name, other.name
            ),
        });
    }
}

/// Every `dependsOn` names a task of the project, and the dependencies form no cycle.
fn check_dependencies(config: &ProjectConfig, tasks: &[Task], problems: &mut Vec<ConfigProblem>) {
    let known: BTreeSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    let all_names: Vec<&str> = config
        .tasks
        .keys()
        .map(String::as_str)
        .chain(known.iter().copied())
        .collect();
    // Looked up once per `dependsOn` entry: a set, so 100,000 tasks check in linear time.
    let is_name: HashSet<&str> = all_names.iter().copied().collect();
    for (name, task) in &config.tasks {
        for (i, dep) in task.depends_on.iter().enumerate() {
            if !is_name.contains(dep.as_str()) {
                problems.push(ConfigProblem {
                    key: format!("tasks.{name}.dependsOn[{i}]"),
                    message: format!(
                        "unknown task `{dep}`{}",
                        suggest::hint_suffix(dep, all_names.iter().copied())
                    ),
                });
            }
        }
    }
    if let Some(cycle) = task::find_cycle(tasks) {
        problems.push(ConfigProblem {
            key: format!("tasks.{}.dependsOn", cycle[0]),
            message: format!("dependency cycle: {}", show_cycle(&cycle)),
        });
    }
}

/// `a → b → c → a`; a long cycle shows its start and end around how many it leaves out, so
/// the error stays readable (a 100,000-task cycle once made a 1.3 MB line).
fn show_cycle(cycle: &[String]) -> String {
    const HEAD: usize = 6;
    const TAIL: usize = 3;
    if cycle.len() <= HEAD + TAIL + 1 {
        return cycle.join(" → ");
    }
    format!(
        "{} → … {} more … → {}",
        cycle[..HEAD].join(" → "),
        cycle.len() - HEAD - TAIL,
        cycle[cycle.len() - TAIL..].join(" → ")
    )
}

impl Project {
    /// Every secret's value by the environment variable tasks receive it as. A secret whose
    /// value could not be resolved stops the run before anything starts.
    pub fn secret_values(&self) -> Result<BTreeMap<String, String>, ProjectError> {
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, secret) in &self.config.secrets {
            match &secret.value {
                Ok(value) => {
                    values.insert(secret_env_var(name), value.clone());
                }
                Err(message) => problems.push(ConfigProblem {
                    key: format!("secrets.{name}.value"),
                    message: message.clone(),
                }),
            }
        }
        // The pre-handler spelling of acronym names, unless another secret owns that variable.
        for name in self.config.secrets.keys() {
            if let Some(legacy) = lumo_runner::contract::legacy_secret_env_name(name)
                && let Some(value) = values.get(&secret_env_var(name)).cloned()
            {
                values.entry(legacy).or_insert(value);
            }
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(ProjectError::Invalid {
                path: self.config.path.clone(),
                problems,
            })
        }
    }
}
