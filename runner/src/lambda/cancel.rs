//! The CLI's way to stop a task running in Lambda: a synchronous Invoke cannot be called back,
//! so the CLI writes a cancel object and the runner looks for it while the task runs.

use std::time::Duration;

use super::transfer;

/// The look for the CLI's cancel object while a task runs: every `every`, a GET of the
/// presigned `cancel_url`; once it exists, `stop` turns `true` (the executor then stops the
/// task as on a timeout). A failed look (the network, S3) is tried again; the first failure is
/// logged. The looking ends when this is dropped, the run's end or a panic alike.
pub(super) struct CancelWatch {
    pub stop: tokio::sync::watch::Receiver<bool>,
    looking: tokio::task::JoinHandle<()>,
}

impl CancelWatch {
    pub fn start(url: String, every: Duration) -> CancelWatch {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let looking = tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(every).await;
                let url = url.clone();
                let looked =
                    tokio::task::spawn_blocking(move || transfer::exists(&url, every * 5)).await;
                match looked {
                    Ok(Ok(true)) => {
                        tracing::info!("the CLI asked to stop the run; stopping the task");
                        let _ = stop.send(true);
                        return;
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) if !warned => {
                        tracing::warn!(
                            "could not look for the run's cancel signal (trying on): {e}"
                        );
                        warned = true;
                    }
                    Ok(Err(_)) => {}
                    Err(e) => tracing::warn!("the look for the run's cancel signal failed: {e}"),
                }
            }
        });
        CancelWatch {
            stop: stopped,
            looking,
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.looking.abort();
    }
}
