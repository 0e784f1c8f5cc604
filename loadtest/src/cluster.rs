//! `cluster`: the fan-out of [`crate::scenario::fanout`] with its receivers dealt over N Switchboard nodes
//! joined through a broker (`redis-server` or `nats-server`, started here on a free port), then the same
//! fan-out on one node with the in-memory adapter. It reports both runs, the CPU per delivery summed over
//! every node and the broker against the single node's, and the latency of same-node receivers (on the
//! publisher's node) against cross-node ones.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::procfs::Probe;
use crate::report::{Named, Report, format_number, render, rfc3339_utc};
use crate::scenario::fanout::{FanoutParams, GroupResult, Spread, SpreadRun, run_spread};
use crate::server_process::{ServerProcess, ServerSpec};
use crate::target::Target;
use crate::{ServerError, SetupError};

/// Issue 5's goal: CPU per delivery of the cluster at most this many times the single node's.
pub const CPU_RATIO_GOAL: f64 = 1.15;
/// Issue 5's goal: cross-node p99 at most this many ms above the same-node p99.
pub const P99_GAP_GOAL_MS: f64 = 5.0;

/// The broker that joins the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adapter {
    /// `redis-server`, nodes started with `--adapter redis`.
    Redis,
    /// `nats-server`, nodes started with `--adapter nats`.
    Nats,
}

impl Adapter {
    /// The name in reports and in `--adapter`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Nats => "nats",
        }
    }

    /// The broker's executable name.
    fn program(self) -> &'static str {
        match self {
            Self::Redis => "redis-server",
            Self::Nats => "nats-server",
        }
    }

    /// How to install the broker on Debian, for the error when it is missing.
    fn install_hint(self) -> &'static str {
        match self {
            Self::Redis => "sudo apt-get install -y redis-server",
            Self::Nats => "sudo apt-get install -y nats-server",
        }
    }

    /// How to run the broker on `port`, and the line it prints once it accepts clients.
    fn broker_spec(self, program: PathBuf, port: u16) -> ServerSpec {
        let (args, ready_line): (Vec<String>, _) = match self {
            Self::Redis => (
                ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                    .map(String::from)
                    .to_vec(),
                "Ready to accept connections",
            ),
            Self::Nats => {
                (["-p", &port.to_string(), "-a", "127.0.0.1"].map(String::from).to_vec(), "Server is ready")
            }
        };
        ServerSpec { name: self.program(), program, args, env: Vec::new(), ready_line }
    }

    /// The node options that join this broker.
    fn node_args(self, broker_port: u16) -> [String; 4] {
        match self {
            Self::Redis => [
                "--adapter".into(),
                "redis".into(),
                "--redis-url".into(),
                format!("redis://127.0.0.1:{broker_port}"),
            ],
            Self::Nats => [
                "--adapter".into(),
                "nats".into(),
                "--nats-url".into(),
                format!("nats://127.0.0.1:{broker_port}"),
            ],
        }
    }
}

/// What `cluster` runs and where the binaries are.
#[derive(Debug, Clone)]
pub struct ClusterParams {
    /// The broker.
    pub adapter: Adapter,
    /// Switchboard nodes in the cluster (at least 2).
    pub nodes: usize,
    /// The Switchboard binary (`cargo build --release -p switchboard`).
    pub switchboard_bin: PathBuf,
    /// The broker binary (default: looked up in `PATH`, `/usr/sbin`, `/usr/local/sbin`).
    pub broker_bin: Option<PathBuf>,
    /// The fan-out; `open.connections` is the number of receivers over all nodes.
    pub fanout: FanoutParams,
    /// Pause after the joins, before the first broadcast (room subscriptions are made in the background).
    pub settle: Duration,
    /// Where the process logs go.
    pub log_dir: PathBuf,
    /// Latency histogram shards.
    pub shards: usize,
}

/// The two runs side by side, with the goals of issue 5.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// Always `"cluster"`.
    pub kind: &'static str,
    /// `redis` or `nats`.
    pub adapter: &'static str,
    /// Nodes in the cluster run.
    pub nodes: usize,
    /// When the comparison ended (UTC).
    pub timestamp: String,
    /// Key figures of the cluster run.
    pub cluster: Named<f64>,
    /// The same figures of the single node.
    pub single: Named<f64>,
    /// CPU per delivery, cluster (nodes + broker) / single node.
    pub cpu_ratio: Option<f64>,
    /// The goal for `cpu_ratio` (at most).
    pub cpu_ratio_goal: f64,
    /// Cross-node p99 − same-node p99, in the cluster run (ms).
    pub cross_minus_same_p99_ms: Option<f64>,
    /// The goal for `cross_minus_same_p99_ms` (at most).
    pub p99_gap_goal_ms: f64,
    /// Failures of each run.
    pub failures: RunPair<Named<u64>>,
    /// Both runs complete, with no failure of any kind.
    pub clean: bool,
    /// `clean`, and both goals met.
    pub goals_met: bool,
}

