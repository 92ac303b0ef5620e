//! The body of a streamed runner response (PRODUCT.md §9: a task's output arrives live, its
//! outcome as the last frame), written by the runner function and read by the CLI.
//!
//! Lambda hands the caller the bytes the function writes as `PayloadChunk`s whose boundaries
//! are its own (it may split or join writes), so the body frames itself:
//!
//! ```text
//! [metadata prelude: JSON, then 8 NUL bytes]   lambda_runtime writes it; real Lambda passes it on
//! LUMO-STREAM/1\n                               the version of this framing
//! frame*                                        kind (1 byte) | length (u32, big-endian) | payload
//! ```
//!
//! Frames: `o` a chunk of masked output, in order; `c` output stopped being streamed (the
//! response's size limit is near: JSON [`OutputCut`]), the rest is only in the uploaded log;
//! then exactly one final frame, `r` the [`InvokeResponse`] (JSON) or `e` why the runner could
//! not do its part (JSON [`StreamedError`]). A body that ends without a final frame was cut
//! short.
//!
//! A body with neither the version line nor a prelude comes from a runner from before
//! streaming, which answers with one buffered [`InvokeResponse`]: [`StreamDecoder`] reads both,
//! so a `lumo run` against a function deployed by an older lumo still works.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvokeResponse;

/// The line that starts the frames, naming this framing's version. A reader refuses a body
/// that starts with another version's line, rather than misreading it.
pub const STREAM_VERSION_LINE: &[u8] = b"LUMO-STREAM/1\n";

/// What every streamed version line starts with.
const VERSION_LINE_PREFIX: &[u8] = b"LUMO-STREAM/";

/// The end of lambda_runtime's metadata prelude.
const PRELUDE_END: [u8; 8] = [0; 8];

/// Bytes of a frame before its payload: the kind and the length.
pub const FRAME_HEADER_BYTES: usize = 5;

/// The largest frame a reader accepts: more than any response (Lambda's buffered limit is
/// 6 MB) and any output chunk (64 KiB reads).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The largest buffered response of an older runner a reader accepts (Lambda's limit, 6 MB).
const MAX_BUFFERED_BYTES: usize = 7 * 1024 * 1024;

const KIND_OUTPUT: u8 = b'o';
const KIND_CUT: u8 = b'c';
const KIND_RESPONSE: u8 = b'r';
const KIND_ERROR: u8 = b'e';

/// Output stopped being streamed: `streamed_bytes` of output frames were sent, the most the
/// response may carry (`limit`) with room kept for the final frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputCut {
    pub streamed_bytes: u64,
    pub limit: u64,
}

/// Why the runner could not do its part (the function error of a buffered response): the
/// `errorType` (`lumo.*`) and the whole error chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamedError {
    pub error_type: String,
    pub error_message: String,
}

/// A frame of a streamed response, as the reader hands it on.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    Output(&'a [u8]),
    Cut(OutputCut),
    /// The final frame of a run that ended (also an older runner's whole buffered response).
    Response(Box<InvokeResponse>),
    /// The final frame of an invocation the runner could not carry out.
    Error(StreamedError),
}

/// A frame carrying `chunk` of output.
pub fn output_frame(chunk: &[u8]) -> Vec<u8> {
    frame(KIND_OUTPUT, chunk)
}

pub fn cut_frame(cut: &OutputCut) -> Vec<u8> {
    json_frame(KIND_CUT, cut)
}

pub fn response_frame(response: &InvokeResponse) -> Vec<u8> {
    json_frame(KIND_RESPONSE, response)
}

pub fn error_frame(error: &StreamedError) -> Vec<u8> {
    json_frame(KIND_ERROR, error)
}

fn json_frame<T: Serialize>(kind: u8, value: &T) -> Vec<u8> {
    // Serialising these types cannot fail (string keys, no custom serialisers); should it, the
    // frame is empty and the reader says what it could not read.
    frame(kind, &serde_json::to_vec(value).unwrap_or_default())
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.push(kind);
    // A payload is at most 64 KiB of output or a response under 6 MB.
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(payload);
    frame
}

/// Why a streamed response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The body ended before its final frame (the function died, or the stream was cut).
    Truncated { received: u64 },
    /// The body is framed by a version of this framing the reader does not know.
    Version { line: String },
    /// A frame of an unknown kind, or larger than any the runner writes.
    BadFrame { kind: u8, len: usize },
    /// A frame's JSON (or an older runner's buffered response) does not parse.
    Json { what: &'static str, reason: String },
    /// More than a buffered response can be, without the version line.
    TooLarge { bytes: usize },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Truncated { received } => write!(
                f,
                "the response ended after {received} bytes, before the run's outcome"
            ),
            StreamError::Version { line } => write!(
                f,
                "the response is in `{line}`, and this lumo reads `{}`",
                String::from_utf8_lossy(&STREAM_VERSION_LINE[..STREAM_VERSION_LINE.len() - 1])
            ),
            StreamError::BadFrame { kind, len } => write!(
                f,
                "the response has a frame of kind {kind:#04x} and {len} bytes, which no lumo runner writes"
            ),
            StreamError::Json { what, reason } => write!(f, "its {what} is not valid: {reason}"),
            StreamError::TooLarge { bytes } => write!(
                f,
                "the response has {bytes} bytes without lumo's stream framing, more than a buffered response can be"
            ),
        }
    }
}

