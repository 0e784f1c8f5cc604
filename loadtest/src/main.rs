//! The `switchboard-loadtest` binary: parses the command line, builds the tokio runtime (one thread
//! unless `--threads` says otherwise) and runs a scenario or a comparison.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchboard_loadtest::chart;
use switchboard_loadtest::cluster::{self, Adapter, ClusterParams};
use switchboard_loadtest::compare::{self, CompareParams, Scenario};
use switchboard_loadtest::fleet::OpenPlan;
use switchboard_loadtest::procfs::{self, Probe};
use switchboard_loadtest::report::Report;
use switchboard_loadtest::scenario::Context;
use switchboard_loadtest::scenario::connect::{self, ConnectParams};
use switchboard_loadtest::scenario::echo::{self, EchoParams};
use switchboard_loadtest::scenario::fanout::{self, FanoutParams};
use switchboard_loadtest::scenario::polling;
use switchboard_loadtest::scenario::soak::SoakLoad;
use switchboard_loadtest::soak::{self, SoakParams};
use switchboard_loadtest::target::Target;

/// Socket.IO v5 load generator for Switchboard (and any server speaking its bench contract).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Runtime worker threads (1: a current-thread runtime).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N connections, hold them, report connect time and server memory per connection.
    Connect {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        open: OpenArgs,
        /// Seconds to hold the connections once all are open.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
        /// Seconds after the last open before reading the server's memory (within the hold).
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
    },
    /// Acked echo at a fixed total rate (open model), latency from the scheduled send time.
    Echo {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        echo: EchoArgs,
    },
    /// One publisher broadcasts to N receivers; deliveries, latency, losses.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        fanout: FanoutArgs,
    },
    /// The same acked echo on long-polling clients (two HTTP connections each, one GET always waiting).
    Polling {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        echo: EchoArgs,
    },
    /// Start Switchboard and the Node and socketioxide references, run scenarios on each, print
    /// medians and ratios.
    Compare(CompareArgs),
    /// Start a broker and N nodes, fan out over them, then the same on one in-memory node; compare.
    Cluster(ClusterArgs),
    /// Start a node and run churn plus fan-out for an hour; fail if its RSS or open files grow after the warm-up.
    Soak(SoakArgs),
    /// Draw SVG bar charts (one per scenario) from the JSON lines of `compare` or of single runs, or a
    /// soak's chart over time (`soak.svg`) from the lines of a soak.
    Chart {
        /// JSON lines, as `compare` or a scenario printed them on stdout.
        #[arg(long, short = 'i')]
        input: PathBuf,
        /// Directory for the SVG files (`<scenario>.svg`).
        #[arg(long, short = 'o', default_value = "target/loadtest-charts")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Server address (an IP address or localhost).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    path: String,
    /// Load an address that is not loopback.
    #[arg(long)]
    allow_non_loopback: bool,
    /// Server process to read CPU and memory from.
    #[arg(long, conflicts_with = "server_pid_file")]
    server_pid: Option<u32>,
    /// File holding the server's pid.
    #[arg(long)]
    server_pid_file: Option<PathBuf>,
}

// The per-scenario defaults are applied in code, not with `default_value_t`: clap keeps a derived default
// in a static of a generic function, which every instance of a const-generic `Args` struct would share.
#[derive(Debug, Args)]
struct OpenArgs {
    /// Connections to open [default: connect 5000, echo 50, fanout 1000, polling 50].
    #[arg(long, short = 'n')]
    connections: Option<usize>,
    /// Handshakes in progress at most (the default stays under a 128-connection accept backlog).
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// New connections per second at most (default: as fast as --in-flight allows).
    #[arg(long)]
    connect_rate: Option<f64>,
    /// Seconds one handshake may take.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds opening all connections may take.
    #[arg(long, default_value_t = 60.0)]
    open_limit: f64,
}

