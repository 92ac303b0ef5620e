//! `lumo build [--out DIR]`: build every bundle and show names, sizes and hashes, without
//! touching any environment.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::BuildArgs;
use crate::bundle::{self, BuiltBundle, assets::human_bytes};
use crate::error::{CliError, ExitKind};
use crate::task::Task;

pub async fn run(args: BuildArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    let tasks: Vec<&Task> = project.tasks.iter().collect();
    let built = bundle::build_all_cancellable(
        project.root(),
        &project.lumo_dir().join("bundles"),
        &tasks,
        ctx.build(&project),
        &bundle::Cancel::on(&ctx.stop),
    )
    .map_err(|e| CliError::bundle(e, &project.config.path))?;
    if let Some(out) = &args.out {
        copy_out(out, &built)?;
    }
    let report = BuildReport {
        out: args.out.as_ref().map(|p| p.display().to_string()),
        bundles: built,
    };
    Ok(Outcome::report(report))
}

/// Copies each bundle to `<out>/<task>.zip` (a task `db/migrate` lands in `<out>/db/`).
fn copy_out(out: &Path, built: &[BuiltBundle]) -> Result<(), CliError> {
    for b in built {
        let target = out.join(format!("{}.zip", b.task));
        let fail = |e: std::io::Error| {
            CliError::new(
                ExitKind::Backend,
                format!("cannot write `{}`: {e}", target.display()),
            )
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::copy(&b.path, &target).map_err(fail)?;
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildReport {
    pub out: Option<String>,
    pub bundles: Vec<BuiltBundle>,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .bundles
            .iter()
            .map(|b| b.task.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<width$}  {:>6}  {:>9}  {:>9}  SHA256",
            "TASK", "FILES", "UNZIPPED", "ZIP"
        )?;
        for b in &self.bundles {
            writeln!(
                f,
                "{:<width$}  {:>6}  {:>9}  {:>9}  {}",
                b.task,
                b.files,
                human_bytes(b.unpacked_size),
                human_bytes(b.size),
                b.sha256
            )?;
        }
        if let Some(out) = &self.out {
            writeln!(f, "Copied to `{out}`.")?;
        }
        Ok(())
    }
}
