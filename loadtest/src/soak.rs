//! `soak`: starts a Switchboard node (`--app bench`, in-memory adapter) on a free loopback port, runs
//! the soak load ([`crate::scenario::soak`]) against it for an hour by default, and decides whether the
//! node's memory and open files stayed flat after the warm-up: the least-squares rise ([`crate::drift`])
//! of RSS and of the descriptor count over the samples after the warm-up must stay under the bounds
//! ([`RSS_BOUND_PCT`], [`FD_BOUND_PCT`] by default). It hands back every sample (a JSON line each), a
//! summary line, and an SVG chart over time ([`crate::timeline`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::ServerError;
use crate::chart::ChartError;
use crate::cluster::{free_port, node_spec};
use crate::drift::{Drift, drift};
use crate::procfs::Probe;
use crate::report::{Report, format_number, render, rfc3339_utc};
use crate::scenario::Context;
use crate::scenario::soak::{Idle, Sample, SoakLoad, SoakRun};
use crate::server_process::ServerProcess;
use crate::target::Target;
use crate::timeline::{self, Header, Line, Panel};

/// Default bound on the node's RSS rise after the warm-up, in per cent: allocator noise over an hour
/// stays well under it, a leak of one small allocation per connection (50 churned a second) does not.
pub const RSS_BOUND_PCT: f64 = 5.0;
/// Default bound on the rise of the node's open file descriptors after the warm-up, in per cent: one
/// leaked socket per thousand churned connections (180,000 an hour at 50/s) is far above it.
pub const FD_BOUND_PCT: f64 = 1.0;

/// What `soak` runs and where the node is.
#[derive(Debug, Clone, Serialize)]
pub struct SoakParams {
    /// The Switchboard binary (`cargo build --release -p switchboard`).
    pub switchboard_bin: PathBuf,
    /// Where the node's log goes.
    pub log_dir: PathBuf,
    /// The load.
    #[serde(flatten)]
    pub load: SoakLoad,
    /// Samples before this are the warm-up: left out of the verdict.
    #[serde(serialize_with = "crate::fleet::seconds")]
    pub warmup: Duration,
    /// Largest RSS rise after the warm-up, in %.
    pub rss_bound_pct: f64,
    /// Largest rise of open file descriptors after the warm-up, in %.
    pub fd_bound_pct: f64,
    /// Latency histogram shards.
    #[serde(skip)]
    pub shards: usize,
}

/// The soak's summary: figures and failures as every run reports them, plus the drift of each series
/// and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSummary {
    /// The run's report (`"kind": "soak"`).
    #[serde(flatten)]
    pub report: Report,
    /// Drift of the node's RSS in KiB.
    pub rss_kib: Option<Drift>,
    /// Drift of the node's open file descriptors.
    pub fds: Option<Drift>,
    /// Drift of the node's threads.
    pub threads: Option<Drift>,
    /// Drift of the node's `switchboard_sockets`.
    pub sockets: Option<Drift>,
    /// The node before the first client.
    pub idle_before: Idle,
    /// The node once every client had gone.
    pub idle_after: Idle,
    /// Whether RSS and descriptors stayed within their bounds.
    pub passed: bool,
    /// Why, one sentence per check.
    pub verdict: Vec<String>,
}

/// Starts the node, runs the soak, and returns its summary and samples; `on_sample` sees each sample
/// as it is taken.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    params: &SoakParams,
    on_sample: impl FnMut(&Sample),
) -> Result<(SoakSummary, Vec<Sample>), ServerError> {
    if !params.switchboard_bin.is_file() {
        return Err(ServerError::Missing {
            what: "the Switchboard binary",
            path: params.switchboard_bin.clone(),
            hint: "cargo build --release -p switchboard",
        });
    }
    std::fs::create_dir_all(&params.log_dir).map_err(|source| ServerError::Spawn { name: "soak", source })?;
    let port = free_port()?;
    let node = ServerProcess::start(
        &node_spec(&params.switchboard_bin, port),
        &params.log_dir.join("soak-node.log"),
        Duration::from_secs(30),
    )?;
    let ctx = Context {
        target: Arc::new(Target::new("127.0.0.1", port, "/socket.io/", false)?),
        probe: Probe::new(Some(node.pid())),
        shards: params.shards,
    };
    let run = runtime.block_on(crate::scenario::soak::run(&ctx, &params.load, on_sample))?;
    let summary = summarize(params, &ctx, &run);
    drop(node);
    Ok((summary, run.samples))
}

