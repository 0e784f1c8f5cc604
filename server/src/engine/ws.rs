//! WebSocket transport: direct websocket sessions and the polling → websocket upgrade.
//!
//! Each websocket is one task ([`Connection::serve`]) that owns the TCP stream: it reads what the
//! client sent into a stack buffer, decodes the frames ([`FrameDecoder`]), hands the packets to the
//! session (handlers run inline), then writes everything the session queued with one `write`
//! ([`FrameWriter`]). One task and no buffers while idle keep a connection small, and an answer to a
//! message goes out in the same wake-up that read it.
//!
//! A client that does not read cannot make the connection hold more: the session's packets are
//! taken only once the previous ones are on the wire, pongs are coalesced (RFC 6455 §5.5.3 allows
//! answering only the latest ping), reading pauses while anything is left to write, and a client
//! that takes nothing for the write timeout is dropped.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use fastwebsockets::OpCode;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use switchboard_protocol::engineio::{Encoded, Packet};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::error::RequestError;
use super::frame_decoder::{FrameDecoder, InFrame, ReadError};
use super::frame_writer::{FrameWriter, push_frame};
use super::session::{Session, Transport};
use super::{ClientStream, CloseReason, Engine, HandshakeRequest};
use crate::body::Body;

/// How long a closing session may take to flush its last frames to a client that stopped reading.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Bytes read per wake-up at most, so one busy client cannot hold its worker thread.
const READ_BUDGET: usize = 64 * 1024;

/// A new session over websocket (`transport=websocket`, no sid).
pub(crate) fn handshake(
    engine: &Engine,
    mut req: Request<Incoming>,
    request: HandshakeRequest,
) -> Result<Response<Body>, RequestError> {
    let (mut response, upgrade) = accept(&mut req)?;
    let (session, _) = engine.open_session(request, Transport::WebSocket);
    let limits = Limits::of(engine);
    engine.set_cookie(&session, response.headers_mut());
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => Connection::start(session, io, limits, None),
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
    let limits = Limits::of(engine);
    let timeout = engine.config().upgrade_timeout;
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        if !session.begin_upgrade() {
            // Already upgraded or upgrading: accept, then close, as socket.io does.
            let mut close = Vec::new();
            push_frame(&mut close, OpCode::Close, &1000u16.to_be_bytes());
            let mut io = TokioIo::new(io);
            let _ = io.write_all(&close).await;
            let _ = io.flush().await;
            return;
        }
        Connection::start(session, io, limits, Some(timeout));
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

/// What the engine's options bound on one websocket.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Largest message, whole or reassembled.
    max_message: usize,
    /// How long the client may take nothing before the connection is dropped.
    write_timeout: Duration,
}

impl Limits {
    fn of(engine: &Engine) -> Self {
        let config = engine.config();
        Self { max_message: config.max_http_buffer_size, write_timeout: config.write_timeout() }
    }
}

/// Where a websocket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An upgrade of a polling session: only `2probe` then `5` are valid; the session's queue is
    /// still the polling transport's.
    Probing { probed: bool, deadline: Instant },
    /// The session's transport: its queue is written here.
    Attached,
    /// The close frame is queued; flushing what is left until the deadline.
    Closing { deadline: Instant },
}

/// One websocket, as the future its task runs: the stream, the decoder, what is left to write, and
/// the phase. Written by hand (not `async`) so the task holds only these fields: no `select!` state,
/// no readiness futures, no timer unless a deadline is running.
struct Connection {
    session: Arc<Session>,
    stream: TcpStream,
    decoder: FrameDecoder,
    fragments: Fragments,
    writer: FrameWriter,
    write_timeout: Duration,
    /// Control frames (pong, `3probe`, close) to write before the next queued packets, once what
    /// the client has not taken yet is on the wire; at most one of each (see [`Self::queue_pong`]).
    controls: Vec<(OpCode, Bytes)>,
    /// The session's queue, swapped out to be written.
    batch: VecDeque<Encoded>,
    /// The timer of the probing or closing deadline, only while one runs.
    timer: Option<Pin<Box<Sleep>>>,
    /// The `3probe` is queued: the session learns it was probed once it is on the wire.
    probe_answer_pending: bool,
    /// The client's side is still open.
    reading: bool,
    /// Reading ended the session: the close frame is due.
    close_due: bool,
    phase: Phase,
}

/// What reading and handling frames led to.
enum Next {
    Continue,
    /// The session is over (closed, or the upgrade failed): write the close frame and finish.
    Close,
}

