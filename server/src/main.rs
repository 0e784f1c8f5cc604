//! The `switchboard` binary: parses the command line (or `SWITCHBOARD_*` env) and runs a node.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{Response, StatusCode, header};
use switchboard::cluster::{Backend, Cluster};
use switchboard::config::{CookieConfig, CorsConfig, Transports};
use switchboard::http::{Body, Fallback, Forwarder};
use switchboard::socketio::{SocketIo, SocketIoConfig};
use switchboard::{Engine, EngineConfig, Server};
use switchboard_adapter::cluster::NodeId;

/// What the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum App {
    /// The demo page on `/`: `hello` every second, logs the page's `hey`.
    Demo,
    /// The load-test contract: echo, join, leave, broadcast.
    Bench,
    /// Plain Engine.IO echo (no Socket.IO), as the engine.io-protocol suite expects.
    EngineEcho,
}

/// Which adapter joins the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AdapterKind {
    /// One node on its own.
    Memory,
    /// Redis pub/sub, sharded over `--redis-url`s.
    Redis,
    /// NATS core pub/sub at `--nats-url`.
    Nats,
}

/// A horizontally scalable Socket.IO server node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Application to run.
    #[arg(long, env = "SWITCHBOARD_APP", value_enum, default_value_t = App::Demo)]
    app: App,
    /// Address to listen on.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "0.0.0.0")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "SWITCHBOARD_PORT", default_value_t = 3000)]
    port: u16,
    /// Mount path of Engine.IO.
    #[arg(long, env = "SWITCHBOARD_PATH", default_value = "/socket.io/")]
    path: String,
    /// Milliseconds between server pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value_t = 25_000)]
    ping_interval: u64,
    /// Milliseconds a pong may take.
    #[arg(long, env = "SWITCHBOARD_PING_TIMEOUT", default_value_t = 20_000)]
    ping_timeout: u64,
    /// Largest polling body or websocket message, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_HTTP_BUFFER_SIZE", default_value_t = 1_000_000)]
    max_http_buffer_size: usize,
    /// Accepted transports, comma-separated.
    #[arg(long, env = "SWITCHBOARD_TRANSPORTS", default_value = "polling,websocket", value_delimiter = ',')]
    transports: Vec<String>,
    /// Allow polling sessions to upgrade to websocket.
    #[arg(long, env = "SWITCHBOARD_ALLOW_UPGRADES", default_value_t = true, action = clap::ArgAction::Set)]
    allow_upgrades: bool,
    /// Milliseconds an upgrade may take.
    #[arg(long, env = "SWITCHBOARD_UPGRADE_TIMEOUT", default_value_t = 10_000)]
    upgrade_timeout: u64,
    /// Compress polling responses of at least this many bytes (0 turns compression off).
    #[arg(long, env = "SWITCHBOARD_HTTP_COMPRESSION_THRESHOLD", default_value_t = 1024)]
    http_compression_threshold: usize,
    /// Allowed CORS origin (repeatable, or comma-separated; `*` for any). CORS is off without one.
    #[arg(long = "cors-origin", env = "SWITCHBOARD_CORS_ORIGIN", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Allow credentials (cookies) on cross-origin requests.
    #[arg(long, env = "SWITCHBOARD_CORS_CREDENTIALS")]
    cors_credentials: bool,
    /// Set a handshake cookie with this name (sticky sessions at the load balancer).
    #[arg(long, env = "SWITCHBOARD_COOKIE")]
    cookie: Option<String>,
    /// This node's id, the prefix of its session ids (default: random).
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    node_id: Option<String>,
    /// Milliseconds a connection may take to join a namespace.
    #[arg(long, env = "SWITCHBOARD_CONNECT_TIMEOUT", default_value_t = 45_000)]
    connect_timeout: u64,
    /// Cluster adapter: `memory` (one node), `redis` or `nats`.
    #[arg(long, env = "SWITCHBOARD_ADAPTER", value_enum, default_value_t = AdapterKind::Memory)]
    adapter: AdapterKind,
    /// Redis URLs for `--adapter redis`, repeatable or comma-separated: channels are spread over them.
    #[arg(
        long = "redis-url",
        env = "SWITCHBOARD_REDIS_URL",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_urls: Vec<String>,
    /// NATS URLs for `--adapter nats` (servers of one NATS cluster), repeatable or comma-separated.
    #[arg(
        long = "nats-url",
        env = "SWITCHBOARD_NATS_URL",
        value_delimiter = ',',
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_urls: Vec<String>,
    /// Prefix of the cluster's Redis channels / NATS subjects: nodes with the same prefix form one cluster.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_PREFIX", default_value = "switchboard")]
    cluster_prefix: String,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this port (then `/metrics` is not on the
    /// public port; the health endpoints are on both).
    #[arg(long, env = "SWITCHBOARD_METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Seconds over which SIGTERM disconnects the clients (in random batches) before exiting;
    /// keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SWITCHBOARD_DRAIN_SECONDS", default_value_t = 10.0)]
    drain_seconds: f64,
    /// Pass polling requests and websocket upgrades for sessions of other nodes to their owner
    /// (found from the sid and cluster membership), so a balancer without sticky sessions works;
    /// `--forward-polling false` turns it off. Needs `--adapter redis|nats`.
    #[arg(long, env = "SWITCHBOARD_FORWARD_POLLING", default_value_t = true, action = clap::ArgAction::Set)]
    forward_polling: bool,
    /// `host:port` where the other nodes reach this one to forward requests (on Kubernetes: the
    /// pod IP and port). Default: the listen address, or this host's outward IP when listening
    /// on all interfaces.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,
    /// Runtime worker threads (default: one per CPU). One worker avoids cross-thread wake-ups,
    /// which is cheaper per message when a node has a single core to itself.
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    workers: Option<usize>,
}

