//! Logging through tracing: `RUST_LOG` when set, else `info` (`debug` with
//! -debug).
//!
//! Three looks: JSON lines (-json); the full format with timestamps and
//! levels (-debug, a log file, or stderr on a terminal, coloured unless
//! `NO_COLOR`); and otherwise plain lines for people, `dockerfuse: ...`,
//! with no timestamp and no colour.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Json,
    Full { ansi: bool },
    Plain,
}

/// The style for these flags, given where the lines go.
pub(crate) fn style(debug: bool, json: bool, to_file: bool) -> Style {
    if json {
        Style::Json
    } else if to_file {
        Style::Full { ansi: false }
    } else if debug || std::io::stderr().is_terminal() {
        Style::Full {
            ansi: crate::report::colour(),
        }
    } else {
        Style::Plain
    }
}

/// `dockerfuse: [warning: ]message key=value...`
struct PlainFormat;

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        w.write_str("dockerfuse: ")?;
        match *event.metadata().level() {
            Level::ERROR => w.write_str("error: ")?,
            Level::WARN => w.write_str("warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

pub(crate) fn init(debug: bool, json: bool, file: Option<&Path>) -> std::io::Result<Style> {
    let default = if debug {
        "dockerfuse=debug,fuser=info,info"
    } else {
        "dockerfuse=info,fuser=error,warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            Box::new(move || match f.try_clone() {
                Ok(f) => Box::new(f) as Box<dyn std::io::Write>,
                Err(_) => Box::new(std::io::sink()),
            })
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let style = style(debug, json, file.is_some());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(debug);
    let res = match style {
        Style::Json => builder.json().try_init(),
        Style::Full { ansi } => builder.with_ansi(ansi).try_init(),
        Style::Plain => builder
            .with_ansi(false)
            .event_format(PlainFormat)
            .try_init(),
    };
    res.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(style)
}
