//! What polls the handler's future. A task runs one future to completion and exits, so the
//! default is the smallest executor that can do that (std only); the `tokio` feature swaps in a
//! tokio current-thread runtime for handlers built on tokio-based crates.

use std::future::Future;
use std::io;

/// Runs `future` to completion on the current thread and returns its output: the executor
/// [`run`](crate::run) uses, exposed so a task's own tests can call its handler.
///
/// Without the `tokio` feature this is a std-only loop that polls the future and parks the
/// thread until it is woken. It has no IO reactor and no timers: a future that needs tokio
/// (`tokio::time::sleep`, a tokio-based client) panics with "there is no reactor running".
/// With the `tokio` feature it is a tokio current-thread runtime with IO and time enabled.
///
/// # Panics
///
/// When `future` panics, and (with `tokio`) when the runtime cannot be created.
///
/// ```
/// let n = lumo_task::block_on(async { 40 + 2 });
/// assert_eq!(n, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    match try_block_on(future) {
        Ok(output) => output,
        Err(e) => panic!("lumo-task: cannot start the runtime: {e}"),
    }
}

/// [`block_on`], with a runtime that cannot be created reported as an error.
pub(crate) fn try_block_on<F: Future>(future: F) -> io::Result<F::Output> {
    imp::block_on(future)
}

/// Whether the handler runs on tokio (the `tokio` feature).
pub(crate) const TOKIO: bool = cfg!(feature = "tokio");

#[cfg(not(feature = "tokio"))]
mod imp {
    use std::future::Future;
    use std::io;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::{self, Thread};

    /// Wakes the thread blocked in [`block_on`] by unparking it.
    struct ThreadWaker(Thread);

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    pub fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        let mut future = pin!(future);
        let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Ok(output);
            }
            // A wake that happened since the poll left a token: `park` returns at once. A
            // spurious return only costs one more poll.
            thread::park();
        }
    }
}

#[cfg(feature = "tokio")]
mod imp {
    use std::future::Future;
    use std::io;

    pub fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let output = runtime.block_on(future);
        // Do not wait for blocking work the handler left behind (a `tokio::io::stdin` read
        // never ends): the task's result is decided, and the process is about to exit.
        runtime.shutdown_background();
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::mpsc;
    use std::task::{Context, Poll, Waker};
    use std::thread;
    use std::time::Duration;

    /// A future completed by another thread, the way an IO-bound future is woken.
    struct FromThread {
        rx: mpsc::Receiver<u32>,
        waker_tx: Option<mpsc::Sender<Waker>>,
    }

    impl Future for FromThread {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if let Ok(v) = self.rx.try_recv() {
                return Poll::Ready(v);
            }
            if let Some(tx) = self.waker_tx.take() {
                let _ = tx.send(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (value_tx, rx) = mpsc::channel();
        let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
        let helper = thread::spawn(move || {
            let Ok(waker) = waker_rx.recv() else { return };
            thread::sleep(Duration::from_millis(20));
            let _ = value_tx.send(7);
            waker.wake();
        });
        let got = block_on(FromThread {
            rx,
            waker_tx: Some(waker_tx),
        });
        assert_eq!(got, 7);
        let _ = helper.join();
    }

    #[test]
    fn block_on_runs_nested_awaits() {
        async fn double(x: u32) -> u32 {
            x * 2
        }
        assert_eq!(block_on(async { double(double(3).await).await }), 12);
    }
}
