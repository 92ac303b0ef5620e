//! Lets a stop (Ctrl-C, SIGTERM, SIGHUP) end bundling promptly. Bundling is synchronous work on
//! the thread that also waits for the stop, so nothing would notice the signal until a 200 MB
//! bundle is written; the writer calls [`Cancel::check`] between entries and, through
//! [`Cancel::reader`], between blocks of each file, and gives up with [`Cancelled`]. The
//! half-written `.building-*` file is a `tempfile` and is removed as the error unwinds.

use std::io::{self, Read};

use crate::stop::{StopReason, StopSignal};

/// What the bundle writer asks "should I stop?". The default never stops.
#[derive(Clone, Default)]
pub struct Cancel {
    stop: Option<StopSignal>,
}

/// The `io::Error` payload of a bundling stopped by [`Cancel`].
#[derive(Debug, thiserror::Error)]
#[error("bundling stopped: {0}")]
pub struct Cancelled(pub StopReason);

impl Cancel {
    /// Stops when `stop` is pulled.
    pub fn on(stop: &StopSignal) -> Cancel {
        Cancel {
            stop: Some(stop.clone()),
        }
    }

    /// `Err` carrying [`Cancelled`] once a stop was asked for.
    pub fn check(&self) -> io::Result<()> {
        match self.stop.as_ref().and_then(StopSignal::reason) {
            Some(reason) => Err(io::Error::other(Cancelled(reason))),
            None => Ok(()),
        }
    }

    /// `source`, checking for a stop before every read.
    pub fn reader<R: Read>(&self, source: R) -> CancellableRead<'_, R> {
        CancellableRead {
            cancel: self,
            source,
        }
    }

    /// The stop reason inside an error from [`check`](Self::check), if that is what it is.
    pub fn reason_of(error: &io::Error) -> Option<StopReason> {
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<Cancelled>())
            .map(|c| c.0)
    }
}

/// See [`Cancel::reader`].
pub struct CancellableRead<'a, R> {
    cancel: &'a Cancel,
    source: R,
}

impl<R: Read> Read for CancellableRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.source.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::Interrupt;

    #[test]
    fn a_stop_ends_reads_with_its_reason() {
        let stop = StopSignal::new();
        let cancel = Cancel::on(&stop);
        let data = vec![7u8; 1 << 20];
        let mut reader = cancel.reader(&data[..]);
        let mut block = [0u8; 1024];
        assert_eq!(reader.read(&mut block).unwrap(), 1024);
        stop.stop(StopReason::Interrupted(Interrupt::Sigterm));
        let err = reader.read(&mut block).unwrap_err();
        assert_eq!(
            Cancel::reason_of(&err),
            Some(StopReason::Interrupted(Interrupt::Sigterm))
        );
        assert!(Cancel::default().check().is_ok());
        assert_eq!(Cancel::reason_of(&io::Error::other("disk")), None);
    }
}
