//! Reading the runner function's streamed answer to one `InvokeWithResponseStream`: Lambda's
//! `PayloadChunk` events carry the runner's framed body ([`lumo_runner::invoke::stream`]), whose
//! output frames are shown as they arrive and whose final frame is the run's outcome;
//! `InvokeComplete` says whether the function itself failed.

use aws_sdk_lambda::operation::invoke_with_response_stream::InvokeWithResponseStreamOutput;
use aws_sdk_lambda::types::InvokeWithResponseStreamResponseEvent as Event;
use lumo_runner::executor::OutputObserver;
use lumo_runner::invoke::stream::{Frame, OutputCut, StreamDecoder, StreamError};
use lumo_runner::invoke::{InvokeResponse, RESPONSE_VERSION};
use lumo_runner::mask::Masker;

use super::function_error::FunctionError;
use crate::backend::BackendError;
use crate::backend::aws::errors::sdk_error;

/// What the runner function answered.
pub(super) enum RunnerAnswer {
    /// The run's outcome; `streamed_output` is false when no output came live (a runner from
    /// before streaming, or a task that printed nothing), `cut` when output stopped being
    /// streamed at the response's size limit.
    Response {
        response: Box<InvokeResponse>,
        streamed_output: bool,
        cut: Option<OutputCut>,
    },
    /// The runner could not do its part, or the function failed.
    Failed(FunctionError),
}

/// Reads the event stream to its end, handing output to `output` as it arrives.
pub(super) async fn read_answer(
    name: &str,
    call: &mut InvokeWithResponseStreamOutput,
    output: &mut dyn OutputObserver,
    masker: &Masker,
) -> Result<RunnerAnswer, BackendError> {
    let mut decoder = StreamDecoder::new();
    let mut answer: Option<RunnerAnswer> = None;
    let mut streamed_output = false;
    let mut cut = None;
    let mut failed = None;
    let malformed = |e: StreamError| {
        BackendError::with_source(
            format!("`{name}` answered with something that is not a lumo runner response"),
            e,
        )
        .hint("is the function running an older or foreign runner? deploy again to update it")
    };
    loop {
        let event = call
            .event_stream
            .recv()
            .await
            .map_err(|e| sdk_error(&format!("reading the answer of `{name}`"), e))?;
        let mut on_frame = |frame: Frame<'_>| match frame {
            Frame::Output(bytes) => {
                streamed_output = true;
                output.output(bytes);
            }
            Frame::Cut(c) => cut = Some(c),
            Frame::Response(response) => {
                answer = Some(RunnerAnswer::Response {
                    response,
                    streamed_output,
                    cut: cut.clone(),
                })
            }
            Frame::Error(e) => {
                answer = Some(RunnerAnswer::Failed(FunctionError::new(
                    &e.error_type,
                    &e.error_message,
                    masker,
                )))
            }
        };
        match event {
            Some(Event::PayloadChunk(chunk)) => {
                if let Some(bytes) = chunk.payload() {
                    decoder
                        .push(bytes.as_ref(), &mut on_frame)
                        .map_err(malformed)?;
                }
            }
            Some(Event::InvokeComplete(complete)) => {
                if let Some(code) = complete.error_code().filter(|c| !c.is_empty()) {
                    failed = Some(FunctionError::from_details(
                        code,
                        complete.error_details().unwrap_or_default(),
                        masker,
                    ));
                }
            }
            Some(_) => {}
            None => {
                if failed.is_none() && !decoder.is_done() {
                    decoder.finish(&mut on_frame).map_err(malformed)?;
                }
                break;
            }
        }
    }
    // The function's own failure (it died, ran out of time, streamed past the limit) wins over
    // what it managed to say before.
    if let Some(error) = failed {
        return Ok(RunnerAnswer::Failed(error));
    }
    match answer {
        Some(RunnerAnswer::Response { response, .. }) if response.v > RESPONSE_VERSION => {
            Err(BackendError::new(format!(
                "`{name}` answered in version {} of lumo's runner response, and this lumo reads versions up to {RESPONSE_VERSION}",
                response.v
            ))
            .hint("its runner is newer than this lumo: upgrade lumo, or deploy with this one"))
        }
        Some(answer) => Ok(answer),
        None => Err(malformed(StreamError::Truncated { received: 0 })),
    }
}
