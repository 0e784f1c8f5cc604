//! `socket.handshake`: what the client presented when it joined a namespace.
//!
//! The HTTP part (headers, query, address) is the engine session's request, shared, not copied:
//! every socket of a connection sees the same one. Its JSON form is what fetchSockets ships to
//! other nodes through the broker: without the credential headers unless the application asked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::engine::HandshakeRequest;

/// Request headers that carry credentials: left out of [`Handshake::to_json`] (what other nodes
/// see) unless [`SocketIoConfig::with_fetch_sockets_credentials`](super::SocketIoConfig::with_fetch_sockets_credentials).
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// The handshake details socket.io exposes as `socket.handshake`.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The `auth` object the client sent with its CONNECT (`{}` if none).
    pub auth: serde_json::Map<String, serde_json::Value>,
    /// When the namespace connection was made, in ms since the Unix epoch.
    pub issued: u64,
    request: Arc<HandshakeRequest>,
    /// Whether [`Handshake::to_json`] keeps the credential headers.
    credentials: bool,
}

impl Handshake {
    pub(crate) fn new(
        request: Arc<HandshakeRequest>,
        auth: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        let issued = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Self { auth, issued, request, credentials: false }
    }

    /// Keeps (`true`) or leaves out the credential headers from [`Handshake::to_json`].
    pub(crate) fn with_credentials(mut self, keep: bool) -> Self {
        self.credentials = keep;
        self
    }

    /// Request headers of the Engine.IO handshake (built on each call; [`Self::header`] is cheaper).
    pub fn headers(&self) -> HeaderMap {
        self.request.headers()
    }

    /// The first value of one request header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.request.header(name)
    }

    /// First value of a query parameter of the Engine.IO handshake.
    pub fn query(&self, name: &str) -> Option<String> {
        self.request.query(name)
    }

    /// Peer address.
    pub fn address(&self) -> SocketAddr {
        self.request.remote_addr
    }

    /// Request URL (path and query).
    pub fn url(&self) -> String {
        self.request.uri.to_string()
    }

    /// The handshake as JSON, as socket.io serializes it for fetchSockets, without the `Cookie`
    /// and `Authorization` headers unless
    /// [`SocketIoConfig::with_fetch_sockets_credentials`](super::SocketIoConfig::with_fetch_sockets_credentials)
    /// keeps them ([`Handshake::header`] always has them).
    pub fn to_json(&self) -> serde_json::Value {
        let mut headers: BTreeMap<&str, String> = BTreeMap::new();
        let map = self.headers();
        for (name, value) in &map {
            if !self.credentials && CREDENTIAL_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(self.request.uri.query().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        serde_json::json!({
            "headers": headers,
            "query": query,
            "auth": self.auth,
            "address": self.address().ip().to_string(),
            "issued": self.issued,
            "url": self.url(),
        })
    }
}
