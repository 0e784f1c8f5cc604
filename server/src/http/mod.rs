//! The HTTP/1.1 front door: accepts connections, passes requests for other nodes' sessions to
//! their owner ([`forward`]), sends Engine.IO's path to the engine, serves the client bundle and
//! the operator's endpoints ([`ops`]), the rest to an optional fallback (the demo page), and
//! drains connections on shutdown.

pub mod client_bundle;
pub mod forward;
pub mod metrics;
mod ops;

pub use crate::body::Body;
pub use forward::Forwarder;
pub use metrics::HttpMetrics;
pub use ops::ReadyCheck;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{ClientStream, CloseReason, Engine, cors};

/// Future of a fallback response.
pub type FallbackFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Answers requests outside the Engine.IO path (a demo page, health checks); 404 when absent.
pub type Fallback = Arc<dyn Fn(Request<Incoming>) -> FallbackFuture + Send + Sync>;

/// Pending-connection queue of the listener: the OS default (128 here) drops SYNs when a few
/// hundred clients reconnect at once, as they do after a node restarts; Node listens with 511.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Keepalive on accepted connections: the first probe after this much silence...
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// ...then one probe every this long...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// ...and the connection ends after this many unanswered probes (60 s + 3 × 10 s = 90 s).
pub const KEEPALIVE_PROBES: u32 = 3;
/// How long data the kernel sent may stay unacknowledged before it gives the connection up
/// (`TCP_USER_TIMEOUT`): past the heartbeat's 45 s by default, so a live but slow client is
/// closed by Engine.IO first, while what a vanished peer never took is freed within a minute
/// instead of after the host's ~15 minutes of retransmissions (memory a pod pays for).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Binds a listener with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a restarted node gets its port
/// back). Keepalive ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_PROBES`]) and
/// [`TCP_USER_TIMEOUT`] are set on the listener, which accepted sockets inherit (Linux): the
/// kernel then ends connections to hosts that vanished without a FIN (a half-open connection
/// would otherwise hold its task and buffers for ever) and frees what such a peer never took.
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_keepalive(true)?;
        let sock = socket2::SockRef::from(&socket);
        sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(KEEPALIVE_IDLE)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(KEEPALIVE_PROBES),
        )?;
        sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")))
}

fn not_found() -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(b"Not Found")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// How long shutdown waits for open HTTP connections after the sessions were closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request head may take to arrive, counted from when the connection is ready for
/// one (so it also ends idle keep-alive connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP server for one engine.
#[derive(Clone)]
pub struct Server {
    engine: Engine,
    fallback: Option<Fallback>,
    serve_client: bool,
    ready_check: Option<ReadyCheck>,
    public_metrics: bool,
    forwarder: Option<Forwarder>,
    metrics: HttpMetrics,
}

impl Server {
    /// Serves `engine` on its path and 404 elsewhere; registers the HTTP layer's metrics in the
    /// engine's registry (build one `Server` per engine).
    pub fn new(engine: Engine) -> Self {
        Self {
            metrics: HttpMetrics::register(engine.registry()),
            engine,
            fallback: None,
            serve_client: true,
            ready_check: None,
            public_metrics: true,
            forwarder: None,
        }
    }

    /// Passes requests for sessions of other nodes to their owners (`--forward-polling`), so a
    /// balancer without sticky sessions works; default off (such requests get a 400). Build the
    /// forwarder with this server's [`metrics`](Self::metrics)' `forwarded` counters.
    pub fn with_forwarder(mut self, forwarder: Option<Forwarder>) -> Self {
        self.forwarder = forwarder;
        self
    }

    /// An extra condition for `/readyz` (default none: ready unless draining), for a program that
    /// embeds the library and must not take clients before something of its own is up. The binary
    /// sets none: a node without its broker still serves its own clients.
    pub fn with_ready_check(mut self, check: ReadyCheck) -> Self {
        self.ready_check = Some(check);
        self
    }

    /// Whether the public listener answers `/metrics` (default true); turn it off when the
    /// metrics have a port of their own ([`Server::serve_ops`]), so they are not public.
    pub fn with_public_metrics(mut self, on: bool) -> Self {
        self.public_metrics = on;
        self
    }

