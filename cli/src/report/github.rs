//! GitHub Actions' own reports: a Markdown summary of the deployment appended to the file named
//! by `GITHUB_STEP_SUMMARY` (shown on the run's page), and an `::error` workflow command per
//! failed task (an annotation on the run and the pull request). Both only when GitHub sets the
//! variables; nothing anywhere else.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use super::Subject;
use crate::output::format_duration;

/// What GitHub Actions asks for in this process's environment.
#[derive(Debug, Default)]
pub struct GithubActions {
    /// `GITHUB_STEP_SUMMARY`, when set and not empty.
    pub step_summary: Option<PathBuf>,
    /// `GITHUB_ACTIONS=true`: workflow commands are read from the step's output.
    pub annotations: bool,
}

impl GithubActions {
    pub fn from_env() -> GithubActions {
        GithubActions {
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            annotations: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        }
    }
}

/// Appends the summary of `subject` to the step summary file (other steps write there too, so
/// it is appended to, never replaced).
pub fn append_summary(path: &std::path::Path, subject: &Subject) -> io::Result<()> {
    let text = summary_markdown(subject);
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // One write: a summary cut in half by a full disk is less likely than two half-writes.
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// The Markdown summary: a heading saying what ran where and how it ended, a table with each
/// task's status, duration, message and run id, and the `lumo logs` command of each failure.
pub fn summary_markdown(subject: &Subject) -> String {
    let mark = status_mark(&subject.status);
    let what = match subject.command {
        "run" => format!(
            "`{}` run in `{}`",
            subject
                .tasks
                .first()
                .map_or("?", |t| t.outcome.task.as_str()),
            subject.env
        ),
        "exec" => format!(
            "`{}` in `{}`",
            md_code(
                subject
                    .tasks
                    .first()
                    .map_or("exec", |t| t.outcome.task.as_str())
            ),
            subject.env
        ),
        _ => format!("`{}` deployed to `{}`", subject.project, subject.env),
    };
    let mut md = format!("### {mark} lumo: {what}: {}\n\n", subject.status);
    let mut facts = vec![format!("version `{}`", md_code(&subject.version))];
    if let Some(id) = &subject.deployment_id {
        facts.push(format!("deployment `{id}`"));
    }
    if let Some(ms) = subject.duration_ms {
        facts.push(format!("took {}", format_duration(ms)));
    }
    md.push_str(&facts.join(", "));
    md.push_str(
        "\n\n| Task | Status | Duration | Message | Run |\n| --- | --- | --- | --- | --- |\n",
    );
    for task in &subject.tasks {
        let o = &task.outcome;
        md.push_str(&format!(
            "| `{}` | {} {} | {} | {} | {} |\n",
            md_code(&o.task),
            status_mark(&o.status),
            o.status,
            o.duration_ms.map(format_duration).unwrap_or_default(),
            md_cell(task.detail()),
            o.run_id
                .as_deref()
                .map(|id| format!("`{id}`"))
                .unwrap_or_default(),
        ));
    }
    let failures: Vec<_> = subject.failures().collect();
    if !failures.is_empty() {
        md.push('\n');
        for o in failures {
            if let Some(logs) = o.logs_command() {
                md.push_str(&format!(
                    "- `{}` {}; its full output: `{logs}`\n",
                    md_code(&o.task),
                    o.status
                ));
            }
        }
    }
    md.push('\n');
    md
}

fn status_mark(status: &str) -> &'static str {
    match status {
        "succeeded" => "✅",
        "failed" | "abandoned" => "❌",
        "timed_out" => "⏱️",
        "skipped" | "not_run" => "⏭️",
        _ => "•",
    }
}

/// Text inside a Markdown table cell: one line, no column break, no HTML.
fn md_cell(text: &str) -> String {
    let mut cell = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => cell.push_str("\\|"),
            '<' => cell.push_str("&lt;"),
            '>' => cell.push_str("&gt;"),
            '&' => cell.push_str("&amp;"),
            '\n' => cell.push_str("<br>"),
            '\r' => {}
            c if c.is_control() => cell.push(' '),
            c => cell.push(c),
        }
    }
    cell
}

/// Text inside a backtick code span in a table: no backtick to end it early, no column break.
fn md_code(text: &str) -> String {
    text.replace('`', "'").replace('|', "\\|")
}

/// One `::error title=…::message` workflow command per failed task.
pub fn annotations(subject: &Subject) -> Vec<String> {
    subject
        .failures()
        .map(|o| {
            // An exec's "task" is its command line, which names the command already.
            let title = match subject.command {
                "exec" => format!("lumo {}: {} in {}", o.task, o.status, subject.env),
                command => format!("lumo {command}: {} {} in {}", o.task, o.status, subject.env),
            };
            let mut message = o.message.clone().unwrap_or_default();
            if let (Some(id), Some(logs)) = (&o.run_id, o.logs_command()) {
                message.push_str(&format!("\nrun {id}; full output: {logs}"));
            }
            format!(
                "::error title={}::{}",
                escape_property(&title),
                escape_data(&message)
            )
        })
        .collect()
}

/// A workflow command's message (GitHub's `escapeData`): `%`, `\r` and `\n` encoded, so a
/// multi-line message stays one command and cannot start another.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value (GitHub's `escapeProperty`): as [`escape_data`], and
/// `:` and `,`, which would end the value.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_values_are_escaped_as_github_unescapes_them() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_data("a::b"), "a::b");
        assert_eq!(
            escape_property("lumo deploy: migrate, 100%\n"),
            "lumo deploy%3A migrate%2C 100%25%0A"
        );
    }

    #[test]
    fn table_cells_cannot_break_the_table_or_inject_html() {
        assert_eq!(md_cell("a | b\nc <b>&"), "a \\| b<br>c &lt;b&gt;&amp;");
        assert_eq!(md_code("x`y|z"), "x'y\\|z");
    }
}
