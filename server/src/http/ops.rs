//! The operator's endpoints: `/healthz` (the process answers), `/readyz` (it should get new
//! clients: it is not draining, and an extra check, if the server was given one, holds) and
//! `/metrics` (Prometheus text). The node gives no extra check: a broker outage leaves it ready. They are answered from atomics and counters only, never by waiting on the adapter, so a
//! broker outage cannot make a probe hang.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Body, Server};

/// Extra readiness condition for a library user's server; must be cheap and not block. The node
/// sets none (a broker outage is not a reason to take a node out of the balancer).
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Server {
    /// Whether `/readyz` would answer 200 now (updates the `switchboard_ready` gauge).
    pub fn is_ready(&self) -> bool {
        let ready =
            !self.engine.is_refusing_handshakes() && self.ready_check.as_ref().is_none_or(|check| check());
        self.metrics.ready.set(i64::from(ready));
        ready
    }

    /// The answer to an operator path, or `None` for any other path. `metrics` says whether
    /// `/metrics` is served on this listener.
    pub(crate) fn ops_response(&self, path: &str, metrics: bool) -> Option<Response<Body>> {
        match path {
            "/healthz" => Some(text(StatusCode::OK, "ok\n")),
            "/readyz" => Some(match (self.is_ready(), self.engine.is_refusing_handshakes()) {
                (true, _) => text(StatusCode::OK, "ready\n"),
                (false, true) => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
                (false, false) => text(StatusCode::SERVICE_UNAVAILABLE, "adapter disconnected\n"),
            }),
            "/metrics" if metrics => {
                self.is_ready();
                let mut r =
                    Response::new(Body::new(Bytes::from(crate::metrics::render(self.engine.registry()))));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                Some(r)
            }
            _ => None,
        }
    }

    /// Serves only `/healthz`, `/readyz` and `/metrics` on `listener` (the `--metrics-port`, kept
    /// off the public port), until `shutdown` is cancelled.
    pub async fn serve_ops(self, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let tracker = self.accept(listener, &shutdown, true).await;
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
