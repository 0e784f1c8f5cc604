//! WebSocket transport: direct websocket sessions and the polling → websocket upgrade.
//!
//! Each websocket has a reader task (this module's `read_loop`) and a writer task (`write_loop`).
//! The writer drains the session's queue into a [`WriteBuffer`] and flushes once per batch; the
//! reader hands control frames (pong, close echo, `3probe`) to the writer through a small queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketWrite};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use switchboard_protocol::engineio::{Encoded, Packet};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::error::RequestError;
use super::frame_reader::{FrameReader, InFrame, ReadError};
use super::session::{Session, Transport};
use super::write_buffer::WriteBuffer;
use super::{CloseReason, Engine, HandshakeRequest};
use crate::http::Body;

type Io = TokioIo<Upgraded>;
type Reader = FrameReader<ReadHalf<Io>>;
type Writer = WebSocketWrite<WriteBuffer<WriteHalf<Io>>>;

/// How long a closing session may take to flush its last frames to a client that stopped reading.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What the reader asks the writer to do besides draining the session queue.
enum Control {
    /// Write this frame now (pong, close echo, `3probe`).
    Frame(OpCode, Bytes),
    /// The upgrade completed: start draining the session's queue.
    Attach,
}

/// Reader → writer hand-off for control frames: a deque and a `Notify` (a tokio mpsc channel
/// preallocates a 32-slot block, about 1.3 KiB per connection, for frames that are rare).
#[derive(Default)]
struct ControlQueue {
    items: Mutex<VecDeque<Control>>,
    closed: AtomicBool,
    notify: Notify,
    /// Counts the writer's flushes, so the reader can wait until a control frame is on the wire.
    flushes: AtomicU64,
    flushed: Notify,
}

impl ControlQueue {
    fn push(&self, control: Control) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).push_back(control);
        self.notify.notify_one();
    }

    /// The reader is done: the writer finishes (if the upgrade never completed, it closes).
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Pushes a frame and waits until the writer has flushed it (or gave up).
    async fn push_and_flush(&self, control: Control) {
        let flushed = self.flushed.notified();
        tokio::pin!(flushed);
        flushed.as_mut().enable();
        let before = self.flushes.load(Ordering::Acquire);
        self.push(control);
        while self.flushes.load(Ordering::Acquire) == before && !self.is_closed() {
            flushed.as_mut().await;
            flushed.set(self.flushed.notified());
            flushed.as_mut().enable();
        }
    }

    fn mark_flushed(&self) {
        self.flushes.fetch_add(1, Ordering::AcqRel);
        self.flushed.notify_waiters();
    }

    fn take(&self, out: &mut VecDeque<Control>) {
        std::mem::swap(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()), out);
    }
}

/// A new session over websocket (`transport=websocket`, no sid).
pub(crate) fn handshake(
    engine: &Engine,
    mut req: Request<Incoming>,
    request: HandshakeRequest,
) -> Result<Response<Body>, RequestError> {
    let (mut response, upgrade) = accept(&mut req)?;
    let (session, _) = engine.open_session(request, Transport::WebSocket);
    let max = engine.config().max_http_buffer_size;
    engine.set_cookie(&session, response.headers_mut());
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => run(session, io, max, true, None).await,
            Err(e) => {
                tracing::debug!(error = %e, "websocket handshake failed");
                session.close(CloseReason::TransportError);
            }
        }
    });
    Ok(response)
}

/// A websocket for an existing polling session: probe, then switch on `5`.
pub(crate) fn upgrade(
    engine: &Engine,
    mut req: Request<Incoming>,
    session: Arc<Session>,
) -> Result<Response<Body>, RequestError> {
    let (response, upgrade) = accept(&mut req)?;
    let max = engine.config().max_http_buffer_size;
    let timeout = engine.config().upgrade_timeout;
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        if !session.begin_upgrade() {
            // Already upgraded or upgrading: accept, then close, as socket.io does.
            let (_, mut writer) = split(io);
            let _ = writer.write_frame(Frame::close(1000, b"")).await;
            let _ = writer.flush().await;
            return;
        }
        run(session, io, max, false, Some(timeout)).await;
    });
    Ok(response)
}

