//! Where a task's output goes while it runs: masked, then streamed to the observer, appended to
//! the log file, and summarised (tail, byte count, last line) for the run's record.
//!
//! Output can be megabytes (PRODUCT.md §8), so nothing here grows with it: the log file is
//! written as output arrives, and only the tail and the start of the current line are kept.
//! The file is created at the first output: a task that prints nothing leaves none (its
//! record says it printed no bytes), and a deploy of many quiet tasks creates no file a task.
//!
//! The log is not buffered here: `lumo logs` reads it while the task runs, and it must hold
//! what the task printed even if lumo is killed (`kill -9`) before the run ends. Each masked
//! chunk goes to the file as it is released, one write per read of the pipe (up to 64 KiB),
//! which tokio's `File` hands to a blocking thread while the next chunk is read: the file is
//! at most one chunk behind, and a task printing megabytes costs one write per read, not one
//! per line (50 MB ran no slower than through the former 64 KiB buffer).

use std::io;
use std::path::PathBuf;

use tokio::fs::File;
use tokio::io::AsyncWriteExt;

use super::{OutputObserver, TAIL_BYTES};
use crate::mask::StreamMasker;

/// The most characters of an output line used as a run's message.
pub(crate) const MESSAGE_MAX_CHARS: usize = 1000;

/// Bytes of a line kept to build a message from: enough for [`MESSAGE_MAX_CHARS`] characters of
/// up to four bytes each.
const LINE_KEEP_BYTES: usize = MESSAGE_MAX_CHARS * 4;

pub(crate) struct OutputSink<'a> {
    masker: StreamMasker,
    observer: &'a mut dyn OutputObserver,
    log: Option<LogFile>,
    /// The end of the masked output; trimmed to [`TAIL_BYTES`] now and then, not on every chunk.
    tail: Vec<u8>,
    bytes: u64,
    lines: LastLine,
    masked: Vec<u8>,
}

/// The log file: neither a writer nor an error before the first output, then written until
/// the first error (creating it included); the error is reported when the run is over.
struct LogFile {
    path: PathBuf,
    writer: Option<File>,
    error: Option<io::Error>,
}

/// What the output came to, once the stream has ended.
pub(crate) struct OutputSummary {
    pub tail: String,
    pub bytes: u64,
    pub last_line: Option<String>,
    /// The log file and why writing it failed, if it did.
    pub log_error: Option<(PathBuf, io::Error)>,
}

impl<'a> OutputSink<'a> {
    pub(crate) fn new(
        masker: StreamMasker,
        observer: &'a mut dyn OutputObserver,
        log: Option<PathBuf>,
    ) -> OutputSink<'a> {
        OutputSink {
            masker,
            observer,
            log: log.map(|path| LogFile {
                path,
                writer: None,
                error: None,
            }),
            tail: Vec::with_capacity(2 * TAIL_BYTES),
            bytes: 0,
            lines: LastLine::default(),
            masked: Vec::new(),
        }
    }

    /// Takes raw output from the task.
    pub(crate) async fn push(&mut self, raw: &[u8]) {
        let mut masked = std::mem::take(&mut self.masked);
        masked.clear();
        self.masker.push(raw, &mut masked);
        self.emit(&masked).await;
        self.masked = masked;
    }

    /// Ends the stream: writes what the masker held back, and waits for the log file's last
    /// write.
    pub(crate) async fn finish(mut self) -> OutputSummary {
        let mut rest = Vec::new();
        self.masker.finish(&mut rest);
        self.emit(&rest).await;
        let mut log_error = None;
        if let Some(mut log) = self.log.take() {
            if let Some(writer) = log.writer.as_mut()
                && let Err(e) = writer.flush().await
            {
                log.error.get_or_insert(e);
            }
            log_error = log.error.map(|e| (log.path, e));
        }
        OutputSummary {
            tail: tail_text(&self.tail),
            bytes: self.bytes,
            last_line: self.lines.finish(),
            log_error,
        }
    }

    async fn emit(&mut self, masked: &[u8]) {
        if masked.is_empty() {
            return;
        }
        self.bytes += masked.len() as u64;
        self.observer.output(masked);
        self.lines.push(masked);
        // Only the end of a chunk can be in the tail: a 64 KiB read is not copied whole.
        self.tail
            .extend_from_slice(&masked[masked.len().saturating_sub(TAIL_BYTES)..]);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
        if let Some(log) = self.log.as_mut()
            && log.writer.is_none()
            && log.error.is_none()
        {
            // Created (or truncated) on the calling thread, not handed to a blocking thread
            // and back as tokio's `File::create` does.
            match std::fs::File::create(&log.path) {
                Ok(file) => log.writer = Some(File::from_std(file)),
                Err(e) => {
                    tracing::debug!("could not create log file `{}`: {e}", log.path.display());
                    log.error = Some(e);
                }
            }
        }
        if let Some(log) = self.log.as_mut()
            && let Some(writer) = log.writer.as_mut()
            && let Err(e) = writer.write_all(masked).await
        {
            // Keep running the task: its outcome matters more than its log. The error comes
            // back with the outcome ([`ExecError::WriteLog`]) and the caller says it once (a
            // warning here too printed it twice).
            tracing::debug!("could not write log file `{}`: {e}", log.path.display());
            log.writer = None;
            log.error = Some(e);
        }
    }
}

