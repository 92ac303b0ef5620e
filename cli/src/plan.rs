//! Which tasks a deployment runs, in what order, and why (PRODUCT.md §5). Pure: no I/O, so every
//! lifecycle rule is unit-tested here and `--dry-run` prints exactly what a deploy would do.

use std::collections::{BTreeMap, BTreeSet};

use lumo_runner::contract::Trigger;
use lumo_runner::{BundleHash, Version};
use serde::Serialize;

use crate::config::RunOn;
use crate::task::Task;

/// What the environment's history says, as far as planning is concerned.
#[derive(Debug, Clone)]
pub struct History<'a> {
    /// The version of the last successful deployment; `None` = this is the first deploy.
    pub previous_version: Option<&'a Version>,
    /// Each task's bundle hash at its last successful run in the environment.
    pub last_success: &'a BTreeMap<String, BundleHash>,
}

/// One task's fate in a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    Run { trigger: Trigger, reason: String },
    Skip { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTask {
    pub task: String,
    /// `None` only for a task no bundle was built for, which runs nothing.
    pub bundle: Option<BundleHash>,
    #[serde(flatten)]
    pub decision: Decision,
    /// Tasks of this plan that must succeed before this one starts (through skipped ones too).
    pub after: Vec<String>,
}

impl PlannedTask {
    pub fn runs(&self) -> bool {
        matches!(self.decision, Decision::Run { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub is_first_deploy: bool,
    /// Every task of the environment, in run order.
    pub tasks: Vec<PlannedTask>,
}

/// Decides each task's fate. `tasks` are the environment's tasks in project order; `bundles`
/// maps each to its bundle hash; `only` (when non-empty) limits the deploy to those tasks.
pub fn plan(
    tasks: &[&Task],
    bundles: &BTreeMap<String, BundleHash>,
    history: &History<'_>,
    only: &[String],
) -> Plan {
    let is_first_deploy = history.previous_version.is_none();
    let trigger = if is_first_deploy {
        Trigger::Deploy
    } else {
        Trigger::Update
    };
    let ordered: Vec<&Task> = order(tasks).into_iter().map(|i| tasks[i]).collect();
    let mut planned: Vec<PlannedTask> = ordered
        .iter()
        .map(|task| {
            let bundle = bundles.get(&task.name).cloned();
            let decision = if !only.is_empty() && !only.contains(&task.name) {
                Decision::Skip {
                    reason: "not in `--only`".into(),
                }
            } else {
                decide(task, bundle.as_ref(), history, trigger)
            };
            PlannedTask {
                task: task.name.clone(),
                bundle,
                decision,
                after: Vec::new(),
            }
        })
        .collect();

    // A running task waits for its running dependencies, looking through the ones that do not
    // run this time (C → B → A with B skipped still waits for A).
    let by_name: BTreeMap<&str, &Task> = ordered.iter().map(|t| (t.name.as_str(), *t)).collect();
    let running: BTreeSet<String> = planned
        .iter()
        .filter(|p| p.runs())
        .map(|p| p.task.clone())
        .collect();
    for p in planned.iter_mut().filter(|p| p.runs()) {
        let mut after = BTreeSet::new();
        let mut stack: Vec<&str> = by_name[p.task.as_str()]
            .config
            .depends_on
            .iter()
            .map(String::as_str)
            .collect();
        let mut seen = BTreeSet::new();
        while let Some(dep) = stack.pop() {
            if !seen.insert(dep) {
                continue;
            }
            if running.contains(dep) {
                after.insert(dep.to_string());
            } else if let Some(t) = by_name.get(dep) {
                stack.extend(t.config.depends_on.iter().map(String::as_str));
            }
        }
        p.after = after.into_iter().collect();
    }
    Plan {
        is_first_deploy,
        tasks: planned,
    }
}

fn decide(
    task: &Task,
    bundle: Option<&BundleHash>,
    history: &History<'_>,
    trigger: Trigger,
) -> Decision {
    let run_on = &task.config.run_on;
    if run_on.is_empty() {
        return Decision::Skip {
            reason: "manual only (`runOn: []`); run it with `lumo run`".into(),
        };
    }
    let phase = if trigger == Trigger::Deploy {
        RunOn::Deploy
    } else {
        RunOn::Update
    };
    if run_on.contains(&phase) {
        let reason = match history.previous_version {
            None => "first deploy, and `runOn` includes `deploy`".to_string(),
            Some(v) => format!("update from `{v}`, and `runOn` includes `update`"),
        };
        return Decision::Run { trigger, reason };
    }
    if run_on.contains(&RunOn::Change) {
        return match history.last_success.get(&task.name) {
            None => Decision::Run {
                trigger,
                reason: "never succeeded here yet (`runOn: 'change'`)".into(),
            },
            Some(last) if Some(last) != bundle => Decision::Run {
                trigger,
                reason: format!(
                    "bundle changed since its last successful run ({} → {})",
                    short(last.as_str()),
                    short(bundle.map_or("", BundleHash::as_str))
                ),
            },
            Some(_) => Decision::Skip {
                reason: "bundle unchanged since its last successful run (`runOn: 'change'`)".into(),
            },
        };
    }
    let listed = run_on
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let reason = if trigger == Trigger::Deploy {
        format!("first deploy, but `runOn` is [{listed}]")
    } else {
        format!("update, but `runOn` is [{listed}]")
    };
    Decision::Skip { reason }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Indices of `tasks` in run order: every task after its `dependsOn`, otherwise in the given
/// (declaration) order. Dependencies outside `tasks` are ignored; tasks caught in a cycle keep
/// their declaration order (cycles are rejected when the project loads).
pub fn order(tasks: &[&Task]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut pending: Vec<usize> = tasks
        .iter()
        .map(|t| {
            t.config
                .depends_on
                .iter()
                .filter(|d| index.contains_key(d.as_str()))
                .count()
        })
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for d in &t.config.depends_on {
            if let Some(&j) = index.get(d.as_str()) {
                dependents[j].push(i);
            }
        }
    }
    // Kahn's algorithm, always taking the earliest-declared ready task.
    let mut ready: BTreeSet<usize> = (0..tasks.len()).filter(|&i| pending[i] == 0).collect();
    let mut out = Vec::with_capacity(tasks.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &j in &dependents[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(j);
            }
        }
    }
    let placed: BTreeSet<usize> = out.iter().copied().collect();
    out.extend((0..tasks.len()).filter(|i| !placed.contains(i)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskConfig;
    use crate::task::TaskSource;

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

    /// Bundle hashes by task, each made of one repeated hex digit (`aaa` → `aaaa…`).
    fn hashes(pairs: &[(&str, &str)]) -> BTreeMap<String, BundleHash> {
        pairs
            .iter()
            .map(|(a, b)| {
                let hex = b.repeat(64)[..64].to_string();
                (a.to_string(), BundleHash::parse(&hex).unwrap())
            })
            .collect()
    }

    const BOTH: &[RunOn] = &[RunOn::Deploy, RunOn::Update];

    #[test]
    fn run_on_deploy_update_change_and_manual() {
        let tasks = [
            task("first-only", &[RunOn::Deploy], &[]),
            task("updates-only", &[RunOn::Update], &[]),
            task("both", BOTH, &[]),
            task("changed", &[RunOn::Change], &[]),
            task("manual", &[], &[]),
        ];
        let refs: Vec<&Task> = tasks.iter().collect();
        let bundles = hashes(&[("changed", "bbb")]);
        let none = BTreeMap::new();

        let first = plan(
            &refs,
            &bundles,
            &History {
                previous_version: None,
                last_success: &none,
            },
            &[],
        );
        let runs: Vec<_> = first
            .tasks
            .iter()
            .filter(|p| p.runs())
            .map(|p| p.task.as_str())
            .collect();
        assert!(first.is_first_deploy);
        assert_eq!(runs, ["first-only", "both", "changed"]);
        assert!(matches!(
            first.tasks[0].decision,
            Decision::Run {
                trigger: Trigger::Deploy,
                ..
            }
        ));

        let v1 = Version::parse("v1").unwrap();
        let unchanged = hashes(&[("changed", "bbb")]);
        let update = plan(
            &refs,
            &bundles,
            &History {
                previous_version: Some(&v1),
                last_success: &unchanged,
            },
            &[],
        );
        let runs: Vec<_> = update
            .tasks
            .iter()
            .filter(|p| p.runs())
            .map(|p| p.task.as_str())
            .collect();
        assert_eq!(runs, ["updates-only", "both"]);
        assert!(
            matches!(&update.tasks[1].decision, Decision::Run { trigger: Trigger::Update, reason } if reason.contains("`v1`"))
        );
        assert!(
            matches!(&update.tasks[4].decision, Decision::Skip { reason } if reason.contains("manual only"))
        );

        let changed = hashes(&[("changed", "aaa")]);
        let update = plan(
            &refs,
            &bundles,
            &History {
                previous_version: Some(&v1),
                last_success: &changed,
            },
            &[],
        );
        assert!(update.tasks[3].runs(), "{:?}", update.tasks[3]);
    }

    #[test]
    fn only_limits_the_deploy_and_says_so() {
        let tasks = [task("a", BOTH, &[]), task("b", BOTH, &[])];
        let refs: Vec<&Task> = tasks.iter().collect();
        let none = BTreeMap::new();
        let p = plan(
            &refs,
            &none,
            &History {
                previous_version: None,
                last_success: &none,
            },
            &["b".into()],
        );
        assert_eq!(
            p.tasks[0].decision,
            Decision::Skip {
                reason: "not in `--only`".into()
            }
        );
        assert!(p.tasks[1].runs());
    }

    #[test]
    fn dependencies_first_then_declaration_order() {
        let tasks = [
            task("c", BOTH, &["b"]),
            task("a", BOTH, &[]),
            task("b", BOTH, &["a"]),
            task("d", BOTH, &[]),
        ];
        let refs: Vec<&Task> = tasks.iter().collect();
        let names: Vec<_> = order(&refs)
            .into_iter()
            .map(|i| refs[i].name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn waits_on_running_dependencies_through_skipped_ones() {
        let tasks = [
            task("a", BOTH, &[]),
            task("b", &[], &["a"]),
            task("c", BOTH, &["b"]),
        ];
        let refs: Vec<&Task> = tasks.iter().collect();
        let none = BTreeMap::new();
        let p = plan(
            &refs,
            &none,
            &History {
                previous_version: None,
                last_success: &none,
            },
            &[],
        );
        assert_eq!(p.tasks[2].after, ["a"]);
        assert!(p.tasks[0].after.is_empty());
    }
}