/// One value per run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunPair<T> {
    /// The cluster run's.
    pub cluster: T,
    /// The single node's.
    pub single: T,
}

/// Figures the summary puts side by side, in order.
const KEY_FIGURES: [&str; 16] = [
    "receivers",
    "deliveries",
    "deliveries_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p999_ms",
    "same_node_latency_p50_ms",
    "same_node_latency_p99_ms",
    "same_node_latency_p999_ms",
    "cross_node_latency_p50_ms",
    "cross_node_latency_p99_ms",
    "cross_node_latency_p999_ms",
    "nodes_cpu_s",
    "broker_cpu_s",
    "server_cpu_s",
    "server_cpu_s_per_million_deliveries",
];

/// Runs the cluster fan-out, then the single-node one; `on_run` sees each run's report as it ends.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    params: &ClusterParams,
    mut on_run: impl FnMut(&Report),
) -> Result<ClusterSummary, ServerError> {
    if params.nodes < 2 {
        return Err(SetupError::Param("--nodes must be at least 2".into()).into());
    }
    if !params.switchboard_bin.is_file() {
        return Err(ServerError::Missing {
            what: "the Switchboard binary",
            path: params.switchboard_bin.clone(),
            hint: "cargo build --release -p switchboard",
        });
    }
    let broker_bin = find_broker(params)?;
    std::fs::create_dir_all(&params.log_dir)
        .map_err(|source| ServerError::Spawn { name: "cluster", source })?;
    let adapter = params.adapter;

    // The cluster: broker first, then the nodes.
    let broker_port = free_port()?;
    let broker = ServerProcess::start(
        &adapter.broker_spec(broker_bin, broker_port),
        &params.log_dir.join(format!("cluster-{}.log", adapter.program())),
        Duration::from_secs(30),
    )?;
    let mut nodes = Vec::with_capacity(params.nodes);
    let mut targets = Vec::with_capacity(params.nodes);
    for i in 0..params.nodes {
        let port = free_port()?;
        let mut spec = node_spec(&params.switchboard_bin, port);
        spec.args.extend(adapter.node_args(broker_port));
        spec.args.extend(["--node-id".to_owned(), format!("n{i}")]);
        let log = params.log_dir.join(format!("cluster-{}-n{i}.log", adapter.name()));
        nodes.push(ServerProcess::start(&spec, &log, Duration::from_secs(30))?);
        targets.push(Arc::new(Target::new("127.0.0.1", port, "/socket.io/", false)?));
    }
    let mut probes: Vec<Probe> = nodes.iter().map(|n| Probe::new(Some(n.pid()))).collect();
    probes.push(Probe::new(Some(broker.pid())));
    let spread = Spread {
        targets,
        groups: (0..params.nodes).map(|i| usize::from(i > 0)).collect(),
        probes,
        settle: params.settle,
        shards: params.shards,
    };
    let mut clustered = runtime.block_on(run_spread("cluster", &spread, &params.fanout))?;
    drop(nodes);
    drop(broker);
    add_cluster_figures(&mut clustered, params.nodes, true);
    clustered.report.server = Some(adapter.name());
    on_run(&clustered.report);
    // Let the kernel finish closing the last run's sockets.
    std::thread::sleep(Duration::from_millis(500));

    // The baseline: one node, in-memory adapter, every receiver on it.
    let port = free_port()?;
    let log = params.log_dir.join(format!("cluster-{}-single.log", adapter.name()));
    let single_node =
        ServerProcess::start(&node_spec(&params.switchboard_bin, port), &log, Duration::from_secs(30))?;
    let spread = Spread {
        targets: vec![Arc::new(Target::new("127.0.0.1", port, "/socket.io/", false)?)],
        groups: vec![0],
        probes: vec![Probe::new(Some(single_node.pid()))],
        settle: params.settle,
        shards: params.shards,
    };
    let mut single = runtime.block_on(run_spread("cluster", &spread, &params.fanout))?;
    drop(single_node);
    add_cluster_figures(&mut single, 1, false);
    single.report.server = Some("memory");
    on_run(&single.report);

    Ok(summarize(adapter, params.nodes, &clustered.report, &single.report))
}

