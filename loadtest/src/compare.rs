//! `compare`: starts Switchboard (`--app bench`), the Node reference and (unless told not to) the
//! socketioxide reference itself, runs the chosen scenarios against each — a fresh server per run,
//! the order rotating between repeats so drift on a shared machine hits all alike — and reports the
//! medians and the ratios of Switchboard to each reference.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::conn::Conn;
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
    /// Acked echo, one request in flight per connection (closed loop).
    #[value(name = "echo-closed")]
    #[serde(rename = "echo-closed")]
    EchoClosed,
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
            Self::EchoClosed => "echo-closed",
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
    /// The socketioxide reference's manifest (its own Cargo workspace, built here on demand), or
    /// `None` to compare with Node only.
    pub socketioxide_manifest: Option<PathBuf>,
    /// Where its build goes (`--target-dir`; the binary is `release/reference-socketioxide` in it).
    pub socketioxide_target_dir: PathBuf,
    /// Switchboard's port, then Node's, then socketioxide's.
    pub ports: [u16; 3],
    /// Runs per scenario and server.
    pub repeats: u32,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Parameters of `connect`.
    pub connect: ConnectParams,
    /// Parameters of `echo`.
    pub echo: EchoParams,
    /// Parameters of `echo-closed` (`closed_loop` set).
    pub echo_closed: EchoParams,
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
    /// Median of each figure on socketioxide, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socketioxide: Option<Named<f64>>,
    /// Switchboard / socketioxide for each figure, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_socketioxide: Option<Named<f64>>,
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
    /// socketioxide's, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socketioxide: Option<T>,
}

const SERVERS: [&str; 3] = ["switchboard", "node", "socketioxide"];

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
        let mut runs: [Vec<Report>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for repeat in 1..=params.repeats {
            // Rotate who goes first, so a trend in the machine's load hits all alike.
            let mut order: Vec<usize> = (0..specs.len()).collect();
            order.rotate_left((repeat as usize - 1) % specs.len());
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
        Scenario::EchoClosed => echo::run_over::<Conn>(ctx, &params.echo_closed, "echo-closed").await,
        Scenario::Fanout => fanout::run(ctx, &params.fanout).await,
        Scenario::Polling => polling::run(ctx, &params.polling).await,
    }
}

/// Builds the socketioxide reference (a no-op when it is up to date); returns its binary.
fn build_socketioxide(manifest: &Path, target_dir: &Path) -> Result<PathBuf, ServerError> {
    if !manifest.is_file() {
        return Err(ServerError::Missing {
            what: "the socketioxide reference",
            path: manifest.to_owned(),
            hint: "loadtest/reference/socketioxide/ must exist, or pass --no-socketioxide",
        });
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|source| ServerError::Spawn { name: "cargo build (socketioxide reference)", source })?;
    if !status.success() {
        return Err(ServerError::Build {
            what: "the socketioxide reference",
            command: format!(
                "cargo build --release --locked --manifest-path {} --target-dir {}",
                manifest.display(),
                target_dir.display()
            ),
            status: status.to_string(),
        });
    }
    Ok(target_dir.join("release").join("reference-socketioxide"))
}

fn server_specs(params: &CompareParams) -> Result<Vec<ServerSpec>, ServerError> {
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
    let [sb_port, node_port, sioxide_port] = params.ports;
    let mut specs = vec![
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
    ];
    if let Some(manifest) = &params.socketioxide_manifest {
        specs.push(ServerSpec {
            name: "socketioxide",
            program: build_socketioxide(manifest, &params.socketioxide_target_dir)?,
            args: Vec::new(),
            env: vec![("PORT".into(), sioxide_port.to_string()), ("HOST".into(), "127.0.0.1".into())],
            ready_line: "listening on http://",
        });
    }
    Ok(specs)
}

