//! The working copy in the dev loop (PRODUCT.md §7, `lumo run --from-source`): after editing
//! `functions/tasks/migrate.sh`, a manual run of the deployed bundle would run the old code
//! without a word. This module builds one task's bundle from the working tree, either to run
//! it (recorded with that bundle's hash, marked as not deployed) or only to say, in one line,
//! that the deployed bundle is not what the working tree holds.

use std::path::Path;

use crate::backend::records::Timestamp;
use crate::bundle::{self, Build, BuiltBundle};
use crate::error::{CliError, ExitKind};
use crate::operation::Operation;
use crate::preflight::{self, PlannedBundle};
use crate::project::Project;
use crate::task::Task;

/// `task`'s bundle built from the working tree into `dir`, checked startable (exit 2 when it
/// cannot be built or would not start, before anything is locked or run).
pub fn build(
    project: &Project,
    task: &Task,
    build: Build,
    dir: &Path,
) -> Result<BuiltBundle, CliError> {
    let built = bundle::build_all(project.root(), dir, &[task], build)
        .map_err(|e| CliError::bundle(e, &project.config.path))?;
    let Some(built) = built.into_iter().next() else {
        return Err(CliError::new(
            ExitKind::Backend,
            format!("bundling task `{}` produced no bundle", task.name),
        ));
    };
    preflight::check(
        [PlannedBundle {
            task: &built.task,
            zip: &built.path,
            entry: built.entry.as_ref(),
        }],
        project.config.provider,
        Some(&project.lumo_dir()),
    )?;
    Ok(built)
}

/// One line saying that `task`'s deployed bundle differs from its working copy, or `None`
/// when they are the same, nothing is deployed, or the working copy cannot be built (the run
/// of the deployed bundle goes on either way: this is a note, never an obstacle).
pub async fn drift(op: &Operation, task: &Task, build: Build) -> Option<String> {
    let state = match op.backend.audit.env_state(&op.env).await {
        Ok(state) => state,
        Err(e) => {
            tracing::debug!("cannot compare `{}` with its working copy: {e}", task.name);
            return None;
        }
    };
    let deployed = state.bundles.get(&task.name)?;
    // Built into the project's own store, so the stat cache answers for an unchanged task
    // without reading or compressing it (a 200 MB task would otherwise be bundled on every
    // run); bundles are content-addressed and this build leaves stored ones untouched, so it
    // never disturbs a deployed one or the unpacked tree the run reuses.
    let store = op.project.lumo_dir().join("bundles");
    let working = match bundle::build_for_comparison(op.project.root(), &store, task, build) {
        Ok(built) => built?,
        Err(e) => {
            tracing::debug!("cannot build the working copy of `{}`: {e}", task.name);
            return None;
        }
    };
    if working.sha256 == *deployed {
        return None;
    }
    let when = state
        .deployed_at
        .map(|at| {
            format!(
                " (deployed {} ago)",
                ago(Timestamp::now().millis() - at.millis())
            )
        })
        .unwrap_or_default();
    Some(format!(
        "`{}` changed since the deployed bundle of task `{}`{when}; this runs the deployed one, \
         `--from-source` runs the working copy",
        task.display_path, task.name
    ))
}

/// `40 s`, `5 min`, `3 h`, `2 d`: how long ago, roughly.
fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ago_rounds_down_to_one_unit() {
        assert_eq!(super::ago(999), "0 s");
        assert_eq!(super::ago(59_000), "59 s");
        assert_eq!(super::ago(5 * 60_000 + 10), "5 min");
        assert_eq!(super::ago(3 * 3_600_000 + 1), "3 h");
        assert_eq!(super::ago(2 * 86_400_000), "2 d");
        assert_eq!(super::ago(-5), "0 s");
    }
}
