//! The runner function's streamed response: a task's masked output goes to the CLI while the
//! task runs, and the outcome as the final frame (the framing is [`crate::invoke::stream`]).
//!
//! The executor hands output to an [`OutputObserver`] synchronously, between reads of the
//! task's pipe; the response body is written asynchronously, as Lambda takes it. So the
//! observer only queues frames, and a task of its own writes them to the body. What the queue
//! can hold is bounded by the stream's limit: past [`RunnerConfig::stream_output_max`] bytes of
//! output frames the observer queues one [`OutputCut`] and drops the rest of the output (the
//! uploaded log has all of it), so the final frame always fits in what Lambda accepts.

use std::time::SystemTime;

use bytes::Bytes;
use lambda_runtime::streaming::Sender;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{InvokeError, RunnerConfig, error_chain, invoke};
use crate::executor::OutputObserver;
use crate::invoke::stream::{
    FRAME_HEADER_BYTES, OutputCut, STREAM_VERSION_LINE, StreamedError, cut_frame, error_frame,
    output_frame, response_frame,
};
use crate::invoke::{InvokeRequest, InvokeResponse};

/// Runs the invocation and writes its streamed response to `body`: the version line, output
/// frames as the task prints, then the outcome or the error.
pub(super) async fn respond(
    config: &RunnerConfig,
    request: InvokeRequest,
    deadline: SystemTime,
    body: Sender,
) {
    let (frames, queued) = unbounded_channel();
    let writer = tokio::spawn(write_body(queued, body));
    let mut output = StreamedOutput::new(frames, config.stream_output_max(), config.stream_limit);
    let result = invoke(config, request, deadline, &mut output).await;
    log_result(&result);
    output.finish(&result);
    drop(output);
    if let Err(e) = writer.await {
        tracing::error!("the response writer stopped: {e}");
    }
}

fn log_result(result: &Result<InvokeResponse, InvokeError>) {
    match result {
        Ok(response) => tracing::info!(
            status = %response.outcome.status,
            output_bytes = response.outcome.output_bytes,
            "task run ended"
        ),
        Err(e) => tracing::error!("{}", error_chain(e)),
    }
}

/// Writes queued frames to the response body until the queue closes. Should Lambda stop
/// taking the body, the rest is drained unwritten: the task still runs to its end, and its log
/// is still uploaded.
async fn write_body(mut queued: UnboundedReceiver<Vec<u8>>, mut body: Sender) {
    while let Some(frame) = queued.recv().await {
        if let Err(e) = body.send_data(Bytes::from(frame)).await {
            tracing::warn!("the response stream was closed ({e}); the output goes to the log only");
            while queued.recv().await.is_some() {}
            return;
        }
    }
}

/// The observer that turns output into frames, up to the stream's budget.
pub(super) struct StreamedOutput {
    frames: UnboundedSender<Vec<u8>>,
    /// Bytes of output frames queued so far.
    streamed: u64,
    /// The most bytes of output frames ([`RunnerConfig::stream_output_max`]).
    max: u64,
    /// The stream's whole limit, for the cut frame.
    limit: u64,
    cut: bool,
}

impl StreamedOutput {
    pub(super) fn new(frames: UnboundedSender<Vec<u8>>, max: u64, limit: u64) -> StreamedOutput {
        // A send only fails once the writer is gone, and then nothing can be written anyway.
        let _ = frames.send(STREAM_VERSION_LINE.to_vec());
        StreamedOutput {
            frames,
            streamed: 0,
            max,
            limit,
            cut: false,
        }
    }

    /// Queues the final frame: the outcome, or why the runner could not do its part.
    pub(super) fn finish(&mut self, result: &Result<InvokeResponse, InvokeError>) {
        let frame = match result {
            Ok(response) => response_frame(response),
            Err(e) => error_frame(&StreamedError {
                error_type: e.error_type().to_owned(),
                error_message: error_chain(e),
            }),
        };
        let _ = self.frames.send(frame);
    }
}

impl OutputObserver for StreamedOutput {
    fn output(&mut self, chunk: &[u8]) {
        if self.cut || chunk.is_empty() {
            return;
        }
        let room = self
            .max
            .saturating_sub(self.streamed + FRAME_HEADER_BYTES as u64);
        let fits = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
        if fits > 0 {
            self.streamed += (FRAME_HEADER_BYTES + fits) as u64;
            let _ = self.frames.send(output_frame(&chunk[..fits]));
        }
        if fits < chunk.len() {
            self.cut = true;
            let _ = self.frames.send(cut_frame(&OutputCut {
                streamed_bytes: self.streamed,
                limit: self.limit,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::stream::{Frame, StreamDecoder};

    /// What the CLI would read from the frames queued so far.
    fn read(queued: &mut UnboundedReceiver<Vec<u8>>) -> (Vec<u8>, Option<OutputCut>) {
        let mut decoder = StreamDecoder::new();
        let (mut output, mut cut) = (Vec::new(), None);
        while let Ok(frame) = queued.try_recv() {
            decoder
                .push(&frame, &mut |f| match f {
                    Frame::Output(bytes) => output.extend_from_slice(bytes),
                    Frame::Cut(c) => cut = Some(c),
                    other => panic!("{other:?}"),
                })
                .unwrap();
        }
        (output, cut)
    }

    #[test]
    fn output_is_streamed_up_to_the_budget_then_cut_once() {
        let (frames, mut queued) = unbounded_channel();
        let mut out = StreamedOutput::new(frames, 100, 1000);
        out.output(b"first line\n");
        out.output(&[b'x'; 200]);
        out.output(b"never streamed\n");
        let (output, cut) = read(&mut queued);
        assert!(output.starts_with(b"first line\nxxx"));
        assert_eq!(output.len(), 100 - 2 * FRAME_HEADER_BYTES);
        assert_eq!(
            cut,
            Some(OutputCut {
                streamed_bytes: 100,
                limit: 1000
            })
        );
    }

    #[test]
    fn the_outcome_budget_keeps_room_for_the_final_frame() {
        let mut config = RunnerConfig::new("/tmp/x".into());
        assert_eq!(config.stream_output_max(), 14 * 1024 * 1024);
        config.stream_limit = 1024 * 1024;
        assert_eq!(config.stream_output_max(), 512 * 1024);
    }
}
