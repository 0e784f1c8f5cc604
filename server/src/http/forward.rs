//! Request forwarding: a polling request or websocket upgrade for a session another node owns goes
//! to that node, so a balancer without sticky sessions (round robin, a Kubernetes Service without
//! affinity) still works.
//!
//! - The owner is the node named by the sid's prefix; its address comes from cluster membership
//!   (every node announces `--advertise-address` with its heartbeats).
//! - One hop: a forwarded request carries [`FORWARDED_HEADER`], and a node never forwards a
//!   request that has it, so a loop is impossible (a sid unknown at the owner is a plain 400).
//! - An owner that is unknown, gone or unreachable gets the client the same clean 400
//!   `{"code":1,"message":"Session ID unknown"}` a sticky setup would give, so the client
//!   reconnects instead of hanging: at once when no live node has that id, within
//!   [`CONNECT_TIMEOUT`] when its address refuses or does not accept connections, and when it
//!   accepted but does not answer, after [`SHORT_ANSWER`] (a POST or an upgrade) or the long-poll
//!   limit (a GET, which the owner may hold up to the ping interval). Pooled connections use TCP
//!   keepalive, so a vanished host is noticed too.
//! - Polling requests travel over a pool of keep-alive connections per owner; a websocket upgrade
//!   gets a connection of its own, spliced to the client's once both sides switched protocols.
//! - What a peer announces is not trusted further than needed: an address is dialed only if it is
//!   `host:port` ([`is_valid_address`]: no scheme, user info, path, query or fragment), and an
//!   owner's answer is read up to [`Forwarder::with_max_answer`] bytes (a larger one is a failed
//!   forward), so a forged address cannot make a node fetch a URL, nor an answer fill its memory.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use switchboard_adapter::cluster::directory::is_valid_address;

use super::Body;
use super::metrics::ForwardMetrics;
use crate::cluster::Locate;
use crate::engine::RequestError;

/// Marks a request one node passed to another (the value is the forwarding node's id).
pub const FORWARDED_HEADER: &str = "x-switchboard-forwarded";

/// How long a forwarding node tries to reach an owner before the client gets its 400.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an owner may take to answer what it answers at once (a POST, a websocket upgrade).
pub const SHORT_ANSWER: Duration = Duration::from_secs(5);

/// Default of [`Forwarder::with_max_answer`]: 8 MiB.
pub const DEFAULT_MAX_ANSWER: usize = 8 << 20;

/// Forwards requests for other nodes' sessions (see the module docs); cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    node_id: HeaderValue,
    locate: Locate,
    client: Client<HttpConnector, Incoming>,
    /// Longest wait for an owner's answer: a long-poll GET is held up to the ping interval.
    answer_timeout: Duration,
    /// Largest answer body read from an owner.
    max_answer: usize,
    metrics: ForwardMetrics,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// Headers that describe one connection, not the request: never passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