impl OpenArgs {
    /// The plan, with the scenario's default number of connections unless one was given.
    fn plan(&self, default: &OpenPlan) -> OpenPlan {
        OpenPlan {
            connections: self.connections.unwrap_or(default.connections),
            in_flight: self.in_flight,
            rate: self.connect_rate,
            timeout: Duration::from_secs_f64(self.connect_timeout),
            limit: Duration::from_secs_f64(self.open_limit),
        }
    }
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Echo requests per second, all connections together [default: echo 5000, polling 2000].
    #[arg(long, short = 'r')]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds at the same rate before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Bytes of the echoed string.
    #[arg(long, short = 'b', default_value_t = 64)]
    payload: usize,
    /// Seconds after which an ack counts as timed out.
    #[arg(long, default_value_t = 5.0)]
    ack_timeout: f64,
    /// Closed loop: each connection keeps one request in flight and sends the next on its ack
    /// (`--rate` is then unused; latency is the round trip).
    #[arg(long)]
    closed_loop: bool,
}

impl EchoArgs {
    /// The parameters, with the scenario's defaults (`default`) for what was not given.
    fn params(&self, open: &OpenArgs, default: &EchoParams) -> EchoParams {
        EchoParams {
            open: open.plan(&default.open),
            rate: self.rate.unwrap_or(default.rate),
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            payload: self.payload,
            ack_timeout: Duration::from_secs_f64(self.ack_timeout),
            closed_loop: self.closed_loop,
        }
    }
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Broadcasts to publish.
    #[arg(long, short = 'm', default_value_t = 1000)]
    messages: u64,
    /// Bytes of the broadcast data (at least 16: the send time).
    #[arg(long, short = 'b', default_value_t = 64)]
    payload: usize,
    /// Broadcasts un-acked at most.
    #[arg(long, short = 'w', default_value_t = 16)]
    window: usize,
    /// Broadcasts per second on a fixed schedule, latency counted from the schedule (default: as
    /// fast as the window allows).
    #[arg(long)]
    broadcast_rate: Option<f64>,
    /// Room the receivers join.
    #[arg(long, default_value = "fanout")]
    room: String,
    /// Broadcast to every connection (publisher included) instead of a room.
    #[arg(long)]
    no_room: bool,
    /// Seconds after which a join or broadcast ack counts as timed out.
    #[arg(long, default_value_t = 5.0)]
    ack_timeout: f64,
    /// Seconds to wait for missing deliveries after the last ack.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds the publishing phase may take.
    #[arg(long, default_value_t = 120.0)]
    limit: f64,
}

