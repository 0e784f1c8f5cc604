//! The node's logs: text for a terminal, or one JSON object per line for a log collector
//! (`--log-format`), filtered by `--log-level` in `RUST_LOG`'s syntax, with colour only when the
//! output is a terminal, and the node id on every JSON line so lines from many pods stay apart.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `node_id`, `target`, `fields` (the message
    /// and the event's fields) and the spans it happened in.
    Json,
}

/// The logging flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogOptions {
    /// Log line format: `text` or `json`.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to log, in `RUST_LOG` syntax (`info`, `warn,switchboard::http=debug`, …); default
    /// `RUST_LOG` if set, else `info`.
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// `--log-level` (or `RUST_LOG`) is not a valid filter.
    #[error(
        "--log-level {filter:?} is not a valid filter (RUST_LOG syntax, e.g. `info,switchboard::http=debug`)"
    )]
    Filter {
        /// The filter given.
        filter: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("logging was already set up: {0}")]
    Init(String),
}

impl LogOptions {
    /// The filter in force: `--log-level`, else `RUST_LOG`, else `info`.
    pub fn filter(&self) -> Result<EnvFilter, LogError> {
        let filter = self
            .log_level
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok().filter(|f| !f.trim().is_empty()))
            .unwrap_or_else(|| "info".to_owned());
        EnvFilter::try_new(&filter).map_err(|source| LogError::Filter { filter, source })
    }

    /// Installs the process's logger; `node_id` goes on every JSON line.
    pub fn init(&self, node_id: &str) -> Result<(), LogError> {
        let filter = self.filter()?;
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let installed = match self.log_format {
            LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).try_init(),
            LogFormat::Json => builder.json().event_format(WithNodeId::new(node_id)).try_init(),
        };
        installed.map_err(|e| LogError::Init(e.to_string()))
    }
}

/// tracing-subscriber's JSON format with `"node_id"` added first to every object.
struct WithNodeId {
    inner: Format<Json>,
    /// `{"node_id":"<id>",`, written in place of the object's opening brace.
    prefix: String,
}

impl WithNodeId {
    fn new(node_id: &str) -> Self {
        let id = serde_json::Value::from(node_id);
        let inner = Format::default().json().with_current_span(true).with_span_list(true);
        Self { inner, prefix: format!("{{\"node_id\":{id},") }
    }
}

impl<S, N> FormatEvent<S, N> for WithNodeId
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
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_str(&self.prefix)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_time_level_target_node_id_fields_and_spans() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .event_format(WithNodeId::new("pod-7"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("session", sid = "pod-7.abc");
            let _entered = span.enter();
            tracing::warn!(peer = "pod-2", "forwarding failed");
        });
        let text =
            String::from_utf8(out.0.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "one object per line: {text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        assert_eq!(line["node_id"], "pod-7", "{line}");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["fields"]["message"], "forwarding failed");
        assert_eq!(line["fields"]["peer"], "pod-2");
        assert_eq!(line["span"]["sid"], "pod-7.abc");
        assert_eq!(line["spans"][0]["name"], "session");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
    }

    #[test]
    fn the_level_is_checked_before_anything_starts() {
        let bad = LogOptions { log_format: LogFormat::Text, log_level: Some("info,=x=".into()) };
        assert!(matches!(bad.filter(), Err(LogError::Filter { .. })));
        let good = LogOptions {
            log_format: LogFormat::Json,
            log_level: Some("warn,switchboard::http=debug".into()),
        };
        assert!(good.filter().is_ok());
    }
}