impl Forwarder {
    /// Forwards for node `node_id`, finding owners with `locate`; owners are given up on after
    /// `answer_timeout` without an answer (set it above the ping interval).
    pub fn new(node_id: &str, locate: Locate, answer_timeout: Duration, metrics: ForwardMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(10)));
        // Below the owner's 30 s idle-connection close (its header read timeout), so a pooled
        // connection is never reused just as the owner closes it.
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(15)).build(connector);
        let node_id = HeaderValue::from_str(node_id).unwrap_or_else(|_| HeaderValue::from_static("node"));
        Self { node_id, locate, client, answer_timeout, max_answer: DEFAULT_MAX_ANSWER, metrics }
    }

    /// Largest answer body, in bytes, read from an owner; default 8 MiB. A larger answer is a
    /// failed forward (the client gets the 400 and reconnects). An owner's polling answer holds
    /// at most its queue (`max_queue_bytes`, 1 MiB by default) plus one packet (up to
    /// `maxHttpBufferSize`, base64 for binary): keep it above that if those are raised.
    pub fn with_max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes;
        self
    }

    /// Whether `req` (for session `sid`, not open here) should go to its owner: the sid names
    /// another node and no node forwarded it already.
    pub fn wants(&self, req: &Request<Incoming>, sid: &str) -> bool {
        let Some((owner, _)) = sid.split_once(crate::engine::sid::NODE_SEPARATOR) else { return false };
        owner.as_bytes() != self.node_id.as_bytes() && !req.headers().contains_key(FORWARDED_HEADER)
    }

    /// Passes `req` (for session `sid`) to its owner and returns the owner's answer; a request
    /// whose owner is not known (no live node with an address) comes back unanswered, for the
    /// engine to refuse as its own.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        sid: &str,
        remote: SocketAddr,
    ) -> Result<Response<Body>, Request<Incoming>> {
        let upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
        let counters = if upgrade { &self.metrics.websocket } else { &self.metrics.polling };
        let owner = sid.split_once(crate::engine::sid::NODE_SEPARATOR).map_or(sid, |(node, _)| node);
        let Some(address) = (self.locate)(owner) else {
            counters.unknown_owner.inc();
            return Err(req);
        };
        // The directory records only such addresses; checked again where it is dialed.
        if !is_valid_address(&address) {
            counters.failed.inc();
            tracing::warn!(owner, address = %address.escape_debug(), "not forwarding to an address that is not host:port");
            return Ok(RequestError::UnknownSid.response(None));
        }
        let result = if upgrade {
            self.upgrade(req, &address, remote).await
        } else {
            self.request(req, &address, remote).await
        };
        match result {
            Ok(response) => {
                counters.ok.inc();
                Ok(response)
            }
            Err(e) => {
                counters.failed.inc();
                tracing::warn!(error = %e, owner, %address, "forwarding to the session's owner failed");
                Ok(RequestError::UnknownSid.response(None))
            }
        }
    }

    /// A polling GET or POST: over the pooled client, the answer read whole, up to `max_answer`.
    async fn request(
        &self,
        req: Request<Incoming>,
        address: &str,
        remote: SocketAddr,
    ) -> Result<Response<Body>, ForwardError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = owner_uri(address, &parts.uri)?;
        self.mark(&mut parts.headers, remote, false);
        // Only a GET may be held by the owner (up to the ping interval).
        let limit = if parts.method == http::Method::GET { self.answer_timeout } else { SHORT_ANSWER };
        let send = self.client.request(Request::from_parts(parts, body));
        let response = tokio::time::timeout(limit, send)
            .await
            .map_err(|_| ForwardError::Timeout)?
            .map_err(|e| ForwardError::Http(e.to_string()))?;
        let (mut parts, body) = response.into_parts();
        let body = self.read_answer(body, limit).await?;
        strip_hop_by_hop(&mut parts.headers, false);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// An owner's answer body, whole: at most `max_answer` bytes, within `limit`.
    async fn read_answer(&self, body: Incoming, limit: Duration) -> Result<Bytes, ForwardError> {
        let max = self.max_answer;
        let declared = hyper::body::Body::size_hint(&body).lower();
        if usize::try_from(declared).map_or(true, |n| n > max) {
            return Err(ForwardError::TooLarge { max });
        }
        tokio::time::timeout(limit, Limited::new(body, max).collect())
            .await
            .map_err(|_| ForwardError::Timeout)?
            .map(|b| b.to_bytes())
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => ForwardError::TooLarge { max },
                Err(e) => ForwardError::Http(e.to_string()),
            })
    }

    /// A websocket upgrade: its own connection to the owner; once the owner switches protocols,
    /// the client gets the owner's 101 and the two connections are spliced until either ends.
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        address: &str,
        remote: SocketAddr,
    ) -> Result<Response<Body>, ForwardError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ForwardError::Timeout)?
            .map_err(|e| ForwardError::Http(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| ForwardError::Http(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "forwarded websocket connection to the owner ended");
            }
        });
        let client_side = hyper::upgrade::on(&mut req);
        let (mut parts, _) = req.into_parts();
        parts.uri = parts.uri.path_and_query().map_or_else(|| "/".parse(), |pq| pq.as_str().parse())?;
        self.mark(&mut parts.headers, remote, true);
        let response =
            tokio::time::timeout(SHORT_ANSWER, sender.send_request(Request::from_parts(parts, Empty::new())))
                .await
                .map_err(|_| ForwardError::Timeout)?
                .map_err(|e| ForwardError::Http(e.to_string()))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The owner refused (the session is gone, say): pass its answer on as it is.
            let (mut parts, body) = response.into_parts();
            let body = match self.read_answer(body, SHORT_ANSWER).await {
                Err(ForwardError::Http(_)) => Bytes::new(),
                other => other?,
            };
            strip_hop_by_hop(&mut parts.headers, false);
            return Ok(Response::from_parts(parts, Body::new(body)));
        }
        let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        if let Some(headers) = answer.headers_mut() {
            headers.clone_from(response.headers());
        }
        let owner_side = hyper::upgrade::on(response);
        tokio::spawn(async move {
            let (client, owner) = match tokio::join!(client_side, owner_side) {
                (Ok(client), Ok(owner)) => (client, owner),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "forwarded websocket upgrade did not complete");
                    return;
                }
            };
            splice(TokioIo::new(client), TokioIo::new(owner)).await;
        });
        answer.body(Body::new(Bytes::new())).map_err(|e| ForwardError::Http(e.to_string()))
    }

    /// Marks a request as forwarded (one hop) and passes on who sent it.
    fn mark(&self, headers: &mut HeaderMap, remote: SocketAddr, upgrade: bool) {
        strip_hop_by_hop(headers, upgrade);
        headers.insert(FORWARDED_HEADER, self.node_id.clone());
        let client = remote.ip().to_string();
        let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {client}"),
            None => client,
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", v);
        }
    }
}

