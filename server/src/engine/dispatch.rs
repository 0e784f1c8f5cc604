//! Routes one HTTP request to a handshake, a poll, a post or a websocket, after socket.io's checks.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use switchboard_protocol::engineio::Encoded;

use super::cors;
use super::error::RequestError;
use super::session::{Session, Transport};
use super::{Engine, HandshakeRequest, Sid, polling, ws};
use crate::body::Body;

/// The query parameters Engine.IO reads.
#[derive(Default)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match &*k {
                "EIO" => &mut q.eio,
                "transport" => &mut q.transport,
                "sid" => &mut q.sid,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        q
    }
}

impl Engine {
    /// Answers one request under the Engine.IO path.
    pub async fn handle(&self, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let cors = self.shared.config.cors.as_ref();
        if let (Some(cors), true) = (cors, req.method() == Method::OPTIONS) {
            return cors::preflight(cors, origin.as_ref(), req.headers());
        }
        let mut response = self.route(req, remote_addr).await.unwrap_or_else(|(e, msg)| {
            tracing::debug!(error = %e, "engine.io request refused");
            self.shared.metrics.handshake_error(e.code());
            e.response(msg.as_deref())
        });
        if let Some(cors) = cors {
            cors::apply(cors, origin.as_ref(), response.headers_mut());
        }
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        remote_addr: SocketAddr,
    ) -> Result<Response<Body>, (RequestError, Option<String>)> {
        let config = &self.shared.config;
        let q = Query::parse(req.uri().query());
        let transport = match q.transport.as_deref() {
            Some("polling") if config.transports.polling => Transport::Polling,
            Some("websocket") if config.transports.websocket => Transport::WebSocket,
            _ => return Err((RequestError::TransportUnknown, None)),
        };
        let is_upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
        if let (Some(cors), true) = (&config.cors, is_upgrade) {
            if !cors::allows_websocket(cors, req.headers().get(header::ORIGIN)) {
                return Err((RequestError::Forbidden, Some("Origin not allowed".to_owned())));
            }
        }

        if let Some(sid) = q.sid {
            let session = self.session(&sid).ok_or((RequestError::UnknownSid, None))?;
            return match (transport, is_upgrade) {
                (Transport::WebSocket, true) if config.allow_upgrades => {
                    ws::upgrade(self, req, session).map_err(|e| (e, None))
                }
                (Transport::Polling, false) => self.polling_request(req, session).await,
                _ => Err((RequestError::BadRequest, None)),
            };
        }

        if req.method() != Method::GET {
            return Err((RequestError::BadHandshakeMethod, None));
        }
        if self.is_refusing_handshakes() {
            return Err((RequestError::ShuttingDown, None));
        }
        if q.eio.as_deref() != Some("4") {
            return Err((RequestError::UnsupportedProtocolVersion, None));
        }
        if (transport == Transport::WebSocket) != is_upgrade {
            return Err((RequestError::BadRequest, None));
        }
        let request = HandshakeRequest::detached(&req, remote_addr);
        if let Some(allow) = &config.allow_request {
            if let Err(message) = allow(&request).await {
                return Err((RequestError::Forbidden, Some(message)));
            }
        }
        match transport {
            Transport::Polling => Ok(self.polling_handshake(request)),
            Transport::WebSocket => ws::handshake(self, req, request).map_err(|e| (e, None)),
        }
    }

    async fn polling_request(
        &self,
        req: Request<Incoming>,
        session: Arc<Session>,
    ) -> Result<Response<Body>, (RequestError, Option<String>)> {
        let config = &self.shared.config;
        match *req.method() {
            Method::GET => {
                self.shared.metrics.polling_gets.inc();
                let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
                polling::get(&session, accept.as_ref(), config.http_compression_threshold).await
            }
            Method::POST => {
                self.shared.metrics.polling_posts.inc();
                polling::post(&session, req, config.max_http_buffer_size, config.body_timeout()).await
            }
            _ => Err(RequestError::BadRequest),
        }
        .map_err(|e| (e, None))
    }

    /// Creates a session on `transport` and tells the handler; the caller sends the open packet.
    pub(crate) fn open_session(
        &self,
        request: HandshakeRequest,
        transport: Transport,
    ) -> (Arc<Session>, Bytes) {
        let shared = &self.shared;
        let sid = Sid::generate(&shared.config.node_id);
        let session = Arc::new(Session::new(self.next_session_id(), sid.clone(), request, transport, shared));
        let upgrades: &[&str] = if transport == Transport::Polling
            && shared.config.allow_upgrades
            && shared.config.transports.websocket
        {
            &["websocket"]
        } else {
            &[]
        };
        let open = serde_json::json!({
            "sid": sid.as_str(),
            "upgrades": upgrades,
            "pingInterval": shared.config.ping_interval.as_millis() as u64,
            "pingTimeout": shared.config.ping_timeout.as_millis() as u64,
            "maxPayload": shared.config.max_http_buffer_size,
        });
        let mut packet = Vec::with_capacity(160);
        packet.push(b'0');
        packet.extend_from_slice(open.to_string().as_bytes());
        if transport == Transport::WebSocket {
            // The open packet must be the websocket's first frame, before anything the handler sends.
            let _ = session.send(Encoded::Text(Bytes::from(packet.clone())));
        }
        let metrics = transport.metrics(&shared.metrics);
        metrics.accepted.inc();
        metrics.sessions.inc();
        shared.sessions.insert(sid, session.clone());
        shared.heartbeat.watch(session.clone());
        tracing::debug!(sid = %session.sid(), transport = ?transport, "session opened");
        shared.handler.on_open(&session);
        (session, Bytes::from(packet))
    }

    fn polling_handshake(&self, request: HandshakeRequest) -> Response<Body> {
        let (session, open) = self.open_session(request, Transport::Polling);
        let mut response = polling::text_response(open);
        self.set_cookie(&session, response.headers_mut());
        response
    }

    /// Adds the sticky-session cookie when configured.
    pub(crate) fn set_cookie(&self, session: &Session, headers: &mut http::HeaderMap) {
        if let Some(cookie) = &self.shared.config.cookie {
            if let Ok(v) = header::HeaderValue::from_str(&cookie.header_value(session.sid().as_str())) {
                headers.insert(header::SET_COOKIE, v);
            }
        }
    }
}
