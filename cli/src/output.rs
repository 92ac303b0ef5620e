//! The one place lumo writes to the terminal. Results go to stdout (text, or one JSON document
//! with `--json`); progress, task output and errors go to stderr, so stdout can be piped.
//! Colour as `--color` and the variables say ([`crate::color`]); spinners only on a terminal.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use lumo_runner::contract::RunStatus;
use lumo_runner::executor::OutputObserver;
use serde::Serialize;

use crate::args::GlobalArgs;
use crate::backend::records::{Deployment, LockHolder, TaskRun};
use crate::live_runs::LiveRuns;
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
    /// The running tasks' elapsed-time lines, on a terminal only.
    live: Option<LiveRuns>,
}

impl Printer {
    pub fn new(global: &GlobalArgs) -> Printer {
        let stderr_tty = io::stderr().is_terminal();
        Printer {
            json: global.json,
            quiet: global.quiet,
            verbose: global.verbose,
            stderr_color: crate::color::enabled_for_stderr(global.color),
            stderr_tty,
            live: LiveRuns::for_terminal(stderr_tty, global.quiet),
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
            live: None,
        }
    }

    /// Text styled for stderr.
    pub fn paint_err(&self, style: Style, text: impl Display) -> String {
        paint(self.stderr_color, style, text)
    }

    fn stderr_line(&self, line: &str) {
        let _guard = STDERR_LINES.lock().unwrap_or_else(|p| p.into_inner());
        self.around_live(|| {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{line}");
        });
    }

    /// Runs a write to stderr with the running tasks' live lines cleared, when there are any.
    fn around_live(&self, write: impl FnOnce()) {
        match &self.live {
            Some(live) => live.around(write),
            None => write(),
        }
    }