/// The address to announce when none is given: the listen address, unless it is a wildcard
/// (`0.0.0.0`, `::`): then the local IP of the route out of this host (found by connecting a UDP
/// socket, which sends nothing; for `::`, IPv6 first, then IPv4), or loopback if there is none.
pub fn advertise_address(listen: SocketAddr) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    // A `::` listener on a dual-stack socket also takes IPv4: on a host without an IPv6 route,
    // its IPv4 address is the one peers can reach.
    const V4: (&str, &str) = ("0.0.0.0:0", "192.0.2.1:9"); // TEST-NET-1: never contacted, only routed.
    const V6: (&str, &str) = ("[::]:0", "[2001:db8::1]:9");
    let probes: &[(&str, &str)] = if listen.is_ipv4() { &[V4] } else { &[V6, V4] };
    let outward = probes.iter().find_map(|(bind, probe)| {
        std::net::UdpSocket::bind(bind)
            .and_then(|socket| socket.connect(probe).and_then(|()| socket.local_addr()))
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified())
    });
    let ip = outward.unwrap_or(if listen.is_ipv4() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
    });
    SocketAddr::new(ip, listen.port())
}

/// How long the other direction of a spliced websocket may go on once one direction ended.
const SPLICE_LINGER: Duration = Duration::from_secs(5);

/// Copies both ways between a client's and an owner's connection. When one side ends (the owner
/// closed the session, or the client left), the other direction gets [`SPLICE_LINGER`] to finish
/// and is then dropped: a client that vanished without a FIN must not keep the task and both
/// sockets forever (`copy_bidirectional` would wait for its EOF).
async fn splice<C, O>(client: C, owner: O)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    O: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt as _;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut owner_rx, mut owner_tx) = tokio::io::split(owner);
    let up = async {
        let copied = tokio::io::copy(&mut client_rx, &mut owner_tx).await;
        let _ = owner_tx.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut owner_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
        copied
    };
    tokio::pin!(up, down);
    let first = tokio::select! {
        r = &mut up => {
            let _ = tokio::time::timeout(SPLICE_LINGER, &mut down).await;
            r
        }
        r = &mut down => {
            let _ = tokio::time::timeout(SPLICE_LINGER, &mut up).await;
            r
        }
    };
    if let Err(e) = first {
        tracing::debug!(error = %e, "forwarded websocket ended with an error");
    }
}

