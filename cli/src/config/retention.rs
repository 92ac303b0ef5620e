//! `retention: { runs, days }`: how much of its history a project keeps on disk, read by
//! `lumo prune` (on `local`; on `aws` the bucket's lifecycle rule expires old logs). Without it,
//! `.lumo/` grows by a log per run and a bundle per changed task, for ever.

use serde::Serialize;
use serde_json::Value;

use super::checks::{self, Problems, child};

/// Runs whose logs are kept per environment when `retention.runs` is not set.
pub const DEFAULT_RUNS: u32 = 200;
/// Days a run's log is kept when `retention.days` is not set.
pub const DEFAULT_DAYS: u32 = 90;

const KEYS: &[&str] = &["runs", "days"];

/// What `lumo prune` keeps: the newest `runs` runs of each environment, as long as they are
/// younger than `days` days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub runs: u32,
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            runs: DEFAULT_RUNS,
            days: DEFAULT_DAYS,
        }
    }
}

/// Validates `retention`; what is missing or wrong keeps its default (the problem is recorded).
pub(super) fn validate(p: &mut Problems, value: &Value) -> Retention {
    let mut retention = Retention::default();
    let Some(map) = checks::object(
        p,
        "retention",
        value,
        "an object `{ runs, days }` (e.g. `{ runs: 200, days: 90 }`)",
    ) else {
        return retention;
    };
    checks::unknown_keys(p, "retention", map, KEYS);
    if let Some(v) = map.get("runs")
        && let Some(runs) = checks::integer(
            p,
            &child("retention", "runs"),
            v,
            1..=1_000_000,
            "the number of runs per environment whose logs are kept, a whole number",
        )
    {
        retention.runs = runs;
    }
    if let Some(v) = map.get("days")
        && let Some(days) = checks::integer(
            p,
            &child("retention", "days"),
            v,
            1..=36_500,
            "the days a run's log is kept, a whole number",
        )
    {
        retention.days = days;
    }
    retention
}