    /// Whole lines already formatted, in one write under the same lock as [`Self::stderr_line`].
    fn stderr_bytes(&self, lines: &[u8]) {
        let _guard = STDERR_LINES.lock().unwrap_or_else(|p| p.into_inner());
        self.around_live(|| {
            let mut err = io::stderr().lock();
            let _ = err.write_all(lines);
        });
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

    /// A CI runner's workflow command (`::error …::…`) on stderr, whole and unstyled, with or
    /// without `--quiet`: the runner reads it from the step's output, and a person never
    /// sees it as text.
    pub fn workflow_command(&self, line: &str) {
        self.stderr_line(line);
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

    /// [`Printer::raw`] for bytes read as they are written, a 64 KiB block at a time. An error
    /// reading is returned; a reader of stdout that went away is not an error, as for `raw`.
    pub fn raw_from(&self, reader: &mut dyn io::Read) -> io::Result<()> {
        let mut buf = vec![0; 64 * 1024];
        let mut out = io::stdout().lock();
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match out.write_all(&buf[..n]) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
        match out.flush() {
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

    /// An observer that prints a task's output, line by line, as it arrives.
    pub fn task_output(&self, task: &str) -> TaskOutput {
        TaskOutput {
            printer: self.clone(),
            lines: TaskLines::new(self.paint_err(Style::Dim, format!("{task} │"))),
            batch: Vec::new(),
        }
    }
}

pub(crate) fn paint(enabled: bool, style: Style, text: impl Display) -> String {
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
            self.paint_err(Style::Bold, run.title()),
            self.paint_err(Style::Dim, format!("({}, run {})", run.trigger, run.id)),
        ));
        if let Some(live) = &self.live {
            live.started(run.id.as_str(), &run.task, run.attempt);
        }
    }

    fn runs_planned(&self, count: usize) {
        if let Some(live) = &self.live {
            live.planned(count);
        }
    }

    fn run_output(&self, task: &str) -> Box<dyn OutputObserver> {
        Box::new(self.task_output(task))
    }

    fn run_finished(&self, run: &TaskRun) {
        if let Some(live) = &self.live {
            live.finished(run.id.as_str());
        }
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
            self.paint_err(Style::Bold, run.title()),
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

/// Prints a task's output as it arrives, each line prefixed with the task's name.
///
/// This is the hot path of a task that prints a lot: the task blocks on its full pipe while
/// lumo prints, so lumo's time here is taken from the task's own timeout. Each chunk the pump
/// hands over (up to one 64 KiB read) becomes one batch of prefixed lines written to stderr in
/// one call under the printer's lock, so lines of concurrent tasks never mix and the order
/// within a task is the pipe's. With `--quiet` nothing is printed, so nothing is split either.
pub struct TaskOutput {
    printer: Printer,
    lines: TaskLines,
    batch: Vec<u8>,
}

impl TaskOutput {
    /// Prints what is left of an unterminated last line.
    pub fn flush(&mut self) {
        self.lines.finish(&mut self.batch);
        self.write_batch();
    }

    fn write_batch(&mut self) {
        if !self.batch.is_empty() {
            self.printer.stderr_bytes(&self.batch);
            self.batch.clear();
        }
    }
}

impl OutputObserver for TaskOutput {
    fn output(&mut self, chunk: &[u8]) {
        if self.printer.quiet {
            return;
        }
        self.lines.push(chunk, &mut self.batch);
        self.write_batch();
    }
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The longest unterminated line held back: a task printing one enormous line (or a progress
/// bar that only ever returns the carriage) must not make lumo hold it all.
const PARTIAL_LINE_MAX: usize = 64 * 1024;

/// Splits a byte stream into `{task} │ {line}` lines: invalid UTF-8 replaced, trailing carriage
/// returns dropped, and a line longer than [`PARTIAL_LINE_MAX`] without a newline printed in
/// pieces. Lines are appended straight from the chunk; only the line that spans two chunks is
/// copied, and only the unterminated end of a chunk is kept for the next.
struct TaskLines {
    /// `{task} │ `, painted once rather than per line.
    prefix: Vec<u8>,
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
}

impl TaskLines {
    fn new(prefix: String) -> TaskLines {
        let mut prefix = prefix.into_bytes();
        prefix.push(b' ');
        TaskLines {
            prefix,
            partial: Vec::new(),
        }
    }

    /// Appends every line `chunk` completes to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        if let Some(last) = chunk.iter().rposition(|&b| b == b'\n') {
            let mut lines = &chunk[..=last];
            rest = &chunk[last + 1..];
            if !self.partial.is_empty() {
                let pos = newline(lines).unwrap_or(last);
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&lines[..pos]);
                self.line(&line, out);
                line.clear();
                self.partial = line;
                lines = &lines[pos + 1..];
            }
            // Output is nearly always valid UTF-8: checked once for all of a chunk's lines
            // (a newline never splits a character), each line is then copied as it is. A task
            // printing millions of short lines spent most of lumo's time converting each.
            if std::str::from_utf8(lines).is_ok() {
                self.valid_lines(lines, out);
            } else {
                while let Some(pos) = newline(lines) {
                    self.line(&lines[..pos], out);
                    lines = &lines[pos + 1..];
                }
            }
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > PARTIAL_LINE_MAX {
            self.finish(out);
        }
    }

    /// Appends `lines` (valid UTF-8, each ended by a newline) to `out` as [`line`](Self::line)
    /// would, one at a time.
    fn valid_lines(&self, mut lines: &[u8], out: &mut Vec<u8>) {
        while let Some(pos) = newline(lines) {
            out.extend_from_slice(&self.prefix);
            if pos > 0 && lines[pos - 1] == b'\r' {
                let mut end = pos - 1;
                while end > 0 && lines[end - 1] == b'\r' {
                    end -= 1;
                }
                out.extend_from_slice(&lines[..end]);
                out.push(b'\n');
            } else {
                // The line and its newline in one copy.
                out.extend_from_slice(&lines[..=pos]);
            }
            lines = &lines[pos + 1..];
        }
    }

    /// Appends what is left of an unterminated line to `out`.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            self.line(&partial, out);
            self.partial = partial;
            self.partial.clear();
        }
    }

    fn line(&self, line: &[u8], out: &mut Vec<u8>) {
        let mut end = line.len();
        while end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        out.extend_from_slice(&self.prefix);
        // `\r` is ASCII and never part of an invalid sequence, so trimming it before the
        // conversion gives the same text as trimming after.
        out.extend_from_slice(String::from_utf8_lossy(&line[..end]).as_bytes());
        out.push(b'\n');
    }
}

fn newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a task's output looks like on stderr when it arrives in these chunks.
    fn printed(chunks: &[&[u8]]) -> String {
        let mut lines = TaskLines::new("t │".to_string());
        let mut out = Vec::new();
        for chunk in chunks {
            lines.push(chunk, &mut out);
        }
        lines.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_prefixed_whatever_the_chunks() {
        let whole = printed(&[b"one\ntwo\r\n\nthree\nfour"]);
        assert_eq!(whole, "t │ one\nt │ two\nt │ \nt │ three\nt │ four\n");
        let bytewise: Vec<&[u8]> = b"one\ntwo\r\n\nthree\nfour".chunks(1).collect();
        assert_eq!(printed(&bytewise), whole);
        assert_eq!(
            printed(&[b"on", b"e\ntw", b"o\r", b"\n\nthr", b"ee\nfour"]),
            whole
        );
        assert_eq!(printed(&[]), "");
        assert_eq!(printed(&[b"\n"]), "t │ \n");
    }

    #[test]
    fn valid_and_invalid_chunks_print_the_same_lines() {
        // The same lines through the checked-once path (valid chunks) and the per-line one
        // (a chunk with one invalid byte elsewhere).
        let text: &[u8] = b"a\r\r\n\r\nb\n\nc\rd\n";
        let expected = "t │ a\nt │ \nt │ b\nt │ \nt │ c\rd\n";
        assert_eq!(printed(&[text]), expected);
        let mut spoiled = text.to_vec();
        spoiled.extend_from_slice(b"\xff\n");
        assert_eq!(printed(&[&spoiled]), format!("{expected}t │ \u{fffd}\n"));
        assert_eq!(
            printed(&[b"par", text]),
            format!("t │ par{}", &expected[6..])
        );
    }

    #[test]
    fn carriage_return_only_output_is_one_line() {
        // A progress bar redrawing itself: one line, its inner returns kept for the terminal.
        assert_eq!(printed(&[b"10%\r50%\r", b"100%\r"]), "t │ 10%\r50%\r100%\n");
        assert_eq!(printed(&[b"\r\r\n"]), "t │ \n");
    }

    #[test]
    fn invalid_utf8_is_replaced_even_when_split_across_chunks() {
        // `€` split between two reads stays one character; a lone continuation byte does not.
        assert_eq!(
            printed(&[b"5 \xe2\x82", b"\xac\n\x82x\n"]),
            "t │ 5 €\nt │ \u{fffd}x\n"
        );
    }

    #[test]
    fn a_long_line_without_newline_is_printed_in_pieces_not_held() {
        let mut lines = TaskLines::new("t │".to_string());
        let mut out = Vec::new();
        let block = vec![b'x'; 40 * 1024];
        lines.push(&block, &mut out);
        assert!(out.is_empty(), "40 KiB is held until its newline");
        lines.push(&block, &mut out);
        assert_eq!(
            out.len(),
            "t │ ".len() + 80 * 1024 + 1,
            "80 KiB is printed at once"
        );
        assert!(lines.partial.is_empty());
        out.clear();
        lines.push(b"end\n", &mut out);
        assert_eq!(out, b"t \xe2\x94\x82 end\n");
    }
}