/// Drops the hop-by-hop headers; an upgrade keeps `Connection: upgrade` and `Upgrade`, which
/// are what it asks for.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    for name in &HOP_BY_HOP {
        if upgrade && *name == header::CONNECTION {
            continue;
        }
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// `http://<owner><path?query>`: the pooled client needs an absolute URI.
fn owner_uri(address: &str, uri: &http::Uri) -> Result<http::Uri, ForwardError> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Ok(format!("http://{address}{path}").parse()?)
}

/// Why a forward failed (logged at debug; the client gets Engine.IO's 400 `Session ID unknown`).
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("the owner did not answer in time")]
    Timeout,
    #[error("{0}")]
    Http(String),
    #[error("bad owner address: {0}")]
    Uri(#[from] http::uri::InvalidUri),
    #[error("the owner's answer is larger than {max} bytes")]
    TooLarge { max: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_except_what_an_upgrade_needs() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::COOKIE, HeaderValue::from_static("io=a"));
        let mut polling = h.clone();
        strip_hop_by_hop(&mut polling, false);
        assert_eq!(polling.len(), 1, "{polling:?}");
        assert!(polling.contains_key(header::COOKIE));
        strip_hop_by_hop(&mut h, true);
        assert!(h.contains_key(header::CONNECTION) && h.contains_key(header::UPGRADE));
        assert!(!h.contains_key(header::TRANSFER_ENCODING));
    }

    #[test]
    fn a_specific_listen_address_is_advertised_as_is_and_a_wildcard_is_not() {
        let specific = SocketAddr::from(([127, 0, 0, 5], 3000));
        assert_eq!(advertise_address(specific), specific);
        let wildcard = advertise_address(SocketAddr::from(([0, 0, 0, 0], 3001)));
        assert!(!wildcard.ip().is_unspecified(), "{wildcard}");
        assert_eq!(wildcard.port(), 3001);
    }

    #[tokio::test(start_paused = true)]
    async fn a_splice_ends_when_the_owner_closes_even_if_the_client_stays_silent() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (owner, mut owner_peer) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(client, owner));
        client_peer.write_all(b"up").await.unwrap_or_default();
        let mut buf = [0u8; 2];
        owner_peer.read_exact(&mut buf).await.unwrap_or_default();
        assert_eq!(&buf, b"up");
        owner_peer.write_all(b"dn").await.unwrap_or_default();
        client_peer.read_exact(&mut buf).await.unwrap_or_default();
        assert_eq!(&buf, b"dn");
        // The owner goes away; the client never sends again nor closes.
        drop(owner_peer);
        let mut rest = Vec::new();
        client_peer.read_to_end(&mut rest).await.unwrap_or_default();
        assert!(rest.is_empty(), "the client side sees the end");
        let ended = tokio::time::timeout(SPLICE_LINGER * 2, task).await;
        assert!(ended.is_ok(), "the splice task outlived the owner's connection");
    }

    #[test]
    fn owner_uri_keeps_path_and_query() {
        let uri: http::Uri = "/socket.io/?EIO=4&transport=polling&sid=a.b".parse().unwrap_or_default();
        let got = owner_uri("10.0.0.2:3000", &uri).map(|u| u.to_string()).unwrap_or_default();
        assert_eq!(got, "http://10.0.0.2:3000/socket.io/?EIO=4&transport=polling&sid=a.b");
        assert!(owner_uri("not a host", &uri).is_err());
    }
}
