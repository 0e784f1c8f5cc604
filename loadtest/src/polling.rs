//! One long-polling client session, run as `socket.io-client` runs it with `transports: ["polling"]`:
//! the Engine.IO handshake GET, a POST of `40` (Socket.IO CONNECT to `/`), then one long-poll GET always
//! outstanding on one keep-alive connection and the queued packets POSTed on a second one, at most one
//! POST in flight (servers refuse overlapping POSTs). Packets queued meanwhile go in the next POST,
//! joined by the record separator. Engine.IO pings come in GET answers; pongs go out by POST.
//!
//! hyper's HTTP/1.1 client does the HTTP; each TCP connection runs in a small task of its own, and a
//! connection the server closed while idle is replaced on the next request, as a browser would do.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use switchboard_protocol::engineio::{self, Packet, PayloadDecoder};
use tokio::net::TcpStream;

use crate::driver::{Behaviour, Connection, Outcome};
use crate::outbox::Outbox;
use crate::target::Target;
use crate::{ConnError, clock, conn, pacer};

type Body = Full<Bytes>;
type Sender = SendRequest<Body>;
/// An HTTP exchange in flight; it hands the connection back with the body, to be reused.
type Exchange = Pin<Box<dyn Future<Output = Result<(Sender, Bytes), ConnError>> + Send>>;

/// Bytes of an error answer's body kept for the report.
const ERROR_BODY_LEN: usize = 200;

/// An open Socket.IO session to `/` over HTTP long-polling.
pub struct PollingConn {
    addr: SocketAddr,
    host: HeaderValue,
    /// Every request of the session: the polling handshake's path and query plus `&sid=…`.
    uri: Uri,
    /// pingInterval + pingTimeout: the longest a healthy server holds a request.
    limit: Duration,
    /// The long-poll GETs.
    get: Lane,
    /// The POSTs.
    post: Lane,
    /// Packets of the last GET answer not handed to a behaviour yet.
    received: Option<PayloadDecoder>,
    /// Packets for the next POST.
    out: Outbox,
}

/// The session parameters of the Engine.IO open packet this client uses.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Handshake {
    sid: String,
    ping_interval: u64,
    ping_timeout: u64,
}

/// One keep-alive connection and the request in flight on it, if any.
#[derive(Default)]
struct Lane {
    sender: Option<Sender>,
    inflight: Option<Exchange>,
}

impl Lane {
    /// Sends `request` (on a new connection if there is none); answered through [`Lane::done`].
    fn start(&mut self, addr: SocketAddr, request: Request<Body>, limit: Duration, what: &'static str) {
        let sender = self.sender.take();
        self.inflight = Some(Box::pin(async move {
            tokio::time::timeout(limit, exchange(addr, sender, request))
                .await
                .unwrap_or(Err(ConnError::Stalled(what)))
        }));
    }

    fn is_busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The body of the request in flight (never ends if there is none). Cancel-safe: dropping it leaves
    /// the request in flight.
    async fn done(&mut self) -> Result<Bytes, ConnError> {
        let Some(inflight) = self.inflight.as_mut() else {
            return std::future::pending().await;
        };
        let result = inflight.await;
        self.inflight = None;
        let (sender, body) = result?;
        self.sender = Some(sender);
        Ok(body)
    }
}

/// Opens a keep-alive HTTP/1.1 connection; hyper's connection task runs until the sender is dropped.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Sender, ConnError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| ConnError::from_connect(&e))?;
    stream.set_nodelay(true).map_err(|e| ConnError::from_io(&e))?;
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| ConnError::from_hyper(&e))?;
    tokio::spawn(async move {
        // Its errors reach the request in flight, which reports them.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request and its whole answer, on `sender` if it is still open or else on a new connection. A
/// request the server's closing of an idle connection kept from going out is sent again on a new one.
async fn exchange(
    addr: SocketAddr,
    sender: Option<Sender>,
    request: Request<Body>,
) -> Result<(Sender, Bytes), ConnError> {
    let (mut sender, mut fresh) = match sender {
        Some(sender) if !sender.is_closed() => (sender, false),
        _ => (connect(addr).await?, true),
    };
    let mut request = request;
    let response = loop {
        if let Err(e) = sender.ready().await {
            if fresh {
                return Err(ConnError::from_hyper(&e));
            }
            (sender, fresh) = (connect(addr).await?, true);
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => break response,
            Err(mut e) => match e.take_message() {
                Some(unsent) if !fresh => {
                    (sender, fresh) = (connect(addr).await?, true);
                    request = unsent;
                }
                _ => return Err(ConnError::from_hyper(e.error())),
            },
        }
    };
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| ConnError::from_hyper(&e))?.to_bytes();
    if status != StatusCode::OK {
        let body = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LEN)]).into_owned();
        return Err(ConnError::Http { status: status.as_u16(), body });
    }
    Ok((sender, body))
}