/// A bench node on `port` with the in-memory adapter (the caller adds the cluster options).
pub(crate) fn node_spec(bin: &Path, port: u16) -> ServerSpec {
    ServerSpec {
        name: "switchboard",
        program: bin.to_owned(),
        args: ["--app", "bench", "--host", "127.0.0.1", "--port", &port.to_string()]
            .map(String::from)
            .to_vec(),
        env: vec![("NO_COLOR".into(), "1".into())],
        ready_line: "switchboard listening",
    }
}

/// The broker binary: the one given, or the first found in `PATH` and the sbin folders Debian uses.
fn find_broker(params: &ClusterParams) -> Result<PathBuf, ServerError> {
    let program = params.adapter.program();
    let missing =
        |path: PathBuf| ServerError::Missing { what: program, path, hint: params.adapter.install_hint() };
    if let Some(bin) = &params.broker_bin {
        return if bin.is_file() { Ok(bin.clone()) } else { Err(missing(bin.clone())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|bin| bin.is_file())
        .ok_or_else(|| missing(PathBuf::from(program)))
}

/// A loopback port that was free a moment ago (a node that then fails to bind says so in its log).
pub(crate) fn free_port() -> Result<u16, ServerError> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port());
    port.map_err(|source| ServerError::Spawn { name: "cluster", source })
}

/// Adds the same-node / cross-node split and the CPU of nodes and broker to a run's report.
fn add_cluster_figures(run: &mut SpreadRun, nodes: usize, with_broker: bool) {
    let published = run.report.figures.get("published").unwrap_or(0.0) as u64;
    let same = run.groups.first().copied().unwrap_or_default();
    let cross = run.groups.get(1).copied();
    let f = &mut run.report.figures;
    f.push("nodes", nodes as f64);
    let mut group = |name: [&'static str; 5], g: &GroupResult| {
        f.push(name[0], g.receivers as f64);
        f.push(name[1], g.deliveries as f64);
        if g.latency.count > 0 {
            f.push(name[2], g.latency.p50_ms);
            f.push(name[3], g.latency.p99_ms);
            f.push(name[4], g.latency.p999_ms);
        }
    };
    group(
        [
            "same_node_receivers",
            "same_node_deliveries",
            "same_node_latency_p50_ms",
            "same_node_latency_p99_ms",
            "same_node_latency_p999_ms",
        ],
        &same,
    );
    if let Some(cross) = &cross {
        group(
            [
                "cross_node_receivers",
                "cross_node_deliveries",
                "cross_node_latency_p50_ms",
                "cross_node_latency_p99_ms",
                "cross_node_latency_p999_ms",
            ],
            cross,
        );
        if same.latency.count > 0 && cross.latency.count > 0 {
            f.push("cross_minus_same_p99_ms", cross.latency.p99_ms - same.latency.p99_ms);
        }
    }
    let node_cpu: Option<f64> = run.cpu.iter().take(nodes).copied().sum();
    f.push_some("nodes_cpu_s", node_cpu);
    if with_broker {
        f.push_some("broker_cpu_s", run.cpu.get(nodes).copied().flatten());
    }
    let lost = |g: &GroupResult| (g.receivers * published).saturating_sub(g.deliveries);
    run.report.failures.push("lost_same_node", lost(&same));
    if let Some(cross) = &cross {
        run.report.failures.push("lost_cross_node", lost(cross));
    }
}

/// The two runs side by side.
fn summarize(adapter: Adapter, nodes: usize, cluster: &Report, single: &Report) -> ClusterSummary {
    let pick = |r: &Report| {
        let mut out = Named::default();
        for name in KEY_FIGURES {
            if let Some(v) = r.figures.get(name) {
                out.push(name, v);
            }
        }
        out
    };
    let per_delivery = "server_cpu_s_per_million_deliveries";
    let cpu_ratio = cluster
        .figures
        .get(per_delivery)
        .zip(single.figures.get(per_delivery).filter(|s| *s > 0.0))
        .map(|(c, s)| c / s);
    let gap = cluster.figures.get("cross_minus_same_p99_ms");
    let clean = |r: &Report| r.complete && r.failure_total() == 0;
    let clean = clean(cluster) && clean(single);
    let goals_met =
        clean && cpu_ratio.is_some_and(|r| r <= CPU_RATIO_GOAL) && gap.is_some_and(|g| g <= P99_GAP_GOAL_MS);
    ClusterSummary {
        kind: "cluster",
        adapter: adapter.name(),
        nodes,
        timestamp: rfc3339_utc(std::time::SystemTime::now()),
        cluster: pick(cluster),
        single: pick(single),
        cpu_ratio,
        cpu_ratio_goal: CPU_RATIO_GOAL,
        cross_minus_same_p99_ms: gap,
        p99_gap_goal_ms: P99_GAP_GOAL_MS,
        failures: RunPair { cluster: cluster.failures.clone(), single: single.failures.clone() },
        clean,
        goals_met,
    }
}

