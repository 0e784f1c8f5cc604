//! The HTTP server API a backend drives the cluster with, on its own listener (`--api-port`):
//! `Authorization: Bearer <api key>` (each key rate-limited on its own), JSON in and out, each endpoint a cluster-wide operation of
//! the Socket.IO server (`endpoints.rs`) on fields checked one by one (`fields.rs`), so a bad
//! request is a 400 that names its field. docs/gateway.md is the contract.

mod endpoints;
mod fields;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;

use super::config::GatewayConfig;
use super::metrics::GatewayMetrics;
use crate::body::Body;
use crate::socketio::SocketIo;

/// How long a request's head may take to arrive (and an idle keep-alive connection may stay).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The API's OpenAPI document (docs/gateway-openapi.json), served at [`OPENAPI_PATH`] without a key.
pub const OPENAPI: &str = include_str!("../../../../docs/gateway-openapi.json");
/// Where [`OPENAPI`] is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The most API connections served at once; more wait in the listen backlog. A backend keeps a
/// few pooled connections per process.
pub const MAX_CONNECTIONS: usize = 1024;

/// An API answer other than 200: its status, a code, the field at fault and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// The request field at fault, for a 400.
    pub field: Option<String>,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// A 400 for `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, field: None, message: message.into() }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let (Some(field), Some(map)) = (&self.field, error.as_object_mut()) {
            map.insert("field".into(), field.clone().into());
        }
        serde_json::json!({ "error": error })
    }
}

/// The API's state, shared by its connections.
pub struct Api {
    io: SocketIo,
    keys: Vec<String>,
    /// One per key, same order: a leaked or runaway key cannot starve the others.
    limits: Vec<DefaultDirectRateLimiter>,
    max_body_bytes: usize,
    namespaces: Vec<String>,
    metrics: GatewayMetrics,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("namespaces", &self.namespaces).finish_non_exhaustive()
    }
}

impl Api {
    /// An API over `io` with `config`'s keys and bounds, for the `namespaces` the gateway serves.
    pub fn new(
        io: SocketIo,
        config: &GatewayConfig,
        namespaces: Vec<String>,
        metrics: GatewayMetrics,
    ) -> Self {
        let quota = Quota::per_second(config.api_rate_limit);
        Self {
            io,
            keys: config.api_keys.clone(),
            limits: config.api_keys.iter().map(|_| RateLimiter::direct(quota)).collect(),
            max_body_bytes: config.api_max_body_bytes,
            namespaces,
            metrics,
        }
    }

    /// Serves `listener` until the process ends, at most [`MAX_CONNECTIONS`] at once.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let api = self.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.respond(req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "api: connection ended with an error");
                }
                drop(slot);
            });
        }
    }

    async fn respond(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path == OPENAPI_PATH && req.method() == Method::GET {
            self.metrics.api_requests.with_label_values(&[OPENAPI_PATH, "200"]).inc();
            return json_response(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes()));
        }
        let endpoint = endpoints::ENDPOINTS.iter().copied().find(|e| *e == path).unwrap_or("other");
        let (status, body) = match self.handle(req, &path).await {
            Ok(answer) => (StatusCode::OK, answer),
            Err(error) => (error.status, error.to_json()),
        };
        self.metrics.api_requests.with_label_values(&[endpoint, status.as_str()]).inc();
        let mut response = json_response(status, Bytes::from(body.to_string()));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    async fn handle(&self, req: Request<Incoming>, path: &str) -> Result<serde_json::Value, ApiError> {
        let key = self.authorize(&req)?;
        if self.limits.get(key).is_some_and(|limit| limit.check().is_err()) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "over api-rate-limit requests per second for this key",
            ));
        }
        if !endpoints::ENDPOINTS.contains(&path) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no endpoint {path}")));
        }
        if req.method() != Method::POST {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST"));
        }
        let body = self.read_body(req).await?;
        let fields = fields::Fields::parse(&body)?;
        endpoints::call(self, path, fields).await
    }

    /// Checks the bearer key against every configured key, in constant time for each: the index of
    /// the one it is.
    fn authorize(&self, req: &Request<Incoming>) -> Result<usize, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <an api-keys entry>",
            )
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let mut found = None;
        for (i, key) in self.keys.iter().enumerate() {
            if bool::from(key.as_bytes().ct_eq(given.trim().as_bytes())) {
                found = Some(i);
            }
        }
        found.ok_or_else(unauthorized)
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {} bytes", self.max_body_bytes),
            )
        };
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let read = Limited::new(req.into_body(), self.max_body_bytes).collect();
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(Ok(body)) => Ok(body.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(_)) | Err(_) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "the body did not arrive whole"))
            }
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_endpoint_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let paths = doc.get("paths").and_then(serde_json::Value::as_object).cloned().unwrap_or_default();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut served: Vec<&str> = endpoints::ENDPOINTS.iter().copied().chain([OPENAPI_PATH]).collect();
        documented.sort_unstable();
        served.sort_unstable();
        assert_eq!(documented, served);
    }
}