impl Connection {
    /// Runs a websocket on the TCP stream under hyper's upgrade; `probe_timeout` marks an upgrade.
    ///
    /// The connection runs as a task of its own: the task that waited for the upgrade ends here,
    /// so a connection's long-lived task holds only the connection's state.
    fn start(session: Arc<Session>, io: Upgraded, limits: Limits, probe_timeout: Option<Duration>) {
        let Some((stream, read_buf)) = into_tcp(io) else {
            tracing::error!(sid = %session.sid(), "websocket over a connection that is not TCP");
            session.close(CloseReason::TransportError);
            return;
        };
        let phase = match probe_timeout {
            Some(limit) => Phase::Probing { probed: false, deadline: Instant::now() + limit },
            None => Phase::Attached,
        };
        let mut conn = Connection {
            session,
            stream,
            decoder: FrameDecoder::new(limits.max_message),
            fragments: Fragments::new(limits.max_message),
            writer: FrameWriter::default(),
            write_timeout: limits.write_timeout,
            controls: Vec::new(),
            batch: VecDeque::new(),
            timer: None,
            probe_answer_pending: false,
            reading: true,
            close_due: false,
            phase,
        };
        // Frames the client sent right behind its upgrade request. The bytes are copied: `read_buf`
        // is a slice of hyper's 8 KiB read buffer, which must not live as long as the connection.
        conn.decoder.extend(&read_buf);
        drop(read_buf);
        if matches!(conn.handle_frames(), Next::Close) {
            conn.close_due = true;
        }
        tokio::spawn(conn);
    }

