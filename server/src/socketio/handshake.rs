//! `socket.handshake`: what the client presented when it joined a namespace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::HandshakeRequest;

/// The handshake details socket.io exposes as `socket.handshake`.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Request headers (lower-case names; repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Query parameters of the Engine.IO handshake.
    pub query: BTreeMap<String, String>,
    /// The `auth` object the client sent with its CONNECT (`{}` if none).
    pub auth: serde_json::Map<String, serde_json::Value>,
    /// Peer address.
    pub address: SocketAddr,
    /// When the namespace connection was made, in ms since the Unix epoch.
    pub issued: u64,
    /// Request URL (path and query).
    pub url: String,
}

impl Handshake {
    pub(crate) fn new(request: &HandshakeRequest, auth: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let query = form_urlencoded::parse(request.uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let issued = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Self { headers, query, auth, address: request.remote_addr, issued, url: request.uri.to_string() }
    }

    /// The handshake as JSON, as socket.io serializes it for fetchSockets.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "headers": self.headers,
            "query": self.query,
            "auth": self.auth,
            "address": self.address.ip().to_string(),
            "issued": self.issued,
            "url": self.url,
        })
    }
}
