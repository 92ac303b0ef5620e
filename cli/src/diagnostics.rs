//! How lumo's `tracing` warnings look on the terminal.
//!
//! Code far from the terminal reports a problem it recovers from (a log that could not be
//! written, a lock that could not be renewed, a cache that could not be saved) with
//! `tracing::warn!`, since it holds no `Printer`. A user must see those as the same
//! `warning: …` lines the Printer writes, not as timestamped log records with a level column;
//! `--verbose` and `LUMO_LOG` keep tracing's full format, which is for debugging lumo.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::output::{Style, paint};

/// `warning: <message>` (and `error:` for errors), painted as the Printer paints them.
pub struct PlainDiagnostics {
    pub color: bool,
}

impl<S, N> FormatEvent<S, N> for PlainDiagnostics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let (label, style) = match *event.metadata().level() {
            Level::ERROR => ("error:", Style::Red),
            Level::WARN => ("warning:", Style::Yellow),
            _ => ("note:", Style::Dim),
        };
        write!(writer, "{} ", paint(self.color, style, label))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
