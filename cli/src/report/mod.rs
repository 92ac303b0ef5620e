//! What lumo reports about a deployment, a manual run or an `exec` besides the terminal's text:
//! the one shape of a task's outcome shared by every `--json` document ([`outcome`]), and the
//! reports CI systems read ([`github`]: the step summary and `::error` annotations; [`junit`]:
//! the XML test report GitLab, Jenkins and others show). Each CI report is on by the usual signal (the
//! variable GitHub sets, the `--junit` flag) and off elsewhere; [`publish`] is the one entry.

pub mod github;
pub mod junit;
pub mod outcome;

use std::path::Path;

use lumo_runner::Version;

use crate::deployment::DeployReport;
use crate::error::CliError;
use crate::output::Printer;
use crate::report::outcome::TaskOutcome;

/// A deployment, a manual run or an `exec`, as every CI report describes it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `deploy`, `run` or `exec`.
    pub command: &'static str,
    pub project: String,
    pub env: String,
    pub version: String,
    /// The deployment's id; `None` for a manual run.
    pub deployment_id: Option<String>,
    /// How the whole ended (`succeeded`, `failed`, …).
    pub status: String,
    pub duration_ms: Option<u64>,
    pub tasks: Vec<ReportedTask>,
}

/// One task of a [`Subject`]: its outcome, and why it did or did not run.
#[derive(Debug, Clone)]
pub struct ReportedTask {
    pub outcome: TaskOutcome,
    pub reason: Option<String>,
}

impl ReportedTask {
    /// What to say about the task in one line: its message, else why it did not run.
    pub fn detail(&self) -> &str {
        self.outcome
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .or(self.reason.as_deref())
            .unwrap_or("")
    }
}

impl Subject {
    /// A deployment that ran (a dry run has no report: nothing ran).
    pub fn deployment(report: &DeployReport) -> Option<Subject> {
        let status = report.status?;
        Some(Subject {
            command: "deploy",
            project: report.project.clone(),
            env: report.env.clone(),
            version: report.version.to_string(),
            deployment_id: report.deployment_id.clone(),
            status: status.as_str().to_string(),
            duration_ms: report.duration_ms,
            tasks: report
                .tasks
                .iter()
                .map(|line| ReportedTask {
                    outcome: line.outcome.clone(),
                    reason: Some(line.reason.clone()),
                })
                .collect(),
        })
    }

    /// A task run by hand.
    pub fn manual_run(run: &crate::backend::records::TaskRun) -> Subject {
        Subject {
            command: "run",
            project: run.project.clone(),
            env: run.env.clone(),
            version: run
                .version
                .as_ref()
                .map(Version::to_string)
                .unwrap_or_default(),
            deployment_id: None,
            status: run.status.as_str().to_string(),
            duration_ms: run.duration_ms,
            tasks: vec![ReportedTask {
                outcome: TaskOutcome::of_run(run),
                reason: None,
            }],
        }
    }

    /// An ad-hoc command (`lumo exec`): one "task", named by its masked command line as
    /// `history` shows it (`exec psql -c '…' (in migrate)`), so a report names what ran.
    pub fn exec(run: &crate::backend::records::TaskRun) -> Subject {
        let mut subject = Subject::manual_run(run);
        subject.command = "exec";
        for task in &mut subject.tasks {
            task.outcome.task = run.title();
        }
        subject
    }

    /// The tasks that ran and did not succeed.
    pub fn failures(&self) -> impl Iterator<Item = &TaskOutcome> {
        self.tasks.iter().map(|t| &t.outcome).filter(|o| o.failed())
    }
}

/// Writes every CI report that is switched on for `subject`: the JUnit file at `junit`, the
/// GitHub step summary and annotations when GitHub Actions asks for them. A report that cannot
/// be written is a warning: the deployment has happened, and its exit code must say how it
/// went, not whether a report could be saved.
pub fn publish(printer: &Printer, junit: Option<&Path>, subject: &Subject) {
    let github = github::GithubActions::from_env();
    if let Some(path) = junit
        && let Err(e) = junit::write(path, subject)
    {
        printer.warn(format!(
            "cannot write the JUnit report `{}`: {e}",
            path.display()
        ));
    }
    if let Some(path) = &github.step_summary
        && let Err(e) = github::append_summary(path, subject)
    {
        printer.warn(format!(
            "cannot append to the step summary `{}` (GITHUB_STEP_SUMMARY): {e}",
            path.display()
        ));
    }
    if github.annotations {
        for line in github::annotations(subject) {
            printer.workflow_command(&line);
        }
    }
}

/// `--junit PATH` checked before anything runs: it is not a directory, and its directory exists
/// and takes a new file, so the report can be written when the work is done.
pub fn check_junit_path(path: &Path) -> Result<(), CliError> {
    if path.is_dir() {
        return Err(CliError::invalid(format!(
            "`--junit {}`: is a directory; give the path of the XML file to write",
            path.display()
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent
        && !parent.is_dir()
    {
        return Err(CliError::invalid(format!(
            "`--junit {}`: directory `{}` does not exist",
            path.display(),
            parent.display()
        ))
        .hint("create it first (`mkdir -p`), or write the report elsewhere"));
    }
    // The report is written beside itself and renamed: a directory that takes no new file
    // (read-only, no permission) would otherwise be found out only after the deployment.
    let dir = parent.unwrap_or(Path::new("."));
    if let Err(e) = junit::temp_file_in(dir) {
        return Err(CliError::invalid(format!(
            "`--junit {}`: cannot write in directory `{}`: {}",
            path.display(),
            dir.display(),
            junit::without_temp_file_name(&e)
        ))
        .hint("give a path in a directory lumo may write to"));
    }
    Ok(())
}