impl Args {
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let mut transports = Transports { polling: false, websocket: false };
        for t in &self.transports {
            match t.trim() {
                "polling" => transports.polling = true,
                "websocket" => transports.websocket = true,
                other => anyhow::bail!("unknown transport {other:?} (expected polling, websocket)"),
            }
        }
        let mut config = EngineConfig::default()
            .with_path(&self.path)
            .with_ping_interval(Duration::from_millis(self.ping_interval))
            .with_ping_timeout(Duration::from_millis(self.ping_timeout))
            .with_max_http_buffer_size(self.max_http_buffer_size)
            .with_transports(transports)
            .with_allow_upgrades(self.allow_upgrades)
            .with_upgrade_timeout(Duration::from_millis(self.upgrade_timeout))
            .with_http_compression(
                (self.http_compression_threshold > 0).then_some(self.http_compression_threshold),
            )
            .with_cors((!self.cors_origins.is_empty()).then(|| CorsConfig {
                origins: self.cors_origins.clone(),
                credentials: self.cors_credentials,
                max_age: None,
            }))
            .with_cookie(
                self.cookie.as_ref().map(|name| CookieConfig { name: name.clone(), ..Default::default() }),
            );
        if let Some(id) = &self.node_id {
            // The cluster's rule: the id is also the node's name on Redis channels and NATS subjects.
            anyhow::ensure!(NodeId::is_valid(id), "--node-id must be non-empty and use only A-Z a-z 0-9 - _");
            config = config.with_node_id(id);
        }
        Ok(config)
    }
}

/// `GET /` answers `page`; everything else outside Engine.IO is 404.
fn index_page(page: &'static str) -> Fallback {
    Arc::new(move |req| {
        Box::pin(async move {
            if req.uri().path() != "/" {
                let mut r = Response::new(Body::new(Bytes::from_static(b"Not Found")));
                *r.status_mut() = StatusCode::NOT_FOUND;
                return r;
            }
            let mut r = Response::new(Body::new(Bytes::from_static(page.as_bytes())));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
            r
        })
    })
}