impl FanoutArgs {
    fn params(&self, open: OpenPlan) -> FanoutParams {
        FanoutParams {
            open,
            messages: self.messages,
            payload: self.payload,
            window: self.window,
            broadcast_rate: self.broadcast_rate,
            room: (!self.no_room).then(|| self.room.clone()),
            ack_timeout: Duration::from_secs_f64(self.ack_timeout),
            drain: Duration::from_secs_f64(self.drain),
            limit: Duration::from_secs_f64(self.limit),
        }
    }
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The Switchboard binary.
    #[arg(long, default_value = "target/release/switchboard")]
    switchboard_bin: PathBuf,
    /// The Node reference server.
    #[arg(long, default_value = "loadtest/reference/node/server.js")]
    node_script: PathBuf,
    /// The Node executable.
    #[arg(long, default_value = "node")]
    node_bin: PathBuf,
    /// Port for Switchboard.
    #[arg(long, default_value_t = 3101)]
    switchboard_port: u16,
    /// Port for Node.
    #[arg(long, default_value_t = 3102)]
    node_port: u16,
    /// The socketioxide reference's manifest (its own workspace; built with cargo before the runs).
    #[arg(long, default_value = "loadtest/reference/socketioxide/Cargo.toml")]
    socketioxide_manifest: PathBuf,
    /// Where the socketioxide reference is built (`cargo --target-dir`).
    #[arg(long, default_value = "target")]
    socketioxide_target_dir: PathBuf,
    /// Port for socketioxide.
    #[arg(long, default_value_t = 3103)]
    socketioxide_port: u16,
    /// Compare with Node only (no socketioxide build or runs).
    #[arg(long)]
    no_socketioxide: bool,
    /// Runs per scenario and server.
    #[arg(long, short = 'k', default_value_t = 3)]
    repeats: u32,
    /// Scenarios to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "connect,echo,fanout,polling")]
    scenarios: Vec<Scenario>,
    /// Where the servers' logs go.
    #[arg(long, default_value = "target/loadtest-logs")]
    log_dir: PathBuf,
    /// Also draw SVG charts of the medians into this directory (`<scenario>.svg`).
    #[arg(long, value_name = "DIR")]
    charts: Option<PathBuf>,
    /// `connect`: connections.
    #[arg(long, default_value_t = 5000)]
    connect_connections: usize,
    /// `connect`: seconds held.
    #[arg(long, default_value_t = 5.0)]
    connect_hold: f64,
    /// `echo`: connections.
    #[arg(long, default_value_t = 50)]
    echo_connections: usize,
    /// `echo`: requests per second.
    #[arg(long, default_value_t = 5000.0)]
    echo_rate: f64,
    /// `echo`: measured seconds.
    #[arg(long, default_value_t = 10.0)]
    echo_duration: f64,
    /// `echo`: payload bytes.
    #[arg(long, default_value_t = 64)]
    echo_payload: usize,
    /// `echo-closed`: connections, each with one request in flight (measured seconds and payload
    /// as `echo`).
    #[arg(long, default_value_t = 100)]
    echo_closed_connections: usize,
    /// `polling`: connections.
    #[arg(long, default_value_t = 50)]
    polling_connections: usize,
    /// `polling`: requests per second.
    #[arg(long, default_value_t = polling::DEFAULT_RATE)]
    polling_rate: f64,
    /// `polling`: measured seconds.
    #[arg(long, default_value_t = 10.0)]
    polling_duration: f64,
    /// `polling`: payload bytes.
    #[arg(long, default_value_t = 64)]
    polling_payload: usize,
    /// `fanout`: receivers.
    #[arg(long, default_value_t = 1000)]
    fanout_receivers: usize,
    /// `fanout`: broadcasts.
    #[arg(long, default_value_t = 1000)]
    fanout_messages: u64,
    /// `fanout`: payload bytes.
    #[arg(long, default_value_t = 64)]
    fanout_payload: usize,
    /// `fanout`: broadcasts un-acked at most.
    #[arg(long, default_value_t = 16)]
    fanout_window: usize,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// The broker joining the nodes.
    #[arg(long, value_enum)]
    adapter: Adapter,
    /// Switchboard nodes in the cluster (at least 2).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Receivers over all nodes, dealt round-robin (the publisher is on the first node).
    #[arg(long, default_value_t = 2000)]
    receivers: usize,
    /// The Switchboard binary.
    #[arg(long, default_value = "target/release/switchboard")]
    switchboard_bin: PathBuf,
    /// The broker binary (default: redis-server or nats-server from PATH, /usr/sbin, /usr/local/sbin).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Seconds between the last join and the first broadcast (nodes subscribe to rooms in the background).
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Where the process logs go.
    #[arg(long, default_value = "target/loadtest-logs")]
    log_dir: PathBuf,
    /// Handshakes in progress at most, over all nodes.
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Seconds opening all receivers may take.
    #[arg(long, default_value_t = 60.0)]
    open_limit: f64,
    /// Broadcasts to publish.
    #[arg(long, short = 'm', default_value_t = 200)]
    messages: u64,
    /// Bytes of the broadcast data (at least 16: the send time).
    #[arg(long, short = 'b', default_value_t = 64)]
    payload: usize,
    /// Broadcasts un-acked at most.
    #[arg(long, short = 'w', default_value_t = 16)]
    window: usize,
    /// Broadcasts per second, paced (default: as fast as the window allows); below saturation the
    /// cross-node latency shows the hop itself rather than queueing.
    #[arg(long)]
    broadcast_rate: Option<f64>,
    /// Seconds to wait for missing deliveries after the last ack.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds the publishing phase may take.
    #[arg(long, default_value_t = 120.0)]
    limit: f64,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// The Switchboard binary.
    #[arg(long, default_value = "target/release/switchboard")]
    switchboard_bin: PathBuf,
    /// Where the node's log goes.
    #[arg(long, default_value = "target/loadtest-logs")]
    log_dir: PathBuf,
    /// Seconds of load once the base is connected.
    #[arg(long, short = 'd', default_value_t = 3600.0)]
    duration: f64,
    /// Seconds at the start left out of the verdict.
    #[arg(long, default_value_t = 300.0)]
    warmup: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// Persistent WebSocket clients, dealt over the rooms.
    #[arg(long, default_value_t = 2000)]
    base: usize,
    /// Rooms.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Churning clients started per second (each connects, joins a room, receives, leaves).
    #[arg(long, default_value_t = 50.0)]
    churn_rate: f64,
    /// Seconds a churning client stays after its join.
    #[arg(long, default_value_t = 2.0)]
    churn_hold: f64,
    /// Every n-th churning client long-polls instead of using WebSocket (0: none).
    #[arg(long, default_value_t = 5)]
    polling_every: u64,
    /// Every n-th churning client drops its connection instead of disconnecting (0: none).
    #[arg(long, default_value_t = 2)]
    abrupt_every: u64,
    /// Churning clients in progress at most (more are skipped and counted).
    #[arg(long, default_value_t = 1000)]
    churn_max: usize,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 20.0)]
    broadcast_rate: f64,
    /// Every n-th broadcast goes to everyone, the others to one room at a time (0: rooms only).
    #[arg(long, default_value_t = 4)]
    all_every: u64,
    /// Bytes of the broadcast data (at least 16: the send time).
    #[arg(long, short = 'b', default_value_t = 64)]
    payload: usize,
    /// Seconds a handshake, join or broadcast ack may take.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Largest RSS rise after the warm-up (fitted line), in per cent.
    #[arg(long, default_value_t = soak::RSS_BOUND_PCT)]
    rss_bound: f64,
    /// Largest rise of open file descriptors after the warm-up (fitted line), in per cent.
    #[arg(long, default_value_t = soak::FD_BOUND_PCT)]
    fd_bound: f64,
    /// The samples and the summary as JSON lines (also printed on stdout).
    #[arg(long, default_value = "target/loadtest-soak/soak.jsonl")]
    out: PathBuf,
    /// The chart over time (SVG).
    #[arg(long, default_value = "target/loadtest-soak/soak.svg")]
    chart: PathBuf,
}

