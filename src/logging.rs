//! Logs that fit both a person at a terminal and a log collector: everything goes to
//! stderr (stdout is the commands' own output: `check`'s verdict, the demo's guide);
//! ANSI colours only when stderr is a terminal; `log.format = "json"` writes one JSON
//! object per line with a flat `message`, the level and the event's fields beside it,
//! a field holding a list (`keys = ?vec`) as a real JSON array.
//!
//! `log.level` (and `GATEHOUSE_LOG`, which overrides it) is tracing's filter syntax:
//! a level, or `target=level` directives (`info,gatehouse=debug`). A word that is not
//! a level is refused by `config::check_log_filter` rather than read as a target name,
//! which would silently switch every other log line off.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{check_log_filter, LogConfig};

/// The environment variable that overrides `log.level`.
pub const ENV_FILTER: &str = "GATEHOUSE_LOG";

/// Installs the process's logger from the config (and `GATEHOUSE_LOG`), on stderr.
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var(ENV_FILTER)
        .ok()
        .filter(|v| check_log_filter(v).is_ok())
        .unwrap_or_else(|| cfg.level.clone());
    let ansi = std::io::stderr().is_terminal();
    let subscriber = subscriber(&filter, cfg.format == "json", ansi, std::io::stderr);
    // Only the binary calls this, once; a second logger (a test) keeps the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The subscriber `init` installs, writing to `writer`.
pub fn subscriber<W>(
    filter: &str,
    json: bool,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    if json {
        Box::new(builder.with_ansi(false).event_format(JsonLines).finish())
    } else {
        Box::new(builder.with_ansi(ansi).finish())
    }
}

/// One JSON object per event: `timestamp` (RFC 3339, UTC), `level`, `message`,
/// `target`, then the event's own fields.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut line = String::with_capacity(256);
        let put = |line: &mut String, key: &str, value: &Value| {
            line.push(if line.is_empty() { '{' } else { ',' });
            line.push_str(&Value::from(key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        };
        put(&mut line, "timestamp", &Value::from(now));
        put(&mut line, "level", &Value::from(meta.level().as_str()));
        put(
            &mut line,
            "message",
            &Value::from(fields.message.unwrap_or_default()),
        );
        put(&mut line, "target", &Value::from(meta.target()));
        for (key, value) in &fields.rest {
            if !matches!(*key, "timestamp" | "level" | "target") {
                put(&mut line, key, value);
            }
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
            return;
        }
        self.put(field, list_or_text(text));
    }
}

/// A list recorded with `?` (`["server", "store"]`: Rust's Debug of a list of strings
/// or numbers is JSON) as a JSON array; anything else as the text it is.
fn list_or_text(text: String) -> Value {
    if text.starts_with('[') && text.ends_with(']') {
        if let Ok(items) = serde_json::from_str::<Vec<Value>>(&text) {
            return Value::Array(items);
        }
    }
    Value::String(text)
}

/// A writer that keeps what is written, for tests that read the log.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    /// Each JSON line written so far.
    pub fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

/// The JSON log lines (every level) that `f` emits on this thread.
#[cfg(test)]
pub(crate) fn capture(f: impl FnOnce()) -> Vec<Value> {
    let out = Captured::default();
    tracing::subscriber::with_default(subscriber("trace", true, false, out.clone()), f);
    out.json_lines()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(json: bool, ansi: bool, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let sub = subscriber("info", json, ansi, out.clone());
        tracing::subscriber::with_default(sub, emit);
        out.text()
    }

    #[test]
    fn json_lines_have_a_flat_message_and_real_arrays() {
        let keys = vec!["server", "store"];
        let text = logged(true, false, || {
            tracing::warn!(keys = ?keys, port = 8080u64, ok = true, path = %"/etc/x", "needs a restart: {}", 2);
            tracing::debug!("filtered out");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["message"], "needs a restart: 2");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["keys"], serde_json::json!(["server", "store"]));
        assert_eq!(v["port"], 8080);
        assert_eq!(v["ok"], true);
        assert_eq!(v["path"], "/etc/x");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(v.get("fields").is_none(), "flat, not nested: {v}");
        assert!(!text.contains('\x1b'), "no ANSI codes in JSON: {text:?}");
    }

    #[test]
    fn text_lines_carry_ansi_codes_only_when_asked() {
        let plain = logged(false, false, || tracing::warn!(code = "X", "refused"));
        assert!(plain.contains("refused"), "{plain}");
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let coloured = logged(false, true, || tracing::warn!(code = "X", "refused"));
        assert!(coloured.contains('\x1b'), "{coloured:?}");
    }

    #[test]
    fn a_debug_field_that_is_not_a_list_stays_text() {
        assert_eq!(list_or_text("[not json".into()), Value::from("[not json"));
        assert_eq!(list_or_text("[a, b]".into()), Value::from("[a, b]"));
        assert_eq!(list_or_text("[1, 2]".into()), serde_json::json!([1, 2]));
        assert_eq!(list_or_text("Redis".into()), Value::from("Redis"));
    }
}