/// Checks the websocket handshake headers and builds the 101 answer (RFC 6455 §4.2.2).
fn accept(req: &mut Request<Incoming>) -> Result<(Response<Body>, hyper::upgrade::OnUpgrade), RequestError> {
    let headers = req.headers();
    if headers.get("sec-websocket-version").map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(RequestError::BadRequest);
    }
    let key = headers.get("sec-websocket-key").ok_or(RequestError::BadRequest)?;
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).map_err(|_| RequestError::BadRequest)?);
    Ok((response, hyper::upgrade::on(req)))
}

/// Our small-buffer frame reader on the read half; fastwebsockets' writer on a coalescing write half.
fn split(io: Upgraded) -> (ReadHalf<Io>, Writer) {
    let (read, write) = tokio::io::split(TokioIo::new(io));
    // The read half fastwebsockets would pair with it is a dummy, dropped at once.
    let (_, mut writer) =
        fastwebsockets::after_handshake_split(tokio::io::empty(), WriteBuffer::new(write), Role::Server);
    writer.set_writev(true);
    writer.set_writev_threshold(0);
    (read, writer)
}

async fn run(
    session: Arc<Session>,
    io: Upgraded,
    max_message: usize,
    attached: bool,
    probe_timeout: Option<Duration>,
) {
    let (read, write) = split(io);
    let mut reader = FrameReader::new(read, max_message);
    let control = Arc::new(ControlQueue::default());
    let writer = tokio::spawn(write_loop(session.clone(), write, control.clone(), attached));

    let upgraded = match probe_timeout {
        None => true,
        Some(limit) => match tokio::time::timeout(limit, probe(&session, &mut reader, &control)).await {
            Ok(Ok(())) => true,
            outcome => {
                tracing::debug!(sid = %session.sid(), timed_out = outcome.is_err(), "upgrade failed");
                session.abort_upgrade();
                false
            }
        },
    };
    if upgraded {
        read_loop(&session, &mut reader, &control, max_message).await;
    }
    control.close();
    let _ = writer.await;
}

/// `2probe` → `3probe`, then `5` completes the upgrade; anything else fails it.
async fn probe(session: &Arc<Session>, reader: &mut Reader, control: &Arc<ControlQueue>) -> Result<(), ()> {
    let mut probed = false;
    loop {
        let frame = tokio::select! {
            f = reader.next() => f.map_err(|_| ())?,
            () = session.closed() => return Err(()),
        };
        match frame.opcode {
            OpCode::Ping => {
                control.push(Control::Frame(OpCode::Pong, frame.payload));
                continue;
            }
            OpCode::Pong => continue,
            OpCode::Text if frame.fin && std::str::from_utf8(&frame.payload).is_ok() => {}
            _ => return Err(()),
        }
        match Packet::decode_text_utf8(frame.payload) {
            Ok(Packet::Ping(data)) if &data[..] == b"probe" && !probed => {
                // On the wire before anything else happens: a client may act on `3probe` only
                // after it saw it, and the upgrade must not complete before that.
                control.push_and_flush(Control::Frame(OpCode::Text, Bytes::from_static(b"3probe"))).await;
                session.mark_probed();
                probed = true;
            }
            Ok(Packet::Upgrade) if probed => {
                session.complete_upgrade();
                control.push(Control::Attach);
                return Ok(());
            }
            _ => return Err(()),
        }
    }
}

async fn read_loop(
    session: &Arc<Session>,
    reader: &mut Reader,
    control: &Arc<ControlQueue>,
    max_message: usize,
) {
    let mut fragments = Fragments::new(max_message);
    loop {
        let frame = tokio::select! {
            f = reader.next() => f,
            () = session.closed() => return,
        };
        let packet = match frame {
            Ok(frame) if frame.opcode == OpCode::Close => {
                session.close(CloseReason::TransportClose);
                return;
            }
            Ok(frame) if frame.opcode == OpCode::Ping => {
                control.push(Control::Frame(OpCode::Pong, frame.payload));
                continue;
            }
            Ok(frame) => match fragments.push(frame) {
                Ok(Some((OpCode::Text, data))) => Packet::decode_text_utf8(data),
                Ok(Some((_, data))) => Ok(Packet::decode_binary(data)),
                Ok(None) => continue,
                Err(reason) => {
                    tracing::debug!(sid = %session.sid(), "bad websocket fragments");
                    session.close(reason);
                    return;
                }
            },
            Err(e) => {
                let reason = match e {
                    ReadError::Eof => CloseReason::TransportClose,
                    ReadError::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionReset => {
                        CloseReason::TransportClose
                    }
                    other => {
                        tracing::debug!(sid = %session.sid(), error = %other, "websocket read failed");
                        CloseReason::TransportError
                    }
                };
                session.close(reason);
                return;
            }
        };
        let result = packet.map_err(|e| {
            tracing::debug!(sid = %session.sid(), error = %e, "bad websocket packet");
            CloseReason::ParseError
        });
        if let Err(reason) = result.and_then(|p| session.on_packet(p)) {
            session.close(reason);
            return;
        }
    }
}