impl SoakArgs {
    fn params(&self, shards: usize) -> SoakParams {
        SoakParams {
            switchboard_bin: self.switchboard_bin.clone(),
            log_dir: self.log_dir.clone(),
            load: SoakLoad {
                duration: Duration::from_secs_f64(self.duration),
                sample_every: Duration::from_secs_f64(self.sample_every),
                base: self.base,
                rooms: self.rooms,
                churn_rate: self.churn_rate,
                churn_hold: Duration::from_secs_f64(self.churn_hold),
                polling_every: self.polling_every,
                abrupt_every: self.abrupt_every,
                churn_max: self.churn_max,
                broadcast_rate: self.broadcast_rate,
                all_every: self.all_every,
                payload: self.payload,
                timeout: Duration::from_secs_f64(self.timeout),
            },
            warmup: Duration::from_secs_f64(self.warmup),
            rss_bound_pct: self.rss_bound,
            fd_bound_pct: self.fd_bound,
            shards,
        }
    }
}

/// Runs the soak, writing each sample to stdout and `--out` as it comes, then the summary and the chart.
fn run_soak(runtime: &tokio::runtime::Runtime, args: &SoakArgs, shards: usize) -> anyhow::Result<()> {
    use std::io::Write as _;
    for path in [&args.out, &args.chart] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let mut out =
        std::fs::File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut write_error = None;
    let params = args.params(shards);
    let (summary, samples) = soak::run(runtime, &params, |sample| {
        let line = serde_json::to_string(sample).unwrap_or_default();
        println!("{line}");
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            write_error.get_or_insert(e);
        }
    })?;
    let line = summary.json_line();
    println!("{line}");
    writeln!(out, "{line}").with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(e) = write_error {
        return Err(e).with_context(|| format!("cannot write {}", args.out.display()));
    }
    eprint!("{}", summary.table());
    let svg = summary.chart(&samples)?;
    std::fs::write(&args.chart, svg).with_context(|| format!("cannot write {}", args.chart.display()))?;
    eprintln!("samples and summary: {}\nchart: {}", args.out.display(), args.chart.display());
    anyhow::ensure!(summary.passed, "soak failed: {}", summary.verdict.join("; "));
    Ok(())
}

impl ClusterArgs {
    fn params(&self, shards: usize) -> ClusterParams {
        let mut fanout = FanoutParams::default();
        fanout.open.connections = self.receivers;
        fanout.open.in_flight = self.in_flight;
        fanout.open.limit = Duration::from_secs_f64(self.open_limit);
        fanout.messages = self.messages;
        fanout.payload = self.payload;
        fanout.window = self.window;
        fanout.broadcast_rate = self.broadcast_rate;
        fanout.drain = Duration::from_secs_f64(self.drain);
        fanout.limit = Duration::from_secs_f64(self.limit);
        ClusterParams {
            adapter: self.adapter,
            nodes: self.nodes,
            switchboard_bin: self.switchboard_bin.clone(),
            broker_bin: self.broker_bin.clone(),
            fanout,
            settle: Duration::from_secs_f64(self.settle),
            log_dir: self.log_dir.clone(),
            shards,
        }
    }
}