/// Waits for the answer to the Socket.IO CONNECT.
#[derive(Debug, Default)]
struct Joining {
    answer: Option<Result<(), ConnError>>,
}

impl Behaviour for Joining {
    fn on_message(&mut self, text: &[u8], _now: u64, _out: &mut Outbox) {
        if self.answer.is_none() {
            self.answer = Some(conn::connect_answer(text));
        }
    }

    fn finished(&self) -> bool {
        self.answer.is_some()
    }
}

impl PollingConn {
    /// Connects and joins `/`, all within `timeout`.
    pub async fn open(target: &Target, timeout: Duration) -> Result<Self, ConnError> {
        tokio::time::timeout(timeout, Self::open_unbounded(target)).await.map_err(|_| ConnError::TimedOut)?
    }

    async fn open_unbounded(target: &Target) -> Result<Self, ConnError> {
        let addr = target.addr();
        let host = HeaderValue::try_from(addr.to_string()).map_err(|e| ConnError::Protocol(e.to_string()))?;
        let handshake_uri = parse_uri(target.polling_uri())?;
        let (sender, body) =
            exchange(addr, None, request(Method::GET, handshake_uri, &host, Bytes::new())).await?;
        let mut packets = decode(body)?;
        let handshake = match packets.next() {
            Some(Ok(Packet::Open(json))) => serde_json::from_slice::<Handshake>(&json)
                .map_err(|e| ConnError::Protocol(format!("Engine.IO open packet: {e}")))?,
            other => {
                return Err(ConnError::Protocol(format!(
                    "expected the Engine.IO open packet, got {other:?}"
                )));
            }
        };
        let uri = parse_uri(&format!("{}&sid={}", target.polling_uri(), handshake.sid))?;
        let limit = Duration::from_millis(handshake.ping_interval.saturating_add(handshake.ping_timeout));
        let mut conn = Self {
            addr,
            host,
            uri,
            limit,
            get: Lane { sender: Some(sender), inflight: None },
            post: Lane::default(),
            received: Some(packets),
            out: Outbox::default(),
        };
        conn.out.push(b"40");
        let mut joining = Joining::default();
        conn.drive(&mut joining, std::future::pending()).await?;
        joining.answer.unwrap_or(Err(ConnError::Closed)).map(|()| conn)
    }

    /// Drives `behaviour` until it is finished or `until` completes; an error means the session is gone.
    /// A GET or POST still in flight when it returns is picked up by the next call.
    pub async fn drive<B, F>(&mut self, behaviour: &mut B, until: F) -> Result<Outcome, ConnError>
    where
        B: Behaviour,
        F: Future<Output = ()>,
    {
        let mut until = pin!(until);
        let mut sleep = pacer::Sleep::new(u64::MAX);
        loop {
            self.start_post();
            if behaviour.finished() {
                return Ok(Outcome::Finished);
            }
            // One packet at a time, so a behaviour that finishes leaves the rest to the next phase.
            if let Some(packet) = self.received.as_mut().and_then(Iterator::next) {
                match packet.map_err(|e| ConnError::Protocol(format!("Engine.IO payload: {e}")))? {
                    Packet::Message(text) => behaviour.on_message(&text, clock::now_ns(), &mut self.out),
                    Packet::Ping(_) => self.out.push(b"3"),
                    Packet::Close => return Err(ConnError::Closed),
                    Packet::Open(_)
                    | Packet::Pong(_)
                    | Packet::Binary(_)
                    | Packet::Upgrade
                    | Packet::Noop => {}
                }
                continue;
            }
            self.start_get();
            let tick = behaviour.next_tick();
            if let Some(at) = tick {
                sleep.reset(at);
            }
            tokio::select! {
                biased;
                () = &mut until => return Ok(Outcome::Interrupted),
                body = self.get.done() => self.received = Some(decode(body?)?),
                body = self.post.done() => post_accepted(&body?)?,
                () = &mut sleep, if tick.is_some() => behaviour.on_tick(clock::now_ns(), &mut self.out),
            }
        }
    }

