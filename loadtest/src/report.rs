//! What a run produces: one JSON line on stdout (scenario, parameters, figures, failures, server pid,
//! time) and a table for people on stderr.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Named numbers in insertion order (a JSON object keeps that order too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named<T>(pub Vec<(&'static str, T)>);

impl<T: Copy> Named<T> {
    /// Appends one entry.
    pub fn push(&mut self, name: &'static str, value: T) {
        self.0.push((name, value));
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<T> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

impl Named<f64> {
    /// Appends a figure if it is known.
    pub fn push_some(&mut self, name: &'static str, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.0.push((name, v));
        }
    }
}

impl Serialize for Named<f64> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, &rounded(*value))?;
        }
        map.end()
    }
}

impl Serialize for Named<u64> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Figures to 4 decimals: enough for microseconds in milliseconds, short enough to read.
fn rounded(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from((v * 1e4).round() / 1e4)
    }
}

/// The result of one scenario run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Always `"run"` (compare summaries say `"compare"`).
    pub kind: &'static str,
    /// `connect`, `echo`, `fanout` or `polling`.
    pub scenario: &'static str,
    /// Which server, when `compare` ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'static str>,
    /// Which repeat, when `compare` ran it (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// Where the clients connected.
    pub url: String,
    /// The server process probed for CPU and memory.
    pub server_pid: Option<u32>,
    /// When the run ended (UTC, RFC 3339).
    pub timestamp: String,
    /// The scenario's parameters.
    pub params: serde_json::Value,
    /// Measurements.
    pub figures: Named<f64>,
    /// Failure counts, zero included.
    pub failures: Named<u64>,
    /// The first connection error seen, to explain the counts.
    pub first_error: Option<String>,
    /// False when a phase hit its time limit and the run was cut short.
    pub complete: bool,
}

impl Report {
    /// A report stamped now.
    pub fn new(
        scenario: &'static str,
        url: String,
        server_pid: Option<u32>,
        params: serde_json::Value,
    ) -> Self {
        Self {
            kind: "run",
            scenario,
            server: None,
            repeat: None,
            url,
            server_pid,
            timestamp: rfc3339_utc(SystemTime::now()),
            params,
            figures: Named::default(),
            failures: Named::default(),
            first_error: None,
            complete: true,
        }
    }

    /// Total failures of every kind.
    pub fn failure_total(&self) -> u64 {
        self.failures.0.iter().map(|&(_, n)| n).sum()
    }

    /// The JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"kind":"error","message":"{e}"}}"#))
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("scenario".to_owned(), self.scenario.to_owned()),
            ("target".to_owned(), self.url.clone()),
            ("server pid".to_owned(), self.server_pid.map_or_else(|| "-".into(), |p| p.to_string())),
        ];
        if let Some(server) = self.server {
            rows.push(("server".into(), format!("{server} (repeat {})", self.repeat.unwrap_or(1))));
        }
        rows.extend(self.figures.0.iter().map(|&(n, v)| (n.to_owned(), format_number(v))));
        rows.extend(self.failures.0.iter().map(|&(n, v)| (format!("FAIL {n}"), v.to_string())));
        if let Some(e) = &self.first_error {
            rows.push(("first error".into(), e.clone()));
        }
        if !self.complete {
            rows.push(("INCOMPLETE".into(), "a phase hit its time limit".into()));
        }
        render(&["", "value"], rows.into_iter().map(|(a, b)| vec![a, b]).collect())
    }
}

/// A number as a person reads it: integers plain, others to 3 decimals.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") }
}

/// Aligned columns: the first left-aligned, the others right-aligned.
pub fn render(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate().take(columns) {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// `2025-11-25T12:34:56Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_764_074_096)), "2025-11-25T12:34:56Z");
    }

    #[test]
    fn json_line_keeps_figure_order_and_rounds() {
        let mut r = Report::new(
            "echo",
            "ws://127.0.0.1:1/socket.io/".into(),
            Some(7),
            serde_json::json!({"rate": 10}),
        );
        r.figures.push("p50_ms", 0.123_456);
        r.figures.push("acked", 100.0);
        r.figures.push_some("rss_kib", None);
        r.failures.push("ack_timeouts", 2);
        let line = r.json_line();
        assert!(line.contains(r#""figures":{"p50_ms":0.1235,"acked":100}"#), "{line}");
        assert!(line.contains(r#""failures":{"ack_timeouts":2}"#), "{line}");
        assert!(line.contains(r#""server_pid":7"#), "{line}");
        assert_eq!(r.failure_total(), 2);
        assert!(r.table().contains("FAIL ack_timeouts"));
    }
}
