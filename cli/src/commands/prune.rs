//! `lumo prune [--dry-run]`: applies the project's `retention` to `.lumo/` (see
//! `backend/local/prune.rs` for what is kept). On `aws`, the bucket's lifecycle rule expires
//! old logs instead (`LogRetentionDays` in `infra/lumo.yaml`).

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use super::{CommandResult, Context, Outcome};
use crate::args::PruneArgs;
use crate::backend::local::LocalLayout;
use crate::backend::local::prune::{self, PrunePlan};
use crate::bundle::assets::human_bytes;
use crate::config::Provider;
use crate::config::retention::Retention;
use crate::error::{CliError, ExitKind};

pub async fn run(args: PruneArgs, ctx: &Context) -> CommandResult {
    let project = ctx.project()?;
    if project.config.provider == Provider::Aws {
        return Err(CliError::new(
            ExitKind::Invalid,
            "`lumo prune` cleans the `local` provider's `.lumo/`; on `aws` the bucket expires old logs itself",
        )
        .hint(
            "set `LogRetentionDays` on the stack from `infra/lumo.yaml` (bundles stay: they are \
             content-addressed and small); run `lumo prune --provider local` to clean a local \
             `.lumo/` of this project",
        ));
    }
    let layout = LocalLayout::new(&project.lumo_dir());
    let retention = project.config.retention;
    let plan = prune::plan(&layout, retention, SystemTime::now())?;
    if !args.dry_run {
        prune::apply(&layout, &plan)?;
    }
    Ok(Outcome::report(PruneReport {
        dry_run: args.dry_run,
        retention,
        removed_bytes: plan.logs.iter().chain(&plan.bundles).map(|r| r.bytes).sum(),
        plan,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub retention: Retention,
    pub removed_bytes: u64,
    #[serde(flatten)]
    pub plan: PrunePlan,
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "Would remove"
        } else {
            "Removed"
        };
        let sum = |list: &[prune::Removal]| human_bytes(list.iter().map(|r| r.bytes).sum());
        writeln!(
            f,
            "{verb} {} log(s) ({}) and {} bundle(s) ({}) from `.lumo/`; kept {} log(s) and {} bundle(s)",
            self.plan.logs.len(),
            sum(&self.plan.logs),
            self.plan.bundles.len(),
            sum(&self.plan.bundles),
            self.plan.kept_logs,
            self.plan.kept_bundles,
        )?;
        writeln!(
            f,
            "  retention: the newest {} run(s) of each environment, up to {} day(s) old (`retention` in lumo.config.js)",
            self.retention.runs, self.retention.days
        )?;
        if let Some(why) = &self.plan.bundles_left_alone {
            writeln!(f, "  bundles left alone: {why}")?;
        }
        if self.dry_run {
            writeln!(f, "  nothing was removed (--dry-run)")?;
        }
        Ok(())
    }
}
