//! The one place lumo writes to the terminal. Results go to stdout (text, or one JSON document
//! with `--json`); progress, task output and errors go to stderr, so stdout can be piped.
//! Colour only on a terminal and never with `NO_COLOR`; spinners only on a terminal.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use lumo_runner::contract::RunStatus;
use lumo_runner::executor::OutputObserver;
use serde::Serialize;

use crate::args::GlobalArgs;
use crate::backend::records::{Deployment, LockHolder, TaskRun};
use crate::progress::{Progress, Step};

/// Serialises whole lines on stderr, from concurrently running tasks and every printer.
static STDERR_LINES: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
    Cyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Green => "32",
            Style::Red => "31",
            Style::Yellow => "33",
            Style::Cyan => "36",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    stderr_color: bool,
    stderr_tty: bool,
}

impl Printer {
    pub fn new(global: &GlobalArgs) -> Printer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let stderr_tty = io::stderr().is_terminal();
        Printer {
            json: global.json,
            quiet: global.quiet,
            verbose: global.verbose,
            stderr_color: !no_color && stderr_tty,
            stderr_tty,
        }
    }

    /// A plain printer for `--json` when the arguments could not be parsed (a usage error).
    pub fn json_only() -> Printer {
        Printer {
            json: true,
            quiet: false,
            verbose: false,
            stderr_color: false,
            stderr_tty: false,
        }
    }

    /// Text styled for stderr.
    pub fn paint_err(&self, style: Style, text: impl Display) -> String {
        paint(self.stderr_color, style, text)
    }

    fn stderr_line(&self, line: &str) {
        let _guard = STDERR_LINES.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    /// A progress line on stderr (not with `--quiet`).
    pub fn status(&self, message: impl Display) {
        if !self.quiet {
            self.stderr_line(&message.to_string());
        }
    }

    /// Detail shown only with `--verbose`.
    pub fn note(&self, message: impl Display) {
        if self.verbose {
            self.stderr_line(&self.paint_err(Style::Dim, format!("note: {message}")));
        }
    }

    pub fn warn(&self, message: impl Display) {
        let prefix = self.paint_err(Style::Yellow, "warning:");
        self.stderr_line(&format!("{prefix} {message}"));
    }

    /// Prints an error chain: `error: …`, `  Caused by: …`, `hint: …`.
    pub fn error(&self, message: &str, causes: &[String], hint: Option<&str>) {
        let mut text = format!("{} {message}", self.paint_err(Style::Red, "error:"));
        for cause in causes {
            text.push_str(&format!("\n  Caused by: {cause}"));
        }
        if let Some(hint) = hint {
            text.push_str(&format!(
                "\n{} {hint}",
                self.paint_err(Style::Cyan, "hint:")
            ));
        }
        self.stderr_line(&text);
    }

    /// One line of a task's output, prefixed with the task's name.
    pub fn task_line(&self, task: &str, line: &str) {
        if !self.quiet {
            let prefix = self.paint_err(Style::Dim, format!("{task} │"));
            self.stderr_line(&format!("{prefix} {line}"));
        }
    }

    /// The command's result: its `Display` on stdout, or its JSON with `--json`.
    pub fn result<T: Serialize + Display>(&self, value: &T) -> io::Result<()> {
        self.report(value)
    }

    /// [`Printer::result`] for a report whose type the caller does not know.
    pub fn report(&self, value: &dyn Report) -> io::Result<()> {
        let mut text = if self.json {
            value.to_json().map_err(io::Error::other)?
        } else {
            value.to_text().into_bytes()
        };
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        self.raw(&text)
    }

    /// Raw bytes meant for stdout (`lumo logs` in text mode). A reader that went away
    /// (`lumo logs ID | head`) is not an error: the command did its work, and its exit code
    /// must say so to a `pipefail` script.
    pub fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        match out.write_all(bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// A spinner on stderr while something slow happens; nothing when stderr is not a terminal.
    pub fn spinner(&self, message: impl Into<String>) -> Spinner {
        let message = message.into();
        if self.quiet || !self.stderr_tty {
            self.status(&message);
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// An observer that prints a task's output line by line as it arrives.
    pub fn task_output(&self, task: &str) -> TaskOutput {
        TaskOutput {
            printer: self.clone(),
            task: task.to_string(),
            partial: Vec::new(),
        }
    }
}

fn paint(enabled: bool, style: Style, text: impl Display) -> String {
    if enabled {
        format!("\x1b[{}m{text}\x1b[0m", style.code())
    } else {
        text.to_string()
    }
}

pub struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    pub fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Step for Spinner {
    fn finish(self: Box<Self>) {
        Spinner::finish(*self);
    }
}

/// Anything a command hands back to be printed once: text for a person, or one JSON document
/// with `--json` (every `Serialize + Display` type is one).
pub trait Report {
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    fn to_text(&self) -> String;
}

impl<T: Serialize + Display> Report for T {
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
    }

    fn to_text(&self) -> String {
        self.to_string()
    }
}

/// The terminal's view of an operation: progress lines on stderr (none with `--quiet`, detail
/// only with `--verbose`), task output prefixed with the task's name.
impl Progress for Printer {
    fn step(&self, message: String) -> Box<dyn Step> {
        Box::new(self.spinner(message))
    }

    fn detail(&self, message: String) {
        self.note(message);
    }

    fn waiting_for_lock(&self, env: &str, holder: &LockHolder) {
        self.status(format!(
            "Waiting for `{env}`, locked by {}",
            holder.describe()
        ));
    }

    fn environment_cleaned_up(&self, env: &str, message: &str) {
        self.warn(format!("`{env}`: {message}"));
    }

    fn deployment_started(&self, deployment: &Deployment) {
        self.status(format!(
            "Deploying {} to {} as {} ({})",
            self.paint_err(Style::Bold, &deployment.project),
            self.paint_err(Style::Bold, &deployment.env),
            self.paint_err(Style::Bold, &deployment.version),
            match &deployment.previous_version {
                None => "first deploy".to_string(),
                Some(v) => format!("update from {v}"),
            }
        ));
    }

    fn run_started(&self, run: &TaskRun) {
        self.status(format!(
            "{} {} {}",
            self.paint_err(Style::Cyan, "▶"),
            self.paint_err(Style::Bold, &run.task),
            self.paint_err(Style::Dim, format!("({}, run {})", run.trigger, run.id)),
        ));
    }

    fn run_output(&self, task: &str) -> Box<dyn OutputObserver> {
        Box::new(self.task_output(task))
    }

    fn run_finished(&self, run: &TaskRun) {
        let (mark, style) = match run.status {
            RunStatus::Succeeded => ("✔", Style::Green),
            RunStatus::TimedOut => ("⏱", Style::Red),
            _ => ("✘", Style::Red),
        };
        let message = run
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        self.status(format!(
            "{} {} {} in {}{message}",
            self.paint_err(style, mark),
            self.paint_err(Style::Bold, &run.task),
            self.paint_err(style, run.status),
            format_duration(run.duration_ms.unwrap_or(0)),
        ));
    }

    fn run_retrying(&self, run: &TaskRun, attempts: u32, backoff: Duration) {
        self.status(format!(
            "{} `{}` attempt {}/{attempts} {}; retrying in {}s",
            self.paint_err(Style::Yellow, "↻"),
            run.task,
            run.attempt,
            run.status,
            backoff.as_secs()
        ));
    }
}

/// A duration as people read it: `850ms`, `2.3s`, `4m05s`.
pub fn format_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Splits a task's output stream into lines for [`Printer::task_line`].
pub struct TaskOutput {
    printer: Printer,
    task: String,
    partial: Vec<u8>,
}

impl TaskOutput {
    /// Prints what is left of an unterminated last line.
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.printer
                .task_line(&self.task, line.trim_end_matches('\r'));
            self.partial.clear();
        }
    }
}

impl OutputObserver for TaskOutput {
    fn output(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        while let Some(pos) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.printer
                .task_line(&self.task, line.trim_end_matches('\r'));
        }
        // A task printing one enormous line must not make us hold it all.
        if self.partial.len() > 64 * 1024 {
            self.flush();
        }
    }
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        self.flush();
    }
}
