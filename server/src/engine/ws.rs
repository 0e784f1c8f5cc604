//! WebSocket transport: direct websocket sessions and the polling → websocket upgrade.
//!
//! Each websocket has a reader task (this module's `read_loop`) and a writer task (`write_loop`).
//! The writer drains the session's queue into a [`WriteBuffer`] and flushes once per batch; the
//! reader hands control frames (pong, close echo, `3probe`) to the writer through a small queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use switchboard_protocol::engineio::{Encoded, Packet};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::error::RequestError;
use super::session::{Session, Transport};
use super::write_buffer::WriteBuffer;
use super::{CloseReason, Engine, HandshakeRequest};
use crate::http::Body;

type Io = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Io>>;
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
    let (response, upgrade) =
        fastwebsockets::upgrade::upgrade(&mut req).map_err(|_| RequestError::BadRequest)?;
    let (session, _) = engine.open_session(request, Transport::WebSocket);
    let max = engine.config().max_http_buffer_size;
    let mut response = response.map(|_| Body::default());
    engine.set_cookie(&session, response.headers_mut());
    tokio::spawn(async move {
        match upgrade.await {
            Ok(ws) => run(session, ws, max, true, None).await,
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
    let (response, upgrade) =
        fastwebsockets::upgrade::upgrade(&mut req).map_err(|_| RequestError::BadRequest)?;
    let max = engine.config().max_http_buffer_size;
    let timeout = engine.config().upgrade_timeout;
    tokio::spawn(async move {
        let Ok(mut ws) = upgrade.await else { return };
        if !session.begin_upgrade() {
            // Already upgraded or upgrading: accept, then close, as socket.io does.
            let _ = ws.write_frame(Frame::close(1000, b"")).await;
            return;
        }
        run(session, ws, max, false, Some(timeout)).await;
    });
    Ok(response.map(|_| Body::default()))
}

async fn run(
    session: Arc<Session>,
    mut ws: WebSocket<Io>,
    max_message: usize,
    attached: bool,
    probe_timeout: Option<Duration>,
) {
    // fastwebsockets refuses frames of `len >= max`; a message of exactly maxHttpBufferSize is legal.
    ws.set_max_message_size(max_message.saturating_add(1));
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    ws.set_writev(true);
    ws.set_writev_threshold(0);
    let (mut reader, write): (Reader, Writer) = ws.split(|io| {
        let (r, w) = tokio::io::split(io);
        (r, WriteBuffer::new(w))
    });
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
    let mut send = forward_to(control);
    loop {
        let frame = tokio::select! {
            f = reader.read_frame(&mut send) => f.map_err(|_| ())?,
            () = session.closed() => return Err(()),
        };
        if frame.opcode != OpCode::Text {
            return Err(());
        }
        match Packet::decode_text_utf8(payload_bytes(frame.payload)) {
            Ok(Packet::Ping(data)) if &data[..] == b"probe" && !probed => {
                control.push(Control::Frame(OpCode::Text, Bytes::from_static(b"3probe")));
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
    let mut send = forward_to(control);
    let mut fragments = Fragments::new(max_message);
    loop {
        let frame = tokio::select! {
            f = reader.read_frame(&mut send) => f,
            () = session.closed() => return,
        };
        let packet = match frame {
            Ok(frame) if frame.opcode == OpCode::Close => {
                session.close(CloseReason::TransportClose);
                return;
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
                    WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => {
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

/// The `send_fn` fastwebsockets calls for frames it must answer (pong, close echo).
fn forward_to(
    control: &Arc<ControlQueue>,
) -> impl FnMut(Frame<'_>) -> std::future::Ready<Result<(), WebSocketError>> + use<> {
    let control = control.clone();
    move |frame| {
        // Queued, never awaited: if the writer is already gone nothing is left to answer.
        control.push(Control::Frame(frame.opcode, payload_bytes(frame.payload)));
        std::future::ready(Ok(()))
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
        if guarded(&session, writer.flush()).await.is_err() || closing {
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
    fn push(&mut self, frame: Frame<'_>) -> Result<Option<(OpCode, Bytes)>, CloseReason> {
        match (frame.opcode, self.opcode) {
            (OpCode::Text | OpCode::Binary, None) if frame.fin => {
                Ok(Some((frame.opcode, payload_bytes(frame.payload))))
            }
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
                // fastwebsockets checks UTF-8 of unfragmented text frames only.
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

fn payload_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        Payload::Borrowed(s) => Bytes::copy_from_slice(s),
        Payload::BorrowedMut(s) => Bytes::copy_from_slice(s),
    }
}