impl ClusterSummary {
    /// The JSON line.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!(r#"{{"kind":"error","message":"{e}"}}"#))
    }

    /// The table for people: both runs per figure, the ratio, the goals, then any failure.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .cluster
            .0
            .iter()
            .map(|&(name, c)| {
                let single = self.single.get(name);
                let ratio =
                    single.filter(|s| *s != 0.0).map_or_else(String::new, |s| format!("{:.2}", c / s));
                vec![
                    name.to_owned(),
                    format_number(c),
                    single.map_or_else(|| "-".into(), format_number),
                    ratio,
                ]
            })
            .collect();
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let ratio_ok = self.cpu_ratio.is_some_and(|r| r <= self.cpu_ratio_goal);
        let gap_ok = self.cross_minus_same_p99_ms.is_some_and(|g| g <= self.p99_gap_goal_ms);
        rows.push(vec![
            format!("CPU/delivery ratio (goal ≤ {})", self.cpu_ratio_goal),
            self.cpu_ratio.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
            String::new(),
            verdict(ratio_ok).into(),
        ]);
        rows.push(vec![
            format!("cross − same p99 ms (goal ≤ {})", self.p99_gap_goal_ms),
            self.cross_minus_same_p99_ms.map_or_else(|| "-".into(), format_number),
            String::new(),
            verdict(gap_ok).into(),
        ]);
        for &(name, c) in &self.failures.cluster.0 {
            let s = self.failures.single.get(name).unwrap_or(0);
            if c > 0 || s > 0 {
                rows.push(vec![format!("FAIL {name}"), c.to_string(), s.to_string(), String::new()]);
            }
        }
        let title = format!("cluster — {} nodes over {}", self.nodes, self.adapter);
        render(&[title.as_str(), "cluster", "single", "cluster/single"], rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(server: &'static str, cpu_per_million: f64, gap: Option<f64>, lost: u64) -> Report {
        let mut r = Report::new("cluster", String::new(), None, serde_json::Value::Null);
        r.server = Some(server);
        r.figures.push("deliveries", 100.0);
        r.figures.push("server_cpu_s_per_million_deliveries", cpu_per_million);
        r.figures.push_some("cross_minus_same_p99_ms", gap);
        r.failures.push("lost_deliveries", lost);
        r
    }

    #[test]
    fn summary_compares_cpu_and_checks_goals() {
        let s = summarize(
            Adapter::Redis,
            3,
            &report("redis", 2.2, Some(1.0), 0),
            &report("memory", 2.0, None, 0),
        );
        assert!(s.cpu_ratio.is_some_and(|r| (r - 1.1).abs() < 1e-9), "{s:?}");
        assert!(s.clean && s.goals_met, "{s:?}");
        assert!(s.json_line().starts_with(r#"{"kind":"cluster","adapter":"redis","nodes":3"#));
        assert!(s.table().contains("met"));

        let s =
            summarize(Adapter::Nats, 3, &report("nats", 3.0, Some(1.0), 2), &report("memory", 2.0, None, 0));
        assert!(!s.clean && !s.goals_met, "{s:?}");
        assert!(s.table().contains("FAIL lost_deliveries"), "{}", s.table());
        assert!(s.table().contains("NOT met"), "{}", s.table());
    }

    #[test]
    fn a_missing_broker_says_how_to_install_it() {
        let params = ClusterParams {
            adapter: Adapter::Nats,
            nodes: 3,
            switchboard_bin: PathBuf::new(),
            broker_bin: Some(PathBuf::from("/nonexistent/nats-server")),
            fanout: FanoutParams::default(),
            settle: Duration::ZERO,
            log_dir: PathBuf::new(),
            shards: 1,
        };
        match find_broker(&params) {
            Err(e) => assert!(e.to_string().contains("apt-get install -y nats-server"), "{e}"),
            Ok(bin) => panic!("found {}", bin.display()),
        }
    }
}