/// The drift of each series and the verdict.
fn summarize(params: &SoakParams, ctx: &Context, run: &SoakRun) -> SoakSummary {
    let warmup_s = params.warmup.as_secs_f64();
    let series = |value: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        run.samples.iter().filter_map(|s| Some((s.t_s, value(s)?))).collect()
    };
    let rss = drift(&series(&|s| s.rss_kib.map(|v| v as f64)), warmup_s);
    let fds = drift(&series(&|s| s.fds.map(|v| v as f64)), warmup_s);
    let threads = drift(&series(&|s| s.threads.map(|v| v as f64)), warmup_s);
    let sockets = drift(&series(&|s| s.sockets), warmup_s);
    let server_gone = run.samples.iter().any(|s| s.rss_kib.is_none());
    let (passed, verdict) = verdict(rss.as_ref(), fds.as_ref(), params, server_gone);

    let params_json = serde_json::to_value(params).unwrap_or_default();
    let mut report = Report::new("soak", ctx.target.url(), ctx.probe.pid(), params_json);
    report.kind = "soak";
    report.timestamp = rfc3339_utc(SystemTime::now());
    let f = &mut report.figures;
    f.push("load_s", run.load_s);
    f.push("samples", run.samples.len() as f64);
    f.push("base_ready", run.base_ready as f64);
    f.push("churn_opened", run.churn_opened as f64);
    f.push("churn_clean_disconnects", run.churn_clean as f64);
    f.push("churn_dropped", run.churn_dropped as f64);
    f.push("published", run.published as f64);
    f.push("publish_acked", run.acked as f64);
    f.push("publish_ack_timeouts", run.ack_timeouts as f64);
    f.push("base_expected_deliveries", run.base_expected as f64);
    f.push("base_deliveries", run.base_deliveries as f64);
    f.push("churn_deliveries", run.churn_deliveries as f64);
    f.push("idle_wait_s", run.idle_wait_s);
    f.push("latency_p50_ms", run.latency.p50_ms);
    f.push("latency_p99_ms", run.latency.p99_ms);
    f.push("latency_max_ms", run.latency.max_ms);
    f.push_some("server_cpu_s", run.server_cpu_s);
    f.push_some(
        "server_cpu_pct",
        run.server_cpu_s.filter(|_| run.load_s > 0.0).map(|c| c / run.load_s * 100.0),
    );
    report.failures.0 = run.failures.clone();
    report.first_error = run.first_error.clone();
    SoakSummary {
        report,
        rss_kib: rss,
        fds,
        threads,
        sockets,
        idle_before: run.idle[0],
        idle_after: run.idle[1],
        passed,
        verdict,
    }
}

/// Whether RSS and descriptors stayed within their bounds, and a sentence per check.
fn verdict(
    rss: Option<&Drift>,
    fds: Option<&Drift>,
    params: &SoakParams,
    server_gone: bool,
) -> (bool, Vec<String>) {
    let mut passed = !server_gone;
    let mut lines = Vec::new();
    if server_gone {
        lines.push("the node's /proc entry went away during the run".to_owned());
    }
    for (name, drift, bound) in [("RSS", rss, params.rss_bound_pct), ("open fds", fds, params.fd_bound_pct)] {
        match drift {
            Some(d) => {
                let ok = d.within(bound);
                passed &= ok;
                lines.push(format!(
                    "{name}: fitted rise {:+.2} % after the warm-up ({} samples), bound {bound} %: {}",
                    d.growth_pct,
                    d.samples,
                    if ok { "ok" } else { "EXCEEDED" }
                ));
            }
            None => {
                passed = false;
                lines.push(format!("{name}: fewer than 2 samples after the warm-up, no verdict"));
            }
        }
    }
    (passed, lines)
}

