//! The host console: `[timestamp] message` lines as `func start` prints them,
//! with the function name and invocation id on lines a function logged.

use std::fmt::Write as _;
use std::io::IsTerminal;

use time::OffsetDateTime;

use crate::keys::redact::redact;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Set up the console. `verbose` shows debug lines of the host and the
/// functions; `function_level` is host.toml's `logging.logLevel.Function`.
/// `RUST_LOG` overrides both. Keep the guard alive until exit: it flushes.
pub fn init(
    verbose: bool,
    default_level: Option<&str>,
    function_level: Option<&str>,
) -> WorkerGuard {
    let host = if verbose {
        "debug"
    } else {
        default_level.and_then(azure_level).unwrap_or("info")
    };
    let function = if verbose {
        "debug"
    } else {
        function_level.and_then(azure_level).unwrap_or(host)
    };
    let directives = format!("warn,console=info,host={host},function={function}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    // A writer thread keeps console I/O off the request path.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .event_format(Console {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
        .init();
    guard
}

/// host.json's level names to tracing's.
fn azure_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "information" => "info",
        "warning" => "warn",
        "error" | "critical" => "error",
        "none" => "off",
        _ => return None,
    })
}

/// The current time as Core Tools prints it: `2025-06-17T10:15:00.000Z`.
pub fn timestamp() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

struct Console {
    color: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    function: Option<String>,
    invocation: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "function" => self.function = Some(value.to_string()),
            "invocation" => self.invocation = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            _ => self.record_str(field, &format!("{value:?}")),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Console
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // `target: "console"` lines are printed as they are (banners, lists).
        if event.metadata().target() == "console" {
            return writeln!(w, "{}", redact(&fields.message));
        }
        let level = *event.metadata().level();
        let (start, end) = match (self.color, level) {
            (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            _ => ("", ""),
        };
        write!(w, "{start}[{}] ", timestamp())?;
        if let Some(function) = &fields.function {
            // Function lines: `[hello 1f2e3d4c] message` (the id's first 8 characters).
            let id = fields.invocation.as_deref().unwrap_or("");
            write!(w, "[{function} {}] ", &id[..id.len().min(8)])?;
        }
        // Keys and connection strings never reach the console (a function's
        // own lines included).
        let text = if fields.rest.is_empty() {
            fields.message
        } else {
            fields.message + &fields.rest
        };
        writeln!(w, "{}{end}", redact(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_core_tools() {
        let t = timestamp();
        assert_eq!(t.len(), "2025-06-17T10:15:00.000Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn azure_levels_map() {
        assert_eq!(azure_level("Information"), Some("info"));
        assert_eq!(azure_level("None"), Some("off"));
        assert_eq!(azure_level("loud"), None);
    }
}