/// The last [`TAIL_BYTES`] bytes as text, starting at a character boundary.
fn tail_text(tail: &[u8]) -> String {
    let mut start = tail.len().saturating_sub(TAIL_BYTES);
    // Skip UTF-8 continuation bytes (0b10xx_xxxx) so the cut does not split a character.
    let mut skipped = 0;
    while start < tail.len() && tail[start] & 0xC0 == 0x80 && skipped < 3 {
        start += 1;
        skipped += 1;
    }
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

/// Tracks the last non-empty line of the output, keeping only the start of each line.
#[derive(Default)]
struct LastLine {
    /// The start of the line being written, leading whitespace skipped.
    current: Vec<u8>,
    current_cut: bool,
    last: Option<(Vec<u8>, bool)>,
}

impl LastLine {
    /// Only the last non-blank line counts, so a chunk's complete lines are looked at from its
    /// end: a task printing millions of lines costs a look at one line per chunk, not work on
    /// every line.
    fn push(&mut self, bytes: &[u8]) {
        let Some(last_newline) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.append(bytes);
            return;
        };
        let complete = &bytes[..last_newline];
        let mut end = complete.len();
        loop {
            let start = complete[..end]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |newline| newline + 1);
            let line = &complete[start..end];
            if start == 0 {
                // The chunk's first line ends the one the previous chunks started.
                self.append(line);
                self.end_line();
                break;
            }
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                self.current.clear();
                self.current_cut = false;
                self.append(line);
                self.end_line();
                break;
            }
            end = start - 1;
        }
        self.append(&bytes[last_newline + 1..]);
    }

    fn append(&mut self, mut bytes: &[u8]) {
        if self.current.is_empty() {
            let start = bytes
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(bytes.len());
            bytes = &bytes[start..];
        }
        let room = LINE_KEEP_BYTES - self.current.len();
        if bytes.len() > room {
            self.current_cut = true;
        }
        self.current
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        if self.current.iter().any(|b| !b.is_ascii_whitespace()) {
            // Swapped, not taken: a task printing millions of lines must not cost an
            // allocation and a free for each.
            let last = self.last.get_or_insert_with(|| (Vec::new(), false));
            std::mem::swap(&mut last.0, &mut self.current);
            last.1 = self.current_cut;
        }
        self.current.clear();
        self.current_cut = false;
    }

    fn finish(mut self) -> Option<String> {
        self.end_line();
        let (bytes, cut) = self.last?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let chars = text.chars().count();
        Some(if cut || chars > MESSAGE_MAX_CHARS {
            let mut short: String = text.chars().take(MESSAGE_MAX_CHARS - 1).collect();
            short.push('…');
            short
        } else {
            text.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_line(chunks: &[&str]) -> Option<String> {
        let mut l = LastLine::default();
        for c in chunks {
            l.push(c.as_bytes());
        }
        l.finish()
    }

    #[test]
    fn last_non_empty_line_across_chunks() {
        assert_eq!(
            last_line(&["a\nhel", "lo wor", "ld\n\n  \n"]).as_deref(),
            Some("hello world")
        );
        assert_eq!(
            last_line(&["first\n", "  second  "]).as_deref(),
            Some("second")
        );
        assert_eq!(last_line(&["\r\n", " \n"]), None);
        assert_eq!(last_line(&[]), None);
        assert_eq!(last_line(&["done\r\n"]).as_deref(), Some("done"));
    }

    /// The line-by-line reading `push` must agree with, however the output is cut.
    fn last_line_of_whole(text: &str) -> Option<String> {
        let mut l = LastLine::default();
        for line in text.split_inclusive('\n') {
            l.append(line.strip_suffix('\n').unwrap_or(line).as_bytes());
            if line.ends_with('\n') {
                l.end_line();
            }
        }
        l.finish()
    }

    #[test]
    fn the_last_line_is_the_same_wherever_the_chunks_are_cut() {
        for text in [
            "one\ntwo\n\n  \nthree  \n \n",
            "  lead\n\n\ntrail",
            "\n\n\n",
            "a\r\nb\r\n\r\n",
            "x\n   \n y z \n\t\n",
        ] {
            let expected = last_line_of_whole(text);
            for cut in 0..=text.len() {
                for second in cut..=text.len() {
                    let chunks = [&text[..cut], &text[cut..second], &text[second..]];
                    assert_eq!(
                        last_line(&chunks),
                        expected,
                        "{text:?} cut at {cut}, {second}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_lines_are_cut_to_the_message_limit() {
        let long = "x".repeat(50_000);
        let got = last_line(&[&long, "\n"]).unwrap();
        assert_eq!(got.chars().count(), MESSAGE_MAX_CHARS);
        assert!(got.ends_with('…'));
        let leading = format!("{}word", " ".repeat(10_000));
        assert_eq!(last_line(&[&leading]).as_deref(), Some("word"));
    }

    #[test]
    fn tail_starts_at_a_char_boundary() {
        // 6000 bytes of 3-byte characters: the last 4096 start one byte into a character.
        let bytes = "€".repeat(2000).into_bytes();
        let tail = tail_text(&bytes);
        assert_eq!(tail.len(), TAIL_BYTES - 1);
        assert!(tail.chars().all(|c| c == '€'));
        assert_eq!(tail_text(b"short"), "short");
    }
}