impl SoakSummary {
    /// The JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"kind":"error","message":"{e}"}}"#))
    }

    /// The table for people: the drift of each series, then the run's figures and failures.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), format_number);
        for (name, d, idle) in [
            (
                "RSS KiB",
                &self.rss_kib,
                [self.idle_before.rss_kib, self.idle_after.rss_kib].map(|v| v.map(|v| v as f64)),
            ),
            ("open fds", &self.fds, [self.idle_before.fds, self.idle_after.fds].map(|v| v.map(|v| v as f64))),
            (
                "threads",
                &self.threads,
                [self.idle_before.threads, self.idle_after.threads].map(|v| v.map(|v| v as f64)),
            ),
            ("sockets", &self.sockets, [self.idle_before.sockets, self.idle_after.sockets]),
        ] {
            rows.push(vec![
                name.to_owned(),
                cell(idle[0]),
                cell(d.map(|d| d.at_warmup)),
                cell(d.map(|d| d.at_end)),
                cell(d.map(|d| d.max)),
                cell(d.map(|d| d.slope_per_10min)),
                cell(d.map(|d| d.growth_pct)),
                cell(idle[1]),
            ]);
        }
        let mut out = render(
            &["", "idle before", "warm-up end", "end", "max", "slope /10 min", "rise %", "idle after"],
            rows,
        );
        out.push_str(&self.report.table());
        for line in &self.verdict {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(if self.passed { "soak: PASSED\n" } else { "soak: FAILED\n" });
        out
    }

    /// The chart over time of this summary and its samples (see [`chart`]).
    pub fn chart(&self, samples: &[Sample]) -> Result<String, ChartError> {
        let mut lines: Vec<Value> = samples.iter().filter_map(|s| serde_json::to_value(s).ok()).collect();
        lines.extend(serde_json::to_value(self).ok());
        chart(&lines)
    }
}

