//! `--junit PATH`: the deployment, run or `exec` as a JUnit XML test report, the format GitLab
//! (`artifacts: reports: junit:`), Jenkins, Azure and most CI dashboards read. One test suite
//! for the deployment, one test case per task run: a failure (message, and the output's tail as
//! its text) for a task that failed, timed out or was abandoned, `<skipped/>` for one that never
//! started. Tasks the deployment did not call for (`not_run`) have no run and no test case.
//!
//! The XML is written by hand: the format is a handful of elements, and escaping text for
//! XML 1.0 is the only subtle part (below), which a dependency would not make shorter. The
//! file is written to a temporary file beside it and renamed over it, so a reader (or a job
//! cancelled mid-write) never sees half a report.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use super::Subject;
use crate::report::outcome::TaskOutcome;

/// Writes the report of `subject` to `path`, atomically. An error names no temporary file (the
/// caller names `path`); the temporary file is gone whatever failed.
pub fn write(path: &Path, subject: &Subject) -> io::Result<()> {
    let xml = to_xml(subject);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = || -> io::Result<()> {
        let mut file = temp_file_in(dir)?;
        file.write_all(xml.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| without_temp_file_name(&e))
}

/// The temporary file a report is written to before it is renamed over its path.
pub(crate) fn temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".lumo-junit-")
        .suffix(".tmp")
        .tempfile_in(dir)
}

/// `e` without the name of the temporary file tempfile adds to its errors (`… at path
/// ".lumo-junit-x7Kq.tmp"`): a file the user never asked for, named in place of their
/// `--junit PATH`.
pub(crate) fn without_temp_file_name(e: &io::Error) -> io::Error {
    if let Some(code) = e.raw_os_error() {
        return io::Error::from_raw_os_error(code);
    }
    // tempfile's wrapper hides the OS error's code; its text comes first.
    let text = e.to_string();
    let os_error = text
        .split_once(" at path ")
        .map_or(text.as_str(), |(os_error, _)| os_error);
    io::Error::new(e.kind(), os_error.to_string())
}

/// The report as XML text.
pub fn to_xml(subject: &Subject) -> String {
    let cases: Vec<&TaskOutcome> = subject
        .tasks
        .iter()
        .map(|t| &t.outcome)
        .filter(|o| o.run_id.is_some())
        .collect();
    let failures = cases.iter().filter(|o| o.failed()).count();
    let skipped = cases.iter().filter(|o| o.skipped()).count();
    let time = seconds(subject.duration_ms.unwrap_or(0));
    let suite = match subject.command {
        "run" => format!(
            "lumo run {} in {}/{}",
            cases.first().map_or("?", |o| o.task.as_str()),
            subject.project,
            subject.env
        ),
        "exec" => format!("lumo exec in {}/{}", subject.project, subject.env),
        _ => format!(
            "lumo deploy {}/{} {}",
            subject.project, subject.env, subject.version
        ),
    };
    let classname = format!("lumo.{}.{}", subject.project, subject.env);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"lumo\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\">",
        cases.len()
    );
    let timestamp = cases
        .iter()
        .filter_map(|o| o.started_at)
        .min()
        .map(|t| format!(" timestamp=\"{}\"", attr(&t.to_string())))
        .unwrap_or_default();
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{time}\"{timestamp}>",
        attr(&suite),
        cases.len()
    );
    for o in cases {
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
            attr(&o.task),
            attr(&classname),
            seconds(o.duration_ms.unwrap_or(0))
        );
        let message = o.message.as_deref().unwrap_or("");
        if o.failed() {
            let mut body = o.output_tail.clone().unwrap_or_default();
            if let (Some(id), Some(logs)) = (&o.run_id, o.logs_command()) {
                if !body.is_empty() && !body.ends_with('\n') {
                    body.push('\n');
                }
                body.push_str(&format!("(run {id}; full output: {logs})\n"));
            }
            let _ = writeln!(
                xml,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                attr(message),
                attr(&o.status),
                text(&body)
            );
        } else if o.skipped() {
            let _ = writeln!(
                xml,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                attr(message)
            );
        } else {
            match o.output_tail.as_deref().filter(|t| !t.is_empty()) {
                Some(tail) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        text(tail)
                    );
                }
                None => xml.push_str("/>\n"),
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// Milliseconds as JUnit's seconds (`1.234`).
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Text content: markup characters escaped, and what XML 1.0 cannot hold replaced.
fn text(s: &str) -> String {
    escape(s, false)
}

/// An attribute value: as [`text`], and quotes and line breaks as references (a parser turns a
/// literal newline in an attribute into a space).
fn attr(s: &str) -> String {
    escape(s, true)
}

/// XML 1.0 allows no control character but tab, newline and carriage return, not even as a
/// character reference; a task's output holds others (terminal colour codes above all). Colour
/// sequences (`ESC [ … letter`) are dropped, any other disallowed character becomes U+FFFD.
fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' if attribute => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                // Parameters and intermediates, then one final byte in `@`..=`~`.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_xml_cannot_hold_is_escaped_or_replaced() {
        assert_eq!(
            text("a < b && c > \"d\""),
            "a &lt; b &amp;&amp; c &gt; \"d\""
        );
        assert_eq!(
            attr("say \"hi\"\n'x'\t"),
            "say &quot;hi&quot;&#10;&apos;x&apos;&#9;"
        );
        assert_eq!(text("\u{1b}[31mred\u{1b}[0m ok"), "red ok");
        assert_eq!(
            text("nul\u{0} bell\u{7} \u{ffff}"),
            "nul\u{fffd} bell\u{fffd} \u{fffd}"
        );
        assert_eq!(text("line\r\nnext"), "line\r\nnext");
    }

    #[test]
    fn seconds_have_millisecond_precision() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(60_005), "60.005");
    }
}