impl CompareArgs {
    fn params(&self, shards: usize) -> CompareParams {
        let mut connect = ConnectParams::default();
        connect.open.connections = self.connect_connections;
        connect.hold = Duration::from_secs_f64(self.connect_hold);
        let mut echo = EchoParams::default();
        echo.open.connections = self.echo_connections;
        echo.rate = self.echo_rate;
        echo.duration = Duration::from_secs_f64(self.echo_duration);
        echo.payload = self.echo_payload;
        let mut echo_closed = echo.clone();
        echo_closed.open.connections = self.echo_closed_connections;
        echo_closed.closed_loop = true;
        let mut fanout = FanoutParams::default();
        fanout.open.connections = self.fanout_receivers;
        fanout.messages = self.fanout_messages;
        fanout.payload = self.fanout_payload;
        fanout.window = self.fanout_window;
        let mut polling = polling::default_params();
        polling.open.connections = self.polling_connections;
        polling.rate = self.polling_rate;
        polling.duration = Duration::from_secs_f64(self.polling_duration);
        polling.payload = self.polling_payload;
        CompareParams {
            switchboard_bin: self.switchboard_bin.clone(),
            node_script: self.node_script.clone(),
            node_bin: self.node_bin.clone(),
            socketioxide_manifest: (!self.no_socketioxide).then(|| self.socketioxide_manifest.clone()),
            socketioxide_target_dir: self.socketioxide_target_dir.clone(),
            ports: [self.switchboard_port, self.node_port, self.socketioxide_port],
            repeats: self.repeats.max(1),
            scenarios: self.scenarios.clone(),
            connect,
            echo,
            echo_closed,
            fanout,
            polling,
            log_dir: self.log_dir.clone(),
            shards,
        }
    }
}