/// Draws the chart over time (RSS; open fds and sockets; CPU of the node and of the generator) from the
/// JSON lines a soak wrote (its samples and its summary), so a saved run can be drawn again.
pub fn chart(lines: &[Value]) -> Result<String, ChartError> {
    let kind = |l: &&Value| l.get("kind").and_then(Value::as_str) == Some("soak_sample");
    let samples: Vec<&Value> = lines.iter().filter(kind).collect();
    let Some(summary) = lines.iter().rev().find(|l| l.get("kind").and_then(Value::as_str) == Some("soak"))
    else {
        return Err(ChartError::NoData("no soak summary line".into()));
    };
    let series = |key: &str, scale: f64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter_map(|l| Some((l.get("t_s")?.as_f64()?, l.get(key)?.as_f64()? * scale)))
            .collect()
    };
    let line = |label: &str, points| Line { label: label.to_owned(), points };
    let param = |key: &str| summary.pointer(&format!("/params/{key}")).and_then(Value::as_f64);
    let words = |key: &str| param(key).map_or_else(|| "?".to_owned(), |v| format!("{v}"));
    let passed = summary.get("passed").and_then(Value::as_bool) == Some(true);
    let rise = |series: &str, bound: &str| match summary
        .pointer(&format!("/{series}/growth_pct"))
        .and_then(Value::as_f64)
    {
        Some(g) => format!("{g:+.2} % (bound {} %)", words(bound)),
        None => "no verdict".to_owned(),
    };
    let interval = match samples.as_slice() {
        [a, b, ..] => {
            b.get("t_s").and_then(Value::as_f64).zip(a.get("t_s").and_then(Value::as_f64)).map(|(b, a)| b - a)
        }
        _ => None,
    };
    let minutes = summary.pointer("/figures/load_s").and_then(Value::as_f64).unwrap_or(0.0) / 60.0;
    let header = Header {
        title: format!("soak: one Switchboard node, {} min of churn and fan-out", minutes.round()),
        subtitle: format!(
            "{} persistent clients in {} rooms · {}/s churning · {}/s broadcasts, 1 in {} to all",
            words("base"),
            words("rooms"),
            words("churn_rate"),
            words("broadcast_rate"),
            words("all_every")
        ),
        status: format!(
            "{} · rise after the warm-up: RSS {}, open fds {}",
            if passed { "passed" } else { "FAILED" },
            rise("rss_kib", "rss_bound_pct"),
            rise("fds", "fd_bound_pct")
        ),
        failed: !passed,
        warmup_s: param("warmup").unwrap_or(0.0),
    };
    let panels = [
        Panel {
            title: "server RSS".into(),
            unit: "MiB".into(),
            lines: vec![line("RSS", series("rss_kib", 1.0 / 1024.0))],
        },
        Panel {
            title: "server open file descriptors and Socket.IO sockets".into(),
            unit: "count".into(),
            lines: vec![line("open fds", series("fds", 1.0)), line("sockets", series("sockets", 1.0))],
        },
        Panel {
            title: format!(
                "CPU (mean over each {} s between samples)",
                interval.map_or("-".into(), |i| format!("{i:.0}"))
            ),
            unit: "% of one core".into(),
            lines: vec![
                line("server", series("server_cpu_pct", 1.0)),
                line("load generator", series("client_cpu_pct", 1.0)),
            ],
        },
    ];
    timeline::render(&header, &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SoakParams {
        SoakParams {
            switchboard_bin: PathBuf::new(),
            log_dir: PathBuf::new(),
            load: SoakLoad::default(),
            warmup: Duration::from_secs(300),
            rss_bound_pct: RSS_BOUND_PCT,
            fd_bound_pct: FD_BOUND_PCT,
            shards: 1,
        }
    }

    fn with_growth(growth_pct: f64) -> Drift {
        Drift {
            at_warmup: 100.0,
            at_end: 100.0 + growth_pct,
            max: 100.0 + growth_pct,
            max_after_warmup: 100.0 + growth_pct,
            slope_per_10min: growth_pct / 5.5,
            growth_pct,
            samples: 331,
        }
    }

    #[test]
    fn passes_only_when_both_series_stay_within_their_bounds() {
        let p = params();
        let (passed, lines) = verdict(Some(&with_growth(4.9)), Some(&with_growth(0.5)), &p, false);
        assert!(passed, "{lines:?}");
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("RSS: fitted rise +4.90 %") && lines[0].ends_with("ok"), "{lines:?}");

        let (passed, lines) = verdict(Some(&with_growth(5.1)), Some(&with_growth(0.0)), &p, false);
        assert!(!passed && lines[0].ends_with("EXCEEDED"), "{lines:?}");
        let (passed, lines) = verdict(Some(&with_growth(0.0)), Some(&with_growth(1.2)), &p, false);
        assert!(!passed && lines[1].ends_with("EXCEEDED"), "{lines:?}");
    }

    #[test]
    fn no_samples_after_the_warm_up_or_a_vanished_node_fail() {
        let p = params();
        let (passed, lines) = verdict(None, Some(&with_growth(0.0)), &p, false);
        assert!(!passed && lines[0].contains("no verdict"), "{lines:?}");
        let (passed, lines) = verdict(Some(&with_growth(0.0)), Some(&with_growth(0.0)), &p, true);
        assert!(!passed && lines[0].contains("went away"), "{lines:?}");
    }

    #[test]
    fn charts_a_saved_run_from_its_lines() -> Result<(), ChartError> {
        let sample = |t: f64| {
            serde_json::json!({"kind": "soak_sample", "t_s": t, "rss_kib": 40_960, "fds": 2_100,
                "sockets": 2_300.0, "server_cpu_pct": 12.5, "client_cpu_pct": 8.0})
        };
        let mut lines: Vec<Value> = (0..=30).map(|i| sample(f64::from(i) * 10.0)).collect();
        lines.push(serde_json::json!({"kind": "soak", "passed": true,
            "params": {"base": 2000, "rooms": 20, "churn_rate": 50.0, "broadcast_rate": 20.0, "all_every": 4,
                "warmup": 60.0, "rss_bound_pct": 5.0, "fd_bound_pct": 1.0},
            "figures": {"load_s": 300.0}, "rss_kib": {"growth_pct": 0.42}, "fds": {"growth_pct": -0.01}}));
        let svg = chart(&lines)?;
        for text in [
            "5 min of churn",
            "passed",
            "RSS +0.42 % (bound 5 %)",
            "open fds -0.01 % (bound 1 %)",
            "mean over each 10 s",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(matches!(chart(&lines[..3]), Err(ChartError::NoData(_))));
        Ok(())
    }
}