async fn write_loop(
    session: Arc<Session>,
    mut writer: Writer,
    control: Arc<ControlQueue>,
    mut attached: bool,
) {
    let mut batch: VecDeque<Encoded> = VecDeque::new();
    let mut controls: VecDeque<Control> = VecDeque::new();
    loop {
        let notified = session.writer_notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let control_notified = control.notify.notified();
        tokio::pin!(control_notified);
        control_notified.as_mut().enable();

        // Read `closed` before taking, so frames pushed before the close are never skipped.
        let control_open = !control.is_closed();
        control.take(&mut controls);
        for msg in controls.drain(..) {
            match msg {
                Control::Frame(opcode, payload) => {
                    let _ =
                        writer.write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&payload))).await;
                }
                Control::Attach => attached = true,
            }
        }
        let closing = if attached {
            let closing = session.take_queue(&mut batch);
            for packet in batch.drain(..) {
                let frame = match &packet {
                    Encoded::Text(b) => Frame::text(Payload::Borrowed(b)),
                    Encoded::Binary(b) => Frame::binary(Payload::Borrowed(b)),
                };
                let _ = writer.write_frame(frame).await;
            }
            closing.is_some()
        } else {
            session.is_closed() || !control_open
        };
        if closing {
            let _ = writer.write_frame(Frame::close(1000, b"")).await;
        }
        let flushed = guarded(&session, writer.flush()).await;
        control.mark_flushed();
        if flushed.is_err() || closing {
            return;
        }
        tokio::select! {
            () = &mut notified => {}
            () = &mut control_notified => {}
        }
    }
}

/// Runs an I/O future, but gives up `CLOSE_GRACE` after the session closed (a client that stopped reading).
async fn guarded<T>(
    session: &Session,
    io: impl Future<Output = Result<T, WebSocketError>>,
) -> Result<T, WebSocketError> {
    tokio::select! {
        r = io => r,
        () = async {
            session.closed().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => Err(WebSocketError::ConnectionClosed),
    }
}

/// Reassembles fragmented messages, bounding the whole message (fastwebsockets bounds single frames only).
struct Fragments {
    max: usize,
    opcode: Option<OpCode>,
    buf: Vec<u8>,
}

impl Fragments {
    fn new(max: usize) -> Self {
        Self { max, opcode: None, buf: Vec::new() }
    }

    /// A complete message (opcode, data; text is valid UTF-8), `None` while a fragmented one is incomplete or for
    /// frames without data (ping, pong), or the reason to close on a protocol violation.
    fn push(&mut self, frame: InFrame) -> Result<Option<(OpCode, Bytes)>, CloseReason> {
        match (frame.opcode, self.opcode) {
            (OpCode::Text, None) if frame.fin => match std::str::from_utf8(&frame.payload) {
                Ok(_) => Ok(Some((OpCode::Text, frame.payload))),
                Err(_) => Err(CloseReason::TransportError),
            },
            (OpCode::Binary, None) if frame.fin => Ok(Some((OpCode::Binary, frame.payload))),
            (OpCode::Text | OpCode::Binary, None) => {
                self.opcode = Some(frame.opcode);
                self.append(&frame.payload)?;
                Ok(None)
            }
            (OpCode::Continuation, Some(opcode)) => {
                self.append(&frame.payload)?;
                if !frame.fin {
                    return Ok(None);
                }
                self.opcode = None;
                let data = std::mem::take(&mut self.buf);
                if opcode == OpCode::Text && std::str::from_utf8(&data).is_err() {
                    return Err(CloseReason::TransportError);
                }
                Ok(Some((opcode, Bytes::from(data))))
            }
            (OpCode::Ping | OpCode::Pong, _) => Ok(None),
            _ => Err(CloseReason::TransportError),
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<(), CloseReason> {
        if self.buf.len() + data.len() > self.max {
            return Err(CloseReason::TransportError);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}
