//! A node assembled from its options: the engine and the application on it (Socket.IO with the
//! cluster adapter, or plain Engine.IO), the cluster link, the HTTP server with request forwarding
//! and the operator endpoints, and the drain on SIGTERM. The `switchboard` binary parses its
//! command line into [`NodeOptions`] and calls [`run`].

pub mod app;
pub mod config_file;
pub mod log;
pub mod options;
pub mod signal;

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use tokio_util::sync::CancellationToken;

pub use app::App;
pub use options::{AdapterKind, NodeOptions, OptionsError};

use crate::admin::Admin;
use crate::cluster::{Cluster, SetupError};
use crate::engine::Engine;
use crate::http::{Body, Fallback, Forwarder, Server};
use crate::metrics::Registry;
use crate::socketio::SocketIo;
use app::Layer;

/// Why a node could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// An option was refused before anything started.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The public port or the metrics port could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// `host:port`, and which port it is when it is not the public one.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The broker refused the settings, the credentials or the certificates.
    #[error("cannot join the cluster with --adapter {adapter}")]
    Cluster {
        /// `--adapter`.
        adapter: &'static str,
        /// Why.
        source: SetupError,
    },
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Serve(#[from] std::io::Error),
    /// A server task panicked.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How long a draining node waits for its recovery sessions to reach the broker.
const DRAIN_SAVE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a node until SIGTERM or SIGINT, then drains it and leaves the cluster.
pub async fn run(options: NodeOptions, app: App) -> Result<(), NodeError> {
    NodeOptions::check_renamed(|name| std::env::var(name).ok())?;
    let config = options.engine_config()?;
    let admin_config = options.admin_config()?;
    if admin_config.is_some() && !app.uses_cluster() {
        return Err(OptionsError::Admin(format!(
            "--admin-ui needs a Socket.IO app, and --app {} is not one",
            app.name
        ))
        .into());
    }
    let drain = options.drain();
    let backend = options.backend(app.uses_cluster());
    let listen = |port: u16, what: &str| {
        let host = options.host.clone();
        let what = what.to_owned();
        async move {
            crate::http::bind(&host, port)
                .await
                .map_err(|source| NodeError::Listen { address: format!("{host}:{port}{what}"), source })
        }
    };
    let listener = listen(options.port, "").await?;
    // Forwarding finds owners through the native format's heartbeats: the in-memory adapter has no
    // peers and Node's format no membership, so neither forwards (and neither logs an address).
    let forwarding = options.forward_polling
        && !matches!(backend, crate::cluster::Backend::Memory | crate::cluster::Backend::RedisNode { .. });
    let advertised = match forwarding {
        false => None,
        true => Some(match options.advertise_address()? {
            Some(address) => address.to_owned(),
            None => crate::http::forward::advertise_address(listener.local_addr()?).to_string(),
        }),
    };
    let cluster_config = options.cluster_config(config.node_id(), advertised.as_deref())?;
    let broker_auth = options.broker_auth()?;
    let cluster = Arc::new(
        Cluster::join(&backend, &options.cluster_prefix, cluster_config, &broker_auth)
            .await
            .map_err(|source| NodeError::Cluster { adapter: options.adapter.name(), source })?,
    );
    cluster.spawn_health_log();
    let registry = Registry::new();
    // Kept until the node stops: dropping it stops the admin UI's reports.
    let admin = admin_config.map(Admin::new);
    // With recovery on, where its sessions and log are kept in the broker (Redis).
    let recovery_stores = cluster.session_stores().filter(|_| options.connection_state_recovery);
    let engine = match app.layer {
        Layer::Engine(handler) => Engine::with_registry(config, handler, registry),
        Layer::SocketIo(install) => {
            let factory = match &admin {
                Some(admin) => admin.adapter_factory(cluster.adapter_factory()),
                None => cluster.adapter_factory(),
            };
            let io = SocketIo::with_registry(
                config,
                options.socketio_config(recovery_stores.clone())?.with_adapter(factory),
                registry,
            );
            install(&io);
            if let Some(admin) = &admin {
                admin.install(&io);
            }
            io.engine().clone()
        }
    };
    tracing::info!(
        address = %listener.local_addr()?,
        node_id = engine.config().node_id(),
        app = app.name,
        adapter = cluster.backend_name(),
        forwarding = advertised.as_deref().unwrap_or("off"),
        version = crate::version::VERSION,
        commit = crate::version::COMMIT,
        "switchboard listening"
    );
    cluster.register_metrics(engine.registry())?;
    register_process_metrics(engine.registry());
    let server = Server::new(engine.clone());
    let forwarder = cluster.locator().filter(|_| forwarding).map(|locate| {
        let config = engine.config();
        // A long poll is held up to the ping interval; its owner answers well within this.
        let answer_timeout = config.ping_interval() + config.ping_timeout();
        // An owner's answer to a poll: at most its queue bound plus one packet (twice, for the
        // base64 of binary); more is not an Engine.IO answer.
        let max_answer = config.max_queue_bytes() + 2 * config.max_http_buffer_size();
        Forwarder::new(config.node_id(), locate, answer_timeout, server.metrics().forwarded.clone())
            .with_max_answer(max_answer)
    });
    // Readiness is the node's own: a node without its broker still serves its clients, so
    // taking it out of the balancer would only move them. The outage shows in
    // switchboard_adapter_connected (alerted on) and the log.
    let server = server
        .with_forwarder(forwarder)
        .with_fallback(index_page(app.page, admin.is_some()))
        .with_public_metrics(options.metrics_port.is_none());
    let signal = signal::on_signal();
    let stop = CancellationToken::new();
    let ops = match options.metrics_port {
        Some(port) => {
            let listener = listen(port, " (--metrics-port)").await?;
            tracing::info!(address = %listener.local_addr()?, "metrics, healthz and readyz listening");
            Some(tokio::spawn(server.clone().serve_ops(listener, stop.clone())))
        }
        None => None,
    };
    let mut serving = tokio::spawn(server.clone().serve(listener, stop.clone()));
    tokio::select! {
        () = signal.cancelled() => {}
        // The server only ends on its own when something broke.
        ended = &mut serving => return Ok(ended??),
    }
    tokio::select! {
        () = async {
            server.drain(drain).await;
            // The drain closed the sockets, which queued their sessions for recovery: write them
            // before the node goes, so their clients are restored on the nodes that stay.
            if let Some(stores) = &recovery_stores {
                if tokio::time::timeout(DRAIN_SAVE, stores.flush()).await.is_err() {
                    tracing::warn!("recovery sessions not all saved within {DRAIN_SAVE:?}");
                }
            }
        } => {}
        () = signal::signal() => tracing::warn!("second signal: skipping the rest of the drain"),
    }
    stop.cancel();
    serving.await??;
    if let Some(ops) = ops {
        ops.await??;
    }
    cluster.close().await;
    Ok(())
}

/// `process_*` (CPU, RSS, open files, threads, start time), read from `/proc` at each scrape: what
/// an operator compares with the container's limits. A platform without `/proc` exports none.
fn register_process_metrics(registry: &Registry) {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(e) = registry.register(Box::new(collector)) {
        tracing::warn!(error = %e, "process metrics not registered");
    }
}

/// `GET /` answers `page`, and `/admin/…` the admin UI when it is on; everything else outside
/// Engine.IO is 404.
fn index_page(page: &'static str, admin_ui: bool) -> Fallback {
    Arc::new(move |req| {
        Box::pin(async move {
            if admin_ui
                && let Some(response) =
                    crate::admin::ui::response(req.uri().path(), req.headers().get(header::IF_NONE_MATCH))
            {
                return response;
            }
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