    /// Leaves as `socket.io-client`'s `disconnect()` does over polling: one POST of Socket.IO DISCONNECT
    /// (`41`) and Engine.IO close (`1`), after any POST still in flight; the GET waiting is dropped.
    pub async fn close(mut self) -> Result<(), ConnError> {
        self.out.push(b"41");
        self.out.push(b"1");
        loop {
            self.start_post();
            if !self.post.is_busy() {
                return Ok(());
            }
            post_accepted(&self.post.done().await?)?;
        }
    }

    /// POSTs what is queued, unless a POST is in flight (then it goes out when that one is answered).
    fn start_post(&mut self) {
        if self.post.is_busy() || self.out.is_empty() {
            return;
        }
        let mut body = BytesMut::with_capacity(self.out.payload_len());
        self.out.encode_payload(&mut body);
        self.out.clear();
        let request = request(Method::POST, self.uri.clone(), &self.host, body.freeze());
        self.post.start(self.addr, request, self.limit, "POST");
    }

    /// Keeps one long-poll GET outstanding.
    fn start_get(&mut self) {
        if !self.get.is_busy() {
            let request = request(Method::GET, self.uri.clone(), &self.host, Bytes::new());
            self.get.start(self.addr, request, self.limit, "GET");
        }
    }
}

impl Connection for PollingConn {
    /// One for the GETs, one for the POSTs, as browsers do.
    const SOCKETS: usize = 2;

    fn url(target: &Target) -> String {
        target.http_url()
    }

    fn open(target: &Target, timeout: Duration) -> impl Future<Output = Result<Self, ConnError>> + Send {
        PollingConn::open(target, timeout)
    }

    fn drive<B, F>(
        &mut self,
        behaviour: &mut B,
        until: F,
    ) -> impl Future<Output = Result<Outcome, ConnError>> + Send
    where
        B: Behaviour + Send,
        F: Future<Output = ()> + Send,
    {
        PollingConn::drive(self, behaviour, until)
    }

    fn close(self) -> impl Future<Output = Result<(), ConnError>> + Send {
        PollingConn::close(self)
    }
}

/// A request of the session (a POST says its body is text, as the official client does).
fn request(method: Method, uri: Uri, host: &HeaderValue, body: Bytes) -> Request<Body> {
    let post = method == Method::POST;
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    request.headers_mut().insert(HOST, host.clone());
    if post {
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=UTF-8"));
    }
    request
}

fn parse_uri(text: &str) -> Result<Uri, ConnError> {
    text.parse().map_err(|e| ConnError::Protocol(format!("request URI {text:?}: {e}")))
}

/// Splits a GET answer into its packets.
fn decode(body: Bytes) -> Result<PayloadDecoder, ConnError> {
    engineio::decode_payload(body).map_err(|e| ConnError::Protocol(format!("Engine.IO payload: {e}")))
}

/// A POST's answer: Engine.IO servers say `ok`.
fn post_accepted(body: &[u8]) -> Result<(), ConnError> {
    if body == b"ok" {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LEN)]).into_owned();
        Err(ConnError::Protocol(format!("POST answered {text:?} instead of ok")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_packet() -> Result<(), serde_json::Error> {
        let json = br#"{"sid":"a-b_c","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let h: Handshake = serde_json::from_slice(json)?;
        assert_eq!((h.sid.as_str(), h.ping_interval, h.ping_timeout), ("a-b_c", 25_000, 20_000));
        Ok(())
    }

    #[test]
    fn posts_must_be_answered_ok() {
        assert!(post_accepted(b"ok").is_ok());
        assert!(matches!(post_accepted(b"nope"), Err(ConnError::Protocol(_))));
    }

    #[test]
    fn requests_carry_host_and_a_text_body_type() {
        let host = HeaderValue::from_static("127.0.0.1:3000");
        let uri = Uri::from_static("/socket.io/?EIO=4&transport=polling&sid=x");
        let post = request(Method::POST, uri.clone(), &host, Bytes::from_static(b"3"));
        assert_eq!(post.headers().get(HOST), Some(&host));
        assert!(post.headers().contains_key(CONTENT_TYPE));
        let get = request(Method::GET, uri, &host, Bytes::new());
        assert_eq!(get.method(), Method::GET);
        assert!(!get.headers().contains_key(CONTENT_TYPE));
    }
}
