//! Reading the task's output pipe while the executor waits for anything else, and handing what
//! it reads to the [`OutputSink`] (masking, the observer, the log, the summary).
//!
//! A task that fills the pipe blocks until it is read. So the executor never waits on anything
//! bare: every wait — for the task to exit, for its group to empty after a signal — goes
//! through [`OutputPump::pump`], and output keeps flowing whatever the executor is waiting for.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;

use super::output::{OutputSink, OutputSummary};

const READ_CHUNK: usize = 64 * 1024;

/// The read side of the output pipe and where its bytes go.
pub(super) struct OutputPump<'a> {
    sink: OutputSink<'a>,
    /// `None` once the pipe reached EOF or was given up on.
    pipe: Option<Receiver>,
    /// Empty between reads, with room for [`READ_CHUNK`] bytes: a read fills it without the
    /// buffer ever being zeroed (a run of a quiet task reads once, at EOF).
    buf: Vec<u8>,
}

impl<'a> OutputPump<'a> {
    pub fn new(sink: OutputSink<'a>, pipe: Receiver) -> OutputPump<'a> {
        OutputPump {
            sink,
            pipe: Some(pipe),
            buf: Vec::with_capacity(READ_CHUNK),
        }
    }

    /// Awaits `fut` while forwarding output.
    pub async fn pump<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            let Some(pipe) = self.pipe.as_mut() else {
                return fut.await;
            };
            tokio::select! {
                biased;
                done = &mut fut => return done,
                read = pipe.read_buf(&mut self.buf) => self.take(read).await,
            }
        }
    }

    /// Forwards output until the pipe reaches EOF or `limit` has passed, whichever comes first.
    /// Once no process of the task's group is left, only a process that left the group
    /// (`setsid`) can still hold the pipe open, and it may do so forever.
    pub async fn drain(&mut self, limit: Duration) {
        let deadline = tokio::time::sleep(limit);
        let mut deadline = std::pin::pin!(deadline);
        while let Some(pipe) = self.pipe.as_mut() {
            tokio::select! {
                read = pipe.read_buf(&mut self.buf) => self.take(read).await,
                () = &mut deadline => {
                    tracing::debug!("a process outside the task's group still holds its output pipe");
                    self.pipe = None;
                }
            }
        }
    }

    /// Ends the output: what the masker held back is released, the log written to its end.
    pub async fn finish(self) -> OutputSummary {
        self.sink.finish().await
    }

    async fn take(&mut self, read: io::Result<usize>) {
        match read {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                self.sink.push(&self.buf[..n]).await;
                self.buf.clear();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("could not read the task's output: {e}");
                self.pipe = None;
            }
        }
    }
}