    /// Drains before exit: `/readyz` turns 503 and new handshakes are refused at once, then the
    /// open sessions are closed in batches spread over `window` (see [`Engine::drain`]).
    pub async fn drain(&self, window: Duration) {
        self.metrics.draining.set(1);
        self.metrics.ready.set(0);
        self.engine.drain(window).await;
    }

    /// Whether to serve the official client bundle under the Engine.IO path (`socket.io.js`, …);
    /// default true, as socket.io's `serveClient`.
    pub fn with_serve_client(mut self, on: bool) -> Self {
        self.serve_client = on;
        self
    }

    /// Serves other paths with `fallback`.
    pub fn with_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// The engine behind this server.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The HTTP layer's metrics.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    async fn respond(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if self.engine.matches_path(path) {
            let req = match &self.forwarder {
                Some(forwarder) => match self.forward(forwarder, req, remote).await {
                    Ok(response) => return response,
                    Err(req) => req,
                },
                None => req,
            };
            return self.engine.handle(req, remote).await;
        }
        if let Some(response) = self.ops_response(path, self.public_metrics) {
            return response;
        }
        if self.serve_client {
            let mount = self.engine.config().path();
            if let Some(name) = path.strip_prefix(mount) {
                let etag = req.headers().get(http::header::IF_NONE_MATCH);
                if let Some(response) = client_bundle::response(name, etag) {
                    return response;
                }
            }
        }
        match &self.fallback {
            Some(fallback) => fallback(req).await,
            None => not_found(),
        }
    }

    /// Forwards `req` when its sid names a session of another node; otherwise hands it back.
    async fn forward(
        &self,
        forwarder: &Forwarder,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Result<Response<Body>, Request<Incoming>> {
        // A CORS preflight carries no session state: it is answered here.
        if req.method() == http::Method::OPTIONS {
            return Err(req);
        }
        // Borrowed while deciding: a request for a local session (the usual case) allocates nothing.
        let sid = req
            .uri()
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "sid").map(|(_, v)| v))
            .filter(|sid| forwarder.wants(&req, sid) && self.engine.session(sid).is_none())
            .map(std::borrow::Cow::into_owned);
        match sid {
            Some(sid) => {
                let origin = req.headers().get(http::header::ORIGIN).cloned();
                let mut response = forwarder.forward(req, &sid, remote).await?;
                // The owner's answers carry its CORS headers; the 400 of a failed forward is
                // made here and needs them too, or a browser cannot read it.
                let headers = response.headers_mut();
                if let Some(cors) = self.engine.config().cors.as_ref() {
                    if !headers.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                        cors::apply(cors, origin.as_ref(), headers);
                    }
                }
                Ok(response)
            }
            _ => Err(req),
        }
    }

    /// Accepts connections until `shutdown` is cancelled, then closes every session and drains.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let tracker = self.clone().accept(listener, &shutdown, false).await;
        self.engine.close_all(CloseReason::ServerShuttingDown);
        tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the drain timeout");
        }
        Ok(())
    }

    /// The accept loop shared by the public listener and the metrics port (`ops_only`: answers
    /// only `/healthz`, `/readyz` and `/metrics`); returns the connections still running once
    /// `shutdown` is cancelled (each is asked to finish gracefully).
    async fn accept(
        self,
        listener: TcpListener,
        shutdown: &CancellationToken,
        ops_only: bool,
    ) -> TaskTracker {
        let tracker = TaskTracker::new();
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning; the listener stays up.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => return tracker,
            };
            let _ = stream.set_nodelay(true);
            let config = self.engine.config();
            let stream = ClientStream::new(stream, config.write_timeout());
            let max_header_size = config.max_header_size();
            let server = self.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                async move {
                    let response = if ops_only {
                        server.ops_response(req.uri().path(), true).unwrap_or_else(not_found)
                    } else {
                        server.respond(req, remote).await
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            // A head larger than the limit is answered 431 and the connection closed; one that
            // trickles is cut off by the read timeout, which also ends idle keep-alive connections.
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_header_size(max_header_size)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let stop = shutdown.clone();
            tracker.spawn(async move {
                tokio::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
            });
        }
    }
}
