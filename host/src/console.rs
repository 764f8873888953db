//! The host console: `[timestamp] message` lines as `func start` prints them,
//! with the function name and invocation id on lines a function logged; or,
//! with `--log-format json`, one JSON object per line for log collectors.

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

/// How console lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[2025-06-17T10:15:00.000Z] message`, as `func start` prints.
    #[default]
    Text,
    /// `{"timestamp":…,"level":…,"category":…,"message":…}` per line.
    Json,
}

/// Set up the console. `verbose` shows debug lines of the host (the durable
/// engine's episodes, checkpoints and lease moves among them) and of the
/// functions; `function_level` is host.toml's `logging.logLevel.Function`.
/// `RUST_LOG` overrides both. Keep the guard alive until exit: it flushes.
pub fn init(
    verbose: bool,
    default_level: Option<&str>,
    function_level: Option<&str>,
    format: LogFormat,
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
            color: format == LogFormat::Text
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
            json: format == LogFormat::Json,
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
    json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    function: Option<String>,
    invocation: Option<String>,
    rest: String,
    /// The same fields as `rest`, apart (for JSON lines).
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "function" => self.function = Some(value.to_string()),
            "invocation" => self.invocation = Some(value.to_string()),
            "message" => self.message.push_str(value),
            name => {
                let _ = write!(self.rest, " {name}={value}");
                self.extra.push((name.to_string(), value.to_string()));
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
        if self.json {
            return json_line(w, event, fields);
        }
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

/// One event as one JSON object. Banner lines (target `console`) keep their
/// text; empty ones are left out. Extra fields (`key=value`) become members.
fn json_line(mut w: Writer<'_>, event: &Event<'_>, fields: Fields) -> std::fmt::Result {
    let target = event.metadata().target();
    let message = fields.message.trim_end();
    if target == "console" && message.trim().is_empty() {
        return Ok(());
    }
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), timestamp().into());
    line.insert("level".into(), event.metadata().level().as_str().into());
    line.insert("category".into(), target.into());
    line.insert("message".into(), message.trim_start().into());
    if let Some(f) = fields.function {
        line.insert("function".into(), f.into());
    }
    if let Some(id) = fields.invocation {
        line.insert("invocationId".into(), id.into());
    }
    for (k, v) in fields.extra {
        line.insert(k, v.into());
    }
    writeln!(w, "{}", serde_json::Value::Object(line))
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
    fn json_lines_parse() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(Console {
                color: false,
                json: true,
            })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "console", "");
            tracing::info!(target: "function", function = "hello", invocation = "3bd3-56dc", "greeting \"Ada\"");
            tracing::warn!(partition = "2 of 4", "lost a lease");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "the empty banner line is left out: {text}");
        assert_eq!(lines[0]["message"], "greeting \"Ada\"");
        assert_eq!(lines[0]["function"], "hello");
        assert_eq!(lines[0]["invocationId"], "3bd3-56dc");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["partition"], "2 of 4");
        assert_eq!(lines[1]["message"], "lost a lease");
    }

    #[test]
    fn azure_levels_map() {
        assert_eq!(azure_level("Information"), Some("info"));
        assert_eq!(azure_level("None"), Some("off"));
        assert_eq!(azure_level("loud"), None);
    }
}