/// Medians per server and their ratios, for every figure Switchboard and the other server reported.
fn summarize(scenario: Scenario, repeats: u32, runs: &[Vec<Report>; 3]) -> Comparison {
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
    let ratio_to = |other: &Named<f64>| {
        let mut ratio = Named::default();
        for &(name, s) in &switchboard.0 {
            if let Some(o) = other.get(name).filter(|o| *o != 0.0) {
                ratio.push(name, s / o);
            }
        }
        ratio
    };
    let ran = |server: usize| !runs[server].is_empty();
    let socketioxide = ran(2).then(|| medians(&runs[2]));
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
        ratio: ratio_to(&node),
        ratio_socketioxide: socketioxide.as_ref().map(ratio_to),
        socketioxide,
        switchboard,
        node,
        failures: ServerPair {
            switchboard: failures(&runs[0]),
            node: failures(&runs[1]),
            socketioxide: ran(2).then(|| failures(&runs[2])),
        },
        incomplete_runs: ServerPair {
            switchboard: incomplete(&runs[0]),
            node: incomplete(&runs[1]),
            socketioxide: ran(2).then(|| incomplete(&runs[2])),
        },
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

    /// The table for people: medians and ratios per figure, then summed failures.
    pub fn table(&self) -> String {
        let sioxide = self.socketioxide.as_ref();
        let cell = |named: Option<&Named<f64>>, name: &str, ratio: bool| match named.and_then(|n| n.get(name))
        {
            Some(r) if ratio => format!("{r:.2}"),
            Some(v) => format_number(v),
            None => "-".into(),
        };
        let mut rows: Vec<Vec<String>> = self
            .switchboard
            .0
            .iter()
            .map(|&(name, s)| {
                let mut row = vec![
                    name.to_owned(),
                    format_number(s),
                    cell(Some(&self.node), name, false),
                    cell(Some(&self.ratio), name, true),
                ];
                if sioxide.is_some() {
                    row.push(cell(sioxide, name, false));
                    row.push(cell(self.ratio_socketioxide.as_ref(), name, true));
                }
                row
            })
            .collect();
        for &(name, s) in &self.failures.switchboard.0 {
            let node = self.failures.node.get(name).unwrap_or(0);
            let other = self.failures.socketioxide.as_ref().and_then(|f| f.get(name));
            if s > 0 || node > 0 || other.unwrap_or(0) > 0 {
                let mut row = vec![format!("FAIL {name}"), s.to_string(), node.to_string(), String::new()];
                if sioxide.is_some() {
                    row.extend([other.unwrap_or(0).to_string(), String::new()]);
                }
                rows.push(row);
            }
        }
        let title = format!("{} — medians of {} runs each", self.scenario, self.repeats);
        let mut header = vec![title.as_str(), "switchboard", "node", "sb/node"];
        if sioxide.is_some() {
            header.extend(["socketioxide", "sb/sioxide"]);
        }
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
            vec![report(1.0, 0), report(1.0, 0), report(1.0, 3)],
        ];
        let c = summarize(Scenario::Fanout, 3, &runs);
        assert_eq!(c.switchboard.get("latency_p50_ms"), Some(2.0));
        assert_eq!(c.node.get("latency_p50_ms"), Some(4.0));
        assert_eq!(c.ratio.get("latency_p50_ms"), Some(0.5));
        assert_eq!(c.failures.switchboard.get("lost_deliveries"), Some(1));
        assert_eq!(c.failures.node.get("lost_deliveries"), Some(2));
        assert_eq!(c.ratio_socketioxide.as_ref().and_then(|r| r.get("latency_p50_ms")), Some(2.0));
        assert_eq!(c.failures.socketioxide.as_ref().and_then(|f| f.get("lost_deliveries")), Some(3));
        assert!(c.table().contains("FAIL lost_deliveries"));
        assert!(c.table().contains("sb/sioxide"));
        assert!(c.json_line().starts_with(r#"{"kind":"compare","scenario":"fanout""#));
    }
}
