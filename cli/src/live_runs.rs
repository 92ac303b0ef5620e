//! Signs of life while tasks run, for a person at a terminal (issue 11): each running task has
//! a line at the bottom of the screen with a spinner, its elapsed time and, when a deploy runs
//! several, its place among them (`⠙ migrate [3/8] 41s`). A task that prints nothing for
//! minutes still shows that it is running. Nothing of it in a CI log, a pipe or with `--quiet`:
//! there the `▶`/`✔` lines say the same once, without redrawing.
//!
//! The lines are indicatif bars in one `MultiProgress`; every other write to stderr goes
//! through [`LiveRuns::around`], which clears them, writes, and draws them again, so task
//! output and progress lines are never drawn over.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};

/// The live lines of the running tasks; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveRuns(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// How many tasks the deployment runs; 0 for a single run.
    total: usize,
    /// How many of them have started (retries not counted again).
    started: usize,
    /// The line of each running attempt, by run id.
    lines: HashMap<String, ProgressBar>,
}

impl LiveRuns {
    /// Live lines when stderr is a terminal, outside CI (`CI` set to anything but `false`/`0`)
    /// and without `--quiet`; `None` elsewhere.
    pub fn for_terminal(stderr_is_terminal: bool, quiet: bool) -> Option<LiveRuns> {
        let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        (stderr_is_terminal && !quiet && !in_ci).then(|| {
            LiveRuns(Arc::new(Inner {
                multi: MultiProgress::new(),
                state: Mutex::new(State::default()),
            }))
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A deployment is about to run `count` tasks.
    pub fn planned(&self, count: usize) {
        let mut state = self.state();
        state.total = count;
        state.started = 0;
    }

    /// Attempt `attempt` of `task` started as run `run_id`.
    pub fn started(&self, run_id: &str, task: &str, attempt: u32) {
        let mut state = self.state();
        if attempt <= 1 {
            state.started += 1;
        }
        let place = if state.total > 1 {
            format!(" [{}/{}]", state.started.min(state.total), state.total)
        } else {
            String::new()
        };
        let style = ProgressStyle::with_template("{spinner} {prefix}{msg} {running_for}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "running_for",
                |state: &ProgressState, out: &mut dyn fmt::Write| {
                    let _ = out.write_str(&running_for(state.elapsed()));
                },
            );
        let line = self.0.multi.add(
            ProgressBar::new_spinner()
                .with_style(style)
                .with_prefix(task.to_string())
                .with_message(place),
        );
        line.enable_steady_tick(Duration::from_millis(250));
        state.lines.insert(run_id.to_string(), line);
    }

    /// Run `run_id` ended: its line goes.
    pub fn finished(&self, run_id: &str) {
        let line = self.state().lines.remove(run_id);
        if let Some(line) = line {
            line.finish_and_clear();
            self.0.multi.remove(&line);
        }
    }

    /// Runs `write` (a write to stderr) with the live lines cleared, and draws them again.
    pub fn around<R>(&self, write: impl FnOnce() -> R) -> R {
        self.0.multi.suspend(write)
    }
}

/// How long a task has been running, to the second: `41s`, `4m05s`, `1h02m07s` (indicatif's
/// own `{elapsed}` rounds a minute and a half to `2m`).
fn running_for(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_reads_to_the_second() {
        let at = |s| running_for(Duration::from_millis(s));
        assert_eq!(
            [at(0), at(1_900), at(59_999), at(65_000), at(3_727_000)],
            ["0s", "1s", "59s", "1m05s", "1h02m07s"]
        );
    }
}
