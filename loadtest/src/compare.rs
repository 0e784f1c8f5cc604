//! `compare`: starts Switchboard (`--app bench`) and the Node reference itself, runs the chosen scenarios
//! against each — a fresh server per run, the order alternating between repeats so drift on a shared
//! machine hits both alike — and reports the medians and the Switchboard/Node ratios.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::procfs::Probe;
use crate::report::{Named, Report, format_number, render, rfc3339_utc};
use crate::scenario::connect::ConnectParams;
use crate::scenario::echo::EchoParams;
use crate::scenario::fanout::FanoutParams;
use crate::scenario::{Context, connect, echo, fanout, polling};
use crate::server_process::{ServerProcess, ServerSpec};
use crate::target::Target;
use crate::{ServerError, SetupError};

/// A scenario `compare` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Open and hold connections.
    Connect,
    /// Acked echo at a fixed rate.
    Echo,
    /// Room broadcast to many receivers.
    Fanout,
    /// Acked echo at a fixed rate, on long-polling clients.
    Polling,
}

impl Scenario {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Echo => "echo",
            Self::Fanout => "fanout",
            Self::Polling => "polling",
        }
    }
}

/// What `compare` runs and where the servers are.
#[derive(Debug, Clone)]
pub struct CompareParams {
    /// The Switchboard binary (`cargo build --release -p switchboard`).
    pub switchboard_bin: PathBuf,
    /// The Node reference server script.
    pub node_script: PathBuf,
    /// The Node executable.
    pub node_bin: PathBuf,
    /// Switchboard's port, then Node's.
    pub ports: [u16; 2],
    /// Runs per scenario and server.
    pub repeats: u32,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Parameters of `connect`.
    pub connect: ConnectParams,
    /// Parameters of `echo`.
    pub echo: EchoParams,
    /// Parameters of `fanout`.
    pub fanout: FanoutParams,
    /// Parameters of `polling`.
    pub polling: EchoParams,
    /// Where server logs go.
    pub log_dir: PathBuf,
    /// Latency histogram shards.
    pub shards: usize,
}

/// The medians of one scenario on both servers.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Always `"compare"`.
    pub kind: &'static str,
    /// The scenario.
    pub scenario: &'static str,
    /// Runs per server.
    pub repeats: u32,
    /// When the comparison ended (UTC).
    pub timestamp: String,
    /// Median of each figure on Switchboard.
    pub switchboard: Named<f64>,
    /// Median of each figure on Node.
    pub node: Named<f64>,
    /// Switchboard / Node for each figure.
    pub ratio: Named<f64>,
    /// Failures summed over the runs, per server.
    pub failures: ServerPair<Named<u64>>,
    /// Runs cut short by a time limit, per server.
    pub incomplete_runs: ServerPair<u32>,
}

/// One value per server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerPair<T> {
    /// Switchboard's.
    pub switchboard: T,
    /// Node's.
    pub node: T,
}

const SERVERS: [&str; 2] = ["switchboard", "node"];