const ENGINE_ECHO_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Switchboard</title>\
    <h1>Switchboard</h1><p>Engine.IO v4 echo (no Socket.IO): every message comes back to its sender.</p>";

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        anyhow::ensure!(n > 0, "--workers must be at least 1");
        runtime.worker_threads(n);
    }
    runtime.enable_all().build().context("cannot start the tokio runtime")?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.engine_config()?;
    let backend = match args.adapter {
        // Plain Engine.IO has no rooms to share: no broker connection.
        _ if args.app == App::EngineEcho => Backend::Memory,
        AdapterKind::Memory => Backend::Memory,
        AdapterKind::Redis => Backend::Redis { urls: args.redis_urls.clone() },
        AdapterKind::Nats => Backend::Nats { urls: args.nats_urls.clone() },
    };
    let listener = switchboard::http::bind(&args.host, args.port)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let forwarding = args.forward_polling && backend != Backend::Memory;
    let advertised = match (&args.advertise_address, forwarding) {
        (_, false) => None,
        (Some(address), true) => {
            // Peers dial it as `host:port`: a missing port or a URL would fail every forward.
            let valid = address
                .parse::<http::uri::Authority>()
                .is_ok_and(|a| a.port_u16().is_some() && a.as_str() == address.as_str());
            anyhow::ensure!(
                valid && !address.contains('@'),
                "--advertise-address must be host:port (for example 10.0.0.7:3000), not {address:?}"
            );
            Some(address.clone())
        }
        (None, true) => {
            Some(switchboard::http::forward::advertise_address(listener.local_addr()?).to_string())
        }
    };
    let cluster = Arc::new(
        Cluster::connect(&backend, config.node_id(), &args.cluster_prefix, advertised.as_deref())
            .await
            .with_context(|| {
                format!(
                    "cannot join the cluster with --adapter {}",
                    format!("{:?}", args.adapter).to_lowercase()
                )
            })?,
    );
    cluster.spawn_health_log();
    let sio_config = SocketIoConfig::default()
        .with_connect_timeout(Duration::from_millis(args.connect_timeout))
        .with_adapter(cluster.adapter_factory());
    let (engine, page) = match args.app {
        App::EngineEcho => (Engine::new(config, Arc::new(switchboard::apps::echo::Echo)), ENGINE_ECHO_PAGE),
        App::Demo => {
            let io = SocketIo::new(config, sio_config);
            switchboard::apps::demo::install(&io);
            (io.engine().clone(), switchboard::apps::demo::PAGE)
        }
        App::Bench => {
            let io = SocketIo::new(config, sio_config);
            switchboard::apps::bench::install(&io);
            (
                io.engine().clone(),
                "<!doctype html><title>Switchboard</title><p>Switchboard bench contract.</p>",
            )
        }
    };
    tracing::info!(
        address = %listener.local_addr()?,
        node_id = engine.config().node_id(),
        app = ?args.app,
        adapter = cluster.backend_name(),
        forwarding = advertised.as_deref().unwrap_or("off"),
        "switchboard listening"
    );
    let collector = switchboard::metrics::cluster::ClusterCollector::new(cluster.clone())?;
    engine.metrics().registry().register(Box::new(collector))?;
    let ready_cluster = cluster.clone();
    let forwarder = cluster.locator().filter(|_| forwarding).map(|locate| {
        let config = engine.config();
        // A long poll is held up to the ping interval; its owner answers well within this.
        let answer_timeout = config.ping_interval() + config.ping_timeout();
        Forwarder::new(config.node_id(), locate, answer_timeout, engine.metrics().forwarded.clone())
    });
    let server = Server::new(engine)
        .with_forwarder(forwarder)
        .with_fallback(index_page(page))
        .with_ready_check(Arc::new(move || ready_cluster.is_connected()))
        .with_public_metrics(args.metrics_port.is_none());
    let drain = Duration::try_from_secs_f64(args.drain_seconds)
        .map_err(|_| anyhow::anyhow!("--drain-seconds must be a number of seconds, 0 or more"))?;
    let signal = switchboard::shutdown::on_signal();
    let stop = tokio_util::sync::CancellationToken::new();
    let ops = match args.metrics_port {
        Some(port) => {
            let listener = switchboard::http::bind(&args.host, port)
                .await
                .with_context(|| format!("cannot listen on {}:{port} (--metrics-port)", args.host))?;
            tracing::info!(address = %listener.local_addr()?, "metrics, healthz and readyz listening");
            Some(tokio::spawn(server.clone().serve_ops(listener, stop.clone())))
        }
        None => None,
    };
    let mut serving = tokio::spawn(server.clone().serve(listener, stop.clone()));
    tokio::select! {
        () = signal.cancelled() => {}
        // The server only ends on its own when something broke.
        ended = &mut serving => return ended.context("the server task failed")?.map_err(Into::into),
    }
    tokio::select! {
        () = server.drain(drain) => {}
        () = switchboard::shutdown::signal() => tracing::warn!("second signal: skipping the rest of the drain"),
    }
    stop.cancel();
    serving.await.context("the server task failed")??;
    if let Some(ops) = ops {
        ops.await.context("the metrics task failed")??;
    }
    cluster.close().await;
    Ok(())
}