impl TargetArgs {
    fn context(&self, shards: usize) -> anyhow::Result<Context> {
        let pid = match (&self.server_pid, &self.server_pid_file) {
            (Some(pid), _) => Some(*pid),
            (None, Some(file)) => Some(procfs::read_pid_file(file)?),
            (None, None) => None,
        };
        if pid.is_none() {
            eprintln!("note: no --server-pid/--server-pid-file: server CPU and memory are not measured");
        }
        let target = Target::new(&self.host, self.port, &self.path, self.allow_non_loopback)?;
        Ok(Context { target: Arc::new(target), probe: Probe::new(pid), shards })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = cli.threads.max(1);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("cannot build the tokio runtime")?;
    let shards = if threads == 1 { 1 } else { threads * 4 };

    let report = match cli.command {
        Command::Connect { target, open, hold, settle } => {
            let ctx = target.context(shards)?;
            let params = ConnectParams {
                open: open.plan(&ConnectParams::default().open),
                hold: Duration::from_secs_f64(hold),
                settle: Duration::from_secs_f64(settle),
            };
            runtime.block_on(connect::run(&ctx, &params))?
        }
        Command::Echo { target, open, echo } => {
            let ctx = target.context(shards)?;
            runtime.block_on(echo::run(&ctx, &echo.params(&open, &EchoParams::default())))?
        }
        Command::Polling { target, open, echo } => {
            let ctx = target.context(shards)?;
            runtime.block_on(polling::run(&ctx, &echo.params(&open, &polling::default_params())))?
        }
        Command::Fanout { target, open, fanout } => {
            let ctx = target.context(shards)?;
            runtime.block_on(fanout::run(&ctx, &fanout.params(open.plan(&FanoutParams::default().open))))?
        }
        Command::Compare(args) => {
            let params = args.params(shards);
            let mut lines = Vec::new();
            let comparisons = compare::run(&runtime, &params, |report| {
                let line = report.json_line();
                println!("{line}");
                eprintln!("{}", one_line(report));
                lines.extend(serde_json::from_str::<serde_json::Value>(&line).ok());
            })?;
            for c in &comparisons {
                println!("{}", c.json_line());
                eprintln!("\n{}", c.table());
            }
            if let Some(dir) = &args.charts {
                for path in chart::write_charts(&lines, dir)? {
                    eprintln!("chart: {}", path.display());
                }
            }
            return Ok(());
        }
        Command::Cluster(args) => {
            let summary = cluster::run(&runtime, &args.params(shards), |report| {
                println!("{}", report.json_line());
                eprint!("{}", report.table());
            })?;
            println!("{}", summary.json_line());
            eprintln!("\n{}", summary.table());
            return Ok(());
        }
        Command::Soak(args) => return run_soak(&runtime, &args, shards),
        Command::Chart { input, out } => {
            let lines = chart::read_json_lines(&input)?;
            // A soak's lines get its chart over time; anything else, the bar charts.
            if lines.iter().any(|l| l.get("kind").and_then(serde_json::Value::as_str) == Some("soak")) {
                std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
                let path = out.join("soak.svg");
                std::fs::write(&path, soak::chart(&lines)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("{}", path.display());
                return Ok(());
            }
            for path in chart::write_charts(&lines, &out)? {
                println!("{}", path.display());
            }
            return Ok(());
        }
    };
    println!("{}", report.json_line());
    eprint!("{}", report.table());
    Ok(())
}

/// A run in one line, for compare's progress on stderr.
fn one_line(report: &Report) -> String {
    let figures: Vec<String> = report
        .figures
        .0
        .iter()
        .filter(|(name, _)| {
            matches!(
                *name,
                "connected"
                    | "connect_time_s"
                    | "rss_per_connection_kib"
                    | "throughput_per_s"
                    | "latency_p50_ms"
                    | "latency_p99_ms"
                    | "deliveries_per_s"
                    | "server_cpu_s_per_million"
                    | "round_trips_per_server_cpu_s"
                    | "server_cpu_s_per_million_deliveries"
            )
        })
        .map(|(name, v)| format!("{name}={}", switchboard_loadtest::report::format_number(*v)))
        .collect();
    format!(
        "{} {} #{}: {} failures={}{}",
        report.scenario,
        report.server.unwrap_or("-"),
        report.repeat.unwrap_or(1),
        figures.join(" "),
        report.failure_total(),
        if report.complete { "" } else { " INCOMPLETE" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections and rate a subcommand would run with.
    fn sizes(args: &[&str]) -> Result<(usize, Option<f64>), clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("switchboard-loadtest").chain(args.iter().copied()))?;
        Ok(match cli.command {
            Command::Connect { open, .. } => (open.plan(&ConnectParams::default().open).connections, None),
            Command::Echo { open, echo, .. } => {
                let p = echo.params(&open, &EchoParams::default());
                (p.open.connections, Some(p.rate))
            }
            Command::Polling { open, echo, .. } => {
                let p = echo.params(&open, &polling::default_params());
                (p.open.connections, Some(p.rate))
            }
            Command::Fanout { open, .. } => (open.plan(&FanoutParams::default().open).connections, None),
            Command::Cluster(args) => (args.params(1).fanout.open.connections, None),
            Command::Soak(args) => {
                let p = args.params(1);
                (p.load.base, Some(p.load.churn_rate))
            }
            Command::Compare(_) | Command::Chart { .. } => (0, None),
        })
    }

    #[test]
    fn each_scenario_keeps_its_own_defaults() -> Result<(), clap::Error> {
        assert_eq!(sizes(&["connect"])?, (5000, None));
        assert_eq!(sizes(&["echo"])?, (50, Some(5000.0)));
        assert_eq!(sizes(&["fanout"])?, (1000, None));
        assert_eq!(sizes(&["polling"])?, (50, Some(2000.0)));
        assert_eq!(sizes(&["polling", "-n", "7", "--rate", "30"])?, (7, Some(30.0)));
        let cli = Cli::try_parse_from(["switchboard-loadtest", "echo", "--closed-loop", "-n", "100"])?;
        let Command::Echo { open, echo, .. } = cli.command else { panic!("not echo") };
        assert!(echo.params(&open, &EchoParams::default()).closed_loop);
        assert_eq!(sizes(&["cluster", "--adapter", "redis"])?, (2000, None));
        assert_eq!(sizes(&["soak"])?, (2000, Some(50.0)));
        Ok(())
    }
}