/// Runs the comparison; `on_run` sees each run's report as it ends.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    params: &CompareParams,
    mut on_run: impl FnMut(&Report),
) -> Result<Vec<Comparison>, ServerError> {
    let specs = server_specs(params)?;
    std::fs::create_dir_all(&params.log_dir)
        .map_err(|source| ServerError::Spawn { name: "compare", source })?;
    let mut comparisons = Vec::new();
    for &scenario in &params.scenarios {
        let mut runs: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
        for repeat in 1..=params.repeats {
            // Alternate who goes first, so a trend in the machine's load hits both alike.
            let order = if repeat % 2 == 1 { [0, 1] } else { [1, 0] };
            for server in order {
                let spec = &specs[server];
                let log = params.log_dir.join(format!("{}-{}-{repeat}.log", spec.name, scenario.name()));
                let process = ServerProcess::start(spec, &log, Duration::from_secs(30))?;
                let ctx = Context {
                    target: Arc::new(Target::new("127.0.0.1", params.ports[server], "/socket.io/", false)?),
                    probe: Probe::new(Some(process.pid())),
                    shards: params.shards,
                };
                let mut report = runtime.block_on(run_scenario(&ctx, scenario, params))?;
                drop(process);
                report.server = Some(SERVERS[server]);
                report.repeat = Some(repeat);
                on_run(&report);
                runs[server].push(report);
                // Let the kernel finish closing the last run's sockets.
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        comparisons.push(summarize(scenario, params.repeats, &runs));
    }
    Ok(comparisons)
}

async fn run_scenario(
    ctx: &Context,
    scenario: Scenario,
    params: &CompareParams,
) -> Result<Report, SetupError> {
    match scenario {
        Scenario::Connect => connect::run(ctx, &params.connect).await,
        Scenario::Echo => echo::run(ctx, &params.echo).await,
        Scenario::Fanout => fanout::run(ctx, &params.fanout).await,
        Scenario::Polling => polling::run(ctx, &params.polling).await,
    }
}

fn server_specs(params: &CompareParams) -> Result<[ServerSpec; 2], ServerError> {
    if !params.switchboard_bin.is_file() {
        return Err(ServerError::Missing {
            what: "the Switchboard binary",
            path: params.switchboard_bin.clone(),
            hint: "cargo build --release -p switchboard",
        });
    }
    if !params.node_script.is_file() {
        return Err(ServerError::Missing {
            what: "the Node reference server",
            path: params.node_script.clone(),
            hint: "loadtest/reference/node/ must exist; it is maintained separately",
        });
    }
    let node_dir = params.node_script.parent().map(PathBuf::from).unwrap_or_default();
    if !node_dir.join("node_modules").is_dir() {
        return Err(ServerError::Missing {
            what: "the Node reference's node_modules",
            path: node_dir.join("node_modules"),
            hint: "run `npm ci` in that folder",
        });
    }
    let [sb_port, node_port] = params.ports;
    Ok([
        ServerSpec {
            name: "switchboard",
            program: params.switchboard_bin.clone(),
            args: ["--app", "bench", "--host", "127.0.0.1", "--port", &sb_port.to_string()]
                .map(String::from)
                .to_vec(),
            env: vec![("NO_COLOR".into(), "1".into())],
            ready_line: "switchboard listening",
        },
        ServerSpec {
            name: "node",
            program: params.node_bin.clone(),
            args: vec![params.node_script.display().to_string()],
            env: vec![("PORT".into(), node_port.to_string()), ("HOST".into(), "127.0.0.1".into())],
            ready_line: "listening on http://",
        },
    ])
}

/// Medians per server and their ratio, for every figure both servers reported.
fn summarize(scenario: Scenario, repeats: u32, runs: &[Vec<Report>; 2]) -> Comparison {
    let names: Vec<&'static str> =
        runs[0].first().map(|r| r.figures.0.iter().map(|&(n, _)| n).collect()).unwrap_or_default();
    let medians = |reports: &[Report]| {
        let mut out = Named::default();
        for &name in &names {
            let values: Vec<f64> = reports.iter().filter_map(|r| r.figures.get(name)).collect();
            if let Some(m) = median(&values) {
                out.push(name, m);
            }
        }
        out
    };
    let (switchboard, node) = (medians(&runs[0]), medians(&runs[1]));
    let mut ratio = Named::default();
    for &(name, s) in &switchboard.0 {
        if let Some(n) = node.get(name).filter(|n| *n != 0.0) {
            ratio.push(name, s / n);
        }
    }
    let failures = |reports: &[Report]| {
        let mut sum: Named<u64> = Named::default();
        for report in reports {
            for &(name, count) in &report.failures.0 {
                match sum.0.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, total)) => *total += count,
                    None => sum.push(name, count),
                }
            }
        }
        sum
    };
    let incomplete = |reports: &[Report]| reports.iter().filter(|r| !r.complete).count() as u32;
    Comparison {
        kind: "compare",
        scenario: scenario.name(),
        repeats,
        timestamp: rfc3339_utc(std::time::SystemTime::now()),
        switchboard,
        node,
        ratio,
        failures: ServerPair { switchboard: failures(&runs[0]), node: failures(&runs[1]) },
        incomplete_runs: ServerPair { switchboard: incomplete(&runs[0]), node: incomplete(&runs[1]) },
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

impl Comparison {
    /// The JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"kind":"error","message":"{e}"}}"#))
    }

    /// The table for people: medians and ratio per figure, then summed failures.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .switchboard
            .0
            .iter()
            .map(|&(name, s)| {
                let node = self.node.get(name).map_or_else(|| "-".into(), format_number);
                let ratio = self.ratio.get(name).map_or_else(|| "-".into(), |r| format!("{r:.2}"));
                vec![name.to_owned(), format_number(s), node, ratio]
            })
            .collect();
        for &(name, s) in &self.failures.switchboard.0 {
            let node = self.failures.node.get(name).unwrap_or(0);
            if s > 0 || node > 0 {
                rows.push(vec![format!("FAIL {name}"), s.to_string(), node.to_string(), String::new()]);
            }
        }
        let title = format!("{} — medians of {} runs each", self.scenario, self.repeats);
        let header = [title.as_str(), "switchboard", "node", "sb/node"];
        render(&header, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn summary_takes_medians_ratios_and_sums_failures() {
        let report = |p50: f64, lost: u64| {
            let mut r = Report::new("fanout", String::new(), None, serde_json::Value::Null);
            r.figures.push("latency_p50_ms", p50);
            r.failures.push("lost_deliveries", lost);
            r
        };
        let runs = [
            vec![report(1.0, 0), report(3.0, 1), report(2.0, 0)],
            vec![report(4.0, 0), report(4.0, 0), report(8.0, 2)],
        ];
        let c = summarize(Scenario::Fanout, 3, &runs);
        assert_eq!(c.switchboard.get("latency_p50_ms"), Some(2.0));
        assert_eq!(c.node.get("latency_p50_ms"), Some(4.0));
        assert_eq!(c.ratio.get("latency_p50_ms"), Some(0.5));
        assert_eq!(c.failures.switchboard.get("lost_deliveries"), Some(1));
        assert_eq!(c.failures.node.get("lost_deliveries"), Some(2));
        assert!(c.table().contains("FAIL lost_deliveries"));
        assert!(c.json_line().starts_with(r#"{"kind":"compare","scenario":"fanout""#));
    }
}