impl std::error::Error for StreamError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the version line: a prelude may come first, or an older runner's response.
    Start,
    Frames,
    /// The final frame has been read; what follows is ignored.
    Done,
}

/// Reads a streamed response as its pieces arrive, keeping at most one unfinished frame (a
/// task printing 100 MB does not make the reader grow).
#[derive(Debug)]
pub struct StreamDecoder {
    state: State,
    pending: Vec<u8>,
    received: u64,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        StreamDecoder::new()
    }
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder {
            state: State::Start,
            pending: Vec::new(),
            received: 0,
        }
    }

    /// `true` once the final frame has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body, and hands on each frame it completes, in order.
    pub fn push(
        &mut self,
        bytes: &[u8],
        on_frame: &mut dyn FnMut(Frame<'_>),
    ) -> Result<(), StreamError> {
        self.received += bytes.len() as u64;
        if self.state == State::Done {
            return Ok(());
        }
        self.pending.extend_from_slice(bytes);
        if self.state == State::Start && !self.find_version_line()? {
            return Ok(());
        }
        let mut at = 0;
        while self.state == State::Frames {
            let rest = &self.pending[at..];
            if rest.len() < FRAME_HEADER_BYTES {
                break;
            }
            let kind = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len > MAX_FRAME_BYTES
                || ![KIND_OUTPUT, KIND_CUT, KIND_RESPONSE, KIND_ERROR].contains(&kind)
            {
                return Err(StreamError::BadFrame { kind, len });
            }
            if rest.len() < FRAME_HEADER_BYTES + len {
                break;
            }
            let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
            at += FRAME_HEADER_BYTES + len;
            match kind {
                KIND_OUTPUT => on_frame(Frame::Output(payload)),
                KIND_CUT => on_frame(Frame::Cut(parse(payload, "output cut")?)),
                KIND_RESPONSE => {
                    self.state = State::Done;
                    on_frame(Frame::Response(Box::new(parse(payload, "outcome")?)));
                }
                _ => {
                    self.state = State::Done;
                    on_frame(Frame::Error(parse(payload, "error")?));
                }
            }
        }
        self.pending.drain(..at);
        if self.state == State::Done {
            self.pending = Vec::new();
        }
        Ok(())
    }

    /// Ends the body: an older runner's buffered response is handed on now; a streamed one
    /// must have had its final frame.
    pub fn finish(mut self, on_frame: &mut dyn FnMut(Frame<'_>)) -> Result<(), StreamError> {
        match self.state {
            State::Done => Ok(()),
            State::Start if !self.pending.is_empty() && self.pending[0] != 0 => {
                let response: InvokeResponse = parse(&self.pending, "response")?;
                self.state = State::Done;
                on_frame(Frame::Response(Box::new(response)));
                Ok(())
            }
            _ => Err(StreamError::Truncated {
                received: self.received,
            }),
        }
    }

    /// In [`State::Start`]: drops a prelude, and moves past the version line once it is all
    /// there (`true`). `false` while more is needed to tell.
    fn find_version_line(&mut self) -> Result<bool, StreamError> {
        loop {
            let head = &self.pending[..];
            if head.starts_with(STREAM_VERSION_LINE) {
                self.pending.drain(..STREAM_VERSION_LINE.len());
                self.state = State::Frames;
                return Ok(true);
            }
            if head.starts_with(VERSION_LINE_PREFIX) {
                return match head.iter().position(|&b| b == b'\n') {
                    Some(end) => Err(StreamError::Version {
                        line: String::from_utf8_lossy(&head[..end]).into_owned(),
                    }),
                    None if head.len() > 64 => Err(StreamError::Version {
                        line: String::from_utf8_lossy(&head[..64]).into_owned(),
                    }),
                    None => Ok(false),
                };
            }
            if VERSION_LINE_PREFIX.starts_with(head) {
                return Ok(false);
            }
            // A prelude is JSON, which never holds a raw NUL: the first eight end it.
            if head.first() == Some(&b'{')
                && let Some(at) = head
                    .windows(PRELUDE_END.len())
                    .position(|w| w == PRELUDE_END)
            {
                self.pending.drain(..at + PRELUDE_END.len());
                continue;
            }
            if head.len() > MAX_BUFFERED_BYTES {
                return Err(StreamError::TooLarge { bytes: head.len() });
            }
            // An older runner's buffered response, or a prelude not yet ended.
            return Ok(false);
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    what: &'static str,
) -> Result<T, StreamError> {
    serde_json::from_slice(payload).map_err(|e| StreamError::Json {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::contract::RunStatus;
    use crate::invoke::RESPONSE_VERSION;
    use crate::task_run::RunOutcome;

    fn response() -> InvokeResponse {
        let mut outcome = RunOutcome::not_started("nope".into(), SystemTime::UNIX_EPOCH);
        outcome.ended_at = SystemTime::UNIX_EPOCH;
        InvokeResponse {
            v: RESPONSE_VERSION,
            outcome,
            data_uploaded: false,
            log_uploaded: true,
            upload_error: None,
            runner_version: "0.1.0".into(),
        }
    }

    /// What lambda_runtime's `StreamResponse` writes before the body.
    const PRELUDE: &[u8] =
        b"{\"statusCode\":200,\"headers\":{\"content-type\":\"application/octet-stream\"},\"cookies\":[]}\0\0\0\0\0\0\0\0";

    #[derive(Debug, PartialEq)]
    enum Got {
        Output(Vec<u8>),
        Cut(OutputCut),
        Response(InvokeResponse),
        Error(StreamedError),
    }

    /// Feeds `body` in pieces of `step` bytes, as Lambda's chunks may cut it anywhere.
    fn decode(body: &[u8], step: usize) -> Result<Vec<Got>, StreamError> {
        let mut got = Vec::new();
        let mut on = |frame: Frame<'_>| {
            got.push(match frame {
                Frame::Output(bytes) => Got::Output(bytes.to_vec()),
                Frame::Cut(cut) => Got::Cut(cut),
                Frame::Response(r) => Got::Response(*r),
                Frame::Error(e) => Got::Error(e),
            })
        };
        let mut decoder = StreamDecoder::new();
        for piece in body.chunks(step.max(1)) {
            decoder.push(piece, &mut on)?;
        }
        decoder.finish(&mut on)?;
        Ok(got)
    }

    fn streamed(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut body = PRELUDE.to_vec();
        body.extend_from_slice(STREAM_VERSION_LINE);
        for f in frames {
            body.extend_from_slice(f);
        }
        body
    }

    #[test]
    fn frames_come_back_in_order_however_the_body_is_split() {
        let cut = OutputCut {
            streamed_bytes: 10,
            limit: 20,
        };
        let body = streamed(&[
            output_frame(b"hello "),
            output_frame(b"world\n"),
            cut_frame(&cut),
            response_frame(&response()),
        ]);
        for step in [1, 3, 7, 64, body.len()] {
            let got = decode(&body, step).unwrap();
            assert_eq!(
                got,
                vec![
                    Got::Output(b"hello ".to_vec()),
                    Got::Output(b"world\n".to_vec()),
                    Got::Cut(cut.clone()),
                    Got::Response(response()),
                ],
                "in pieces of {step}"
            );
        }
    }

    #[test]
    fn an_error_is_a_final_frame_and_a_missing_final_frame_is_truncation() {
        let error = StreamedError {
            error_type: "lumo.BundleDownloadFailed".into(),
            error_message: "no".into(),
        };
        let body = streamed(&[error_frame(&error)]);
        assert_eq!(decode(&body, 5).unwrap(), vec![Got::Error(error)]);
        let body = streamed(&[output_frame(b"partial")]);
        assert!(matches!(
            decode(&body, 5),
            Err(StreamError::Truncated { .. })
        ));
        assert!(matches!(decode(b"", 1), Err(StreamError::Truncated { .. })));
    }

    #[test]
    fn a_body_without_a_prelude_is_read_too() {
        let mut body = STREAM_VERSION_LINE.to_vec();
        body.extend(output_frame(b"x"));
        body.extend(response_frame(&response()));
        assert_eq!(decode(&body, 2).unwrap().len(), 2);
    }

    /// A function deployed by a lumo from before streaming answers with one JSON response.
    #[test]
    fn an_older_runners_buffered_response_is_read_as_the_outcome() {
        let body = serde_json::to_vec(&response()).unwrap();
        assert_eq!(decode(&body, 10).unwrap(), vec![Got::Response(response())]);
    }

    #[test]
    fn another_version_or_garbage_is_refused() {
        let err = decode(b"LUMO-STREAM/2\nxxxxx", 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the response is in `LUMO-STREAM/2`, and this lumo reads `LUMO-STREAM/1`"
        );
        let mut body = STREAM_VERSION_LINE.to_vec();
        body.extend_from_slice(b"z\0\0\0\x01!");
        assert!(matches!(
            decode(&body, 100),
            Err(StreamError::BadFrame { kind: b'z', .. })
        ));
        assert!(matches!(
            decode(b"not json", 100),
            Err(StreamError::Json { .. })
        ));
    }

    #[test]
    fn a_response_keeps_its_status() {
        let body = streamed(&[response_frame(&response())]);
        match &decode(&body, 9).unwrap()[0] {
            Got::Response(r) => assert_eq!(r.outcome.status, RunStatus::Failed),
            other => panic!("{other:?}"),
        }
    }
}