    /// One turn of the loop: write what is due, then poll the client, the session and the deadline.
    /// `Ready` when the connection is done.
    fn turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Set once a read took the whole budget: the rest waits for the next turn, so a client
        // that sends without pause shares its worker thread with the others.
        let mut budget_spent = false;
        loop {
            // Registered before the queue is looked at, so a packet queued after that wakes us.
            self.session.register_writer(cx.waker());
            if std::mem::take(&mut self.close_due) {
                self.begin_closing();
            }
            if let Err(e) = self.write_due() {
                let reason = match e.kind() {
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => CloseReason::TransportClose,
                    _ => CloseReason::TransportError,
                };
                tracing::debug!(sid = %self.session.sid(), error = %e, "websocket write failed");
                self.fail(reason);
                return Poll::Ready(());
            }
            let closing = matches!(self.phase, Phase::Closing { .. });
            if closing && self.writer.is_empty() {
                return Poll::Ready(());
            }
            // While the client has not taken what was written, nothing more is read: what it sends
            // (messages whose answers would queue behind) waits in the kernel's buffers, not here.
            if self.reading && !closing && !budget_spent && self.writer.is_empty() {
                match self.read(cx) {
                    Poll::Ready((next, read)) => {
                        self.close_due = matches!(next, Next::Close);
                        budget_spent = read >= READ_BUDGET;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if !self.writer.is_empty() {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(sid = %self.session.sid(), error = %e, "websocket write failed");
                        self.fail(CloseReason::TransportError);
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            let phase_deadline = match self.phase {
                Phase::Closing { deadline } | Phase::Probing { deadline, .. } => Some(deadline),
                Phase::Attached => None,
            };
            let write_deadline = self.writer.waiting_since().map(|since| since + self.write_timeout);
            let deadline = match (phase_deadline, write_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match deadline {
                None => self.timer = None,
                Some(at) => {
                    let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        if write_deadline == Some(at) {
                            // The client took nothing for the write timeout: what is pending can
                            // never be delivered in time, so the connection is dropped.
                            tracing::debug!(sid = %self.session.sid(), "websocket write timed out");
                            self.fail(CloseReason::TransportError);
                            return Poll::Ready(());
                        }
                        if closing {
                            return Poll::Ready(());
                        }
                        tracing::debug!(sid = %self.session.sid(), "upgrade timed out");
                        self.close_due = true;
                        continue;
                    }
                }
            }
            if budget_spent {
                // Polled again after the tasks already waiting (tokio queues a self-wake last).
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
    }

    /// Writes control frames, then (attached, and with nothing left over) the session's queue; on
    /// close, the close frame. Never waits.
    fn write_due(&mut self) -> io::Result<()> {
        if matches!(self.phase, Phase::Probing { .. }) && self.session.is_closed() {
            self.begin_closing();
        }
        if !self.writer.is_empty() {
            self.writer.flush(&self.stream)?;
        }
        // Behind what the client has not taken: a client that does not read makes them wait here,
        // where a newer pong replaces an older one, instead of piling up in the writer.
        if !self.controls.is_empty() && self.writer.is_empty() {
            let controls = std::mem::take(&mut self.controls);
            self.writer.send(&self.stream, |buf| {
                for (opcode, payload) in &controls {
                    push_frame(buf, *opcode, payload);
                }
            })?;
        }
        if self.probe_answer_pending && self.writer.is_empty() {
            // `3probe` is on the wire: the polling side may now let the client go on.
            self.probe_answer_pending = false;
            self.session.mark_probed();
        }
        match self.phase {
            Phase::Attached if self.writer.is_empty() => {
                let closed = self.session.take_queue(&mut self.batch);
                if !self.batch.is_empty() || closed.is_some() {
                    let metrics = &self.session.metrics().websocket;
                    metrics.packets_out.inc_by(self.batch.len() as u64);
                    metrics.bytes_out.inc_by(self.batch.iter().map(|p| p.len() as u64).sum());
                    let batch = &mut self.batch;
                    self.writer.send(&self.stream, |buf| {
                        for packet in batch.drain(..) {
                            match &packet {
                                Encoded::Text(b) => push_frame(buf, OpCode::Text, b),
                                Encoded::Binary(b) => push_frame(buf, OpCode::Binary, b),
                            }
                        }
                        if closed.is_some() {
                            push_frame(buf, OpCode::Close, &1000u16.to_be_bytes());
                        }
                    })?;
                }
                // Freed, not kept: the session then holds an empty queue too, so an idle
                // connection keeps no queue memory (a burst costs one allocation).
                self.batch = VecDeque::new();
                if closed.is_some() {
                    self.phase = Phase::Closing { deadline: Instant::now() + CLOSE_GRACE };
                }
            }
            Phase::Attached if self.session.is_closed() => {
                // A client that stopped reading gets the grace period to take what is pending.
                self.phase = Phase::Closing { deadline: Instant::now() + CLOSE_GRACE };
            }
            _ => {}
        }
        Ok(())
    }

    /// Queues the close frame (an upgrade that did not finish is called off first).
    fn begin_closing(&mut self) {
        match self.phase {
            Phase::Closing { .. } => return,
            Phase::Probing { .. } => self.session.abort_upgrade(),
            Phase::Attached => {
                // The close frame goes out behind the queue, once `take_queue` reports the close.
                if !self.session.is_closed() {
                    self.session.close(CloseReason::TransportError);
                }
                return;
            }
        }
        self.controls.push((OpCode::Close, Bytes::from_static(&[0x03, 0xe8])));
        self.phase = Phase::Closing { deadline: Instant::now() + CLOSE_GRACE };
    }

    /// The connection broke: the session ends (an upgrade that was under way is called off).
    fn fail(&mut self, reason: CloseReason) {
        match self.phase {
            Phase::Probing { .. } => self.session.abort_upgrade(),
            Phase::Attached => self.session.close(reason),
            Phase::Closing { .. } => {}
        }
    }

    /// Reads what the client sent (up to [`READ_BUDGET`]) and handles the complete frames; also
    /// returns how many bytes it read. `Pending` when there was nothing to read.
    ///
    /// Through `poll_read`, not `try_read`: a read that returns less than asked for shows the
    /// socket is drained, and tokio then clears its readiness, so the next turn waits for epoll
    /// instead of calling `recvfrom` once more only to get `EAGAIN` (a system call per message).
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<(Next, usize)> {
        let mut chunk = [0u8; 4096];
        let mut total = 0;
        while total < READ_BUDGET {
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.reading = false;
                    // What arrived before the end still counts; either way the connection is over.
                    self.handle_frames();
                    if matches!(self.phase, Phase::Attached) {
                        self.session.close(CloseReason::TransportClose);
                    }
                    return Poll::Ready((Next::Close, total));
                }
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    self.decoder.extend(buf.filled());
                    total += n;
                    if n < chunk.len() {
                        break;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready((self.read_failed(&ReadError::Io(e)), total)),
                Poll::Pending if total == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        self.session.metrics().websocket.bytes_in.inc_by(total as u64);
        Poll::Ready((self.handle_frames(), total))
    }

    fn read_failed(&mut self, error: &ReadError) -> Next {
        self.reading = false;
        let reason = match error {
            ReadError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset => CloseReason::TransportClose,
            other => {
                tracing::debug!(sid = %self.session.sid(), error = %other, "websocket read failed");
                CloseReason::TransportError
            }
        };
        if matches!(self.phase, Phase::Attached) {
            self.session.close(reason);
        }
        Next::Close
    }

    /// Handles every complete frame the decoder holds.
    fn handle_frames(&mut self) -> Next {
        // The handlers run inline and queue their answers (an ack) on this task's own session:
        // with the waker registered, that would wake the running task, which tokio then polls
        // once more for nothing, after first waking an idle worker of a multi-thread runtime to
        // take it (a futex wake per message). The turn registers again at the top of its loop,
        // before it looks at the queue, so nothing queued meanwhile is missed.
        self.session.unregister_writer();
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Next::Continue,
                Err(e) => return self.read_failed(&e),
            };
            let next = match self.phase {
                Phase::Attached => self.on_frame(frame),
                Phase::Probing { probed, deadline } => self.on_probe_frame(frame, probed, deadline),
                Phase::Closing { .. } => return Next::Continue,
            };
            if matches!(next, Next::Close) {
                return next;
            }
        }
    }

    /// A frame of an attached websocket.
    fn on_frame(&mut self, frame: InFrame) -> Next {
        let packet = match frame.opcode {
            OpCode::Close => {
                self.session.close(CloseReason::TransportClose);
                return Next::Close;
            }
            OpCode::Ping => {
                self.queue_pong(&frame.payload);
                return Next::Continue;
            }
            _ => match self.fragments.push(frame) {
                Ok(Some((OpCode::Text, data))) => Packet::decode_text_utf8(data),
                Ok(Some((_, data))) => Ok(Packet::decode_binary(data)),
                Ok(None) => return Next::Continue,
                Err(reason) => {
                    tracing::debug!(sid = %self.session.sid(), "bad websocket fragments");
                    self.session.close(reason);
                    return Next::Close;
                }
            },
        };
        let result = packet.map_err(|e| {
            tracing::debug!(sid = %self.session.sid(), error = %e, "bad websocket packet");
            CloseReason::ParseError
        });
        self.session.metrics().websocket.packets_in.inc();
        match result.and_then(|p| self.session.on_packet(p)) {
            Ok(()) => Next::Continue,
            Err(reason) => {
                self.session.close(reason);
                Next::Close
            }
        }
    }

    /// Answers a ping, replacing a pong not yet written (only the latest ping needs one). The
    /// payload (at most 125 bytes) is copied: a slice would keep the whole read buffer alive.
    fn queue_pong(&mut self, payload: &[u8]) {
        let payload = Bytes::copy_from_slice(payload);
        match self.controls.iter_mut().find(|(opcode, _)| *opcode == OpCode::Pong) {
            Some(pong) => pong.1 = payload,
            None => self.controls.push((OpCode::Pong, payload)),
        }
    }

    /// `2probe` → `3probe`, then `5` completes the upgrade; anything else fails it.
    fn on_probe_frame(&mut self, frame: InFrame, probed: bool, deadline: Instant) -> Next {
        match frame.opcode {
            OpCode::Ping => {
                self.queue_pong(&frame.payload);
                return Next::Continue;
            }
            OpCode::Pong => return Next::Continue,
            OpCode::Text if frame.fin && std::str::from_utf8(&frame.payload).is_ok() => {}
            _ => return Next::Close,
        }
        match Packet::decode_text_utf8(frame.payload) {
            Ok(Packet::Ping(data)) if &data[..] == b"probe" && !probed => {
                // The session learns it was probed only once `3probe` is on the wire: a client may
                // act on it only after it saw it, and the upgrade must not complete before that.
                self.controls.push((OpCode::Text, Bytes::from_static(b"3probe")));
                self.probe_answer_pending = true;
                self.phase = Phase::Probing { probed: true, deadline };
                Next::Continue
            }
            Ok(Packet::Upgrade) if probed && !self.probe_answer_pending => {
                self.session.complete_upgrade();
                self.phase = Phase::Attached;
                Next::Continue
            }
            _ => Next::Close,
        }
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().turn(cx)
    }
}

/// The TCP stream under an upgraded connection (as the HTTP layer accepted it, or bare), and the
/// bytes hyper had read past the upgrade request; `None` for any other transport.
fn into_tcp(io: Upgraded) -> Option<(TcpStream, Bytes)> {
    match io.downcast::<TokioIo<ClientStream>>() {
        Ok(parts) => Some((parts.io.into_inner().into_inner(), parts.read_buf)),
        Err(io) => {
            io.downcast::<TokioIo<TcpStream>>().ok().map(|parts| (parts.io.into_inner(), parts.read_buf))
        }
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
