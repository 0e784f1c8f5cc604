//! One Engine.IO session: its outgoing queue, its transport state, and how it ends.
//!
//! State sits behind a plain mutex that is never held across `.await`: transports take what they
//! need under the lock, then do their I/O without it.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use switchboard_protocol::engineio::{Encoded, Packet};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::{EngineMetrics, TransportMetrics};
use super::{CloseReason, EngineHandler, EngineShared, HandshakeRequest, Message, Sid};

/// Why a send did not queue anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The session's queue is at its byte limit (a slow or stuck client).
    #[error("send queue full")]
    QueueFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    WebSocket,
}

impl Transport {
    /// This transport's counters.
    pub(crate) fn metrics(self, metrics: &EngineMetrics) -> &TransportMetrics {
        match self {
            Self::Polling => &metrics.polling,
            Self::WebSocket => &metrics.websocket,
        }
    }
}

struct Inner {
    transport: Transport,
    /// A websocket is probing for an upgrade (at most one at a time).
    upgrading: bool,
    /// The probe was answered: pending and new polls get a noop so the client can pause polling.
    probed: bool,
    queue: VecDeque<Encoded>,
    queued_bytes: usize,
    polling_active: bool,
    /// A POST is being read (at most one at a time, as in socket.io).
    posting: bool,
    /// Closed by the server while on polling, and not yet drained by a GET (see [`Session::close`]).
    draining: bool,
    /// Set while a pong is awaited: past it the session is dead even if its timer has not fired yet.
    pong_deadline: Option<Instant>,
    closed: Option<CloseReason>,
    /// Open holds, oldest first (see [`Session::hold`]): packets queued after a hold opened are
    /// not handed to the transport until it is released.
    holds: Vec<Hold>,
}

/// Hold ids, unique per process (so a session needs no counter of its own).
static NEXT_HOLD: AtomicU64 = AtomicU64::new(0);

/// One open hold: its id, and how many queued packets are ahead of it (still writable).
#[derive(Debug, Clone, Copy)]
struct Hold {
    id: u64,
    ahead: usize,
}

/// A hold on a session's outgoing packets, from [`Session::hold`]; give it back to
/// [`Session::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldId(u64);

impl Inner {
    /// How many queued packets the transport may take now: all of them, or those ahead of the
    /// oldest hold.
    fn writable(&self) -> usize {
        self.holds.first().map_or(self.queue.len(), |h| h.ahead.min(self.queue.len()))
    }

    /// Takes the first `n` queued packets (at most [`writable`](Self::writable)) for the transport.
    fn take(&mut self, n: usize) -> std::collections::vec_deque::Drain<'_, Encoded> {
        if n == self.queue.len() {
            self.queued_bytes = 0;
        } else {
            self.queued_bytes -= self.queue.iter().take(n).map(Encoded::len).sum::<usize>();
        }
        for hold in &mut self.holds {
            hold.ahead -= n.min(hold.ahead);
        }
        self.queue.drain(..n)
    }
}

/// A session as the layer above sees it: send to it, read its handshake, close it.
pub struct Session {
    id: u64,
    sid: Sid,
    opened_at: Instant,
    request: Arc<HandshakeRequest>,
    max_queue_bytes: usize,
    handler: Arc<dyn EngineHandler>,
    engine: Weak<EngineShared>,
    metrics: Arc<EngineMetrics>,
    inner: Mutex<Inner>,
    poll_wake: Notify,
    /// The websocket connection task, woken when packets are queued or the session changes.
    writer_waker: AtomicWaker,
    closed: CancellationToken,
    /// Mirrors `closed` for the per-message check (`is_cancelled` takes the token's mutex).
    is_closed: AtomicBool,
    attachment: OnceLock<Box<dyn Any + Send + Sync>>,
}

/// What a pending GET should do next.
pub(crate) enum PollStep {
    /// Answer with these packets.
    Send(Vec<Encoded>),
    /// Nothing to send yet.
    Wait,
    /// Nothing queued and an upgrade was probed: the client is pausing polling.
    Upgrading,
    /// Nothing queued and the session moved to websocket.
    Upgraded,
}

/// Why a GET or POST cannot use this session.
pub(crate) enum PollRefusal {
    /// Closed meanwhile: the sid is unknown now.
    Gone,
    /// The session has moved to websocket.
    WrongTransport,
    /// Another GET (or POST) is pending: the session is closed for it.
    Overlap,
    /// Closed by the server and draining: client packets are accepted and ignored.
    Draining,
}

static NOOP: Bytes = Bytes::from_static(b"6");
static CLOSE: Bytes = Bytes::from_static(b"1");
static PING: Bytes = Bytes::from_static(b"2");

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sid", &self.sid).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        id: u64,
        sid: Sid,
        request: HandshakeRequest,
        transport: Transport,
        engine: &Arc<EngineShared>,
    ) -> Self {
        Self {
            id,
            sid,
            opened_at: Instant::now(),
            request: Arc::new(request),
            max_queue_bytes: engine.config.max_queue_bytes,
            handler: engine.handler.clone(),
            engine: Arc::downgrade(engine),
            metrics: engine.metrics.clone(),
            inner: Mutex::new(Inner {
                transport,
                upgrading: false,
                probed: false,
                queue: VecDeque::new(),
                queued_bytes: 0,
                polling_active: false,
                posting: false,
                draining: false,
                pong_deadline: None,
                closed: None,
                holds: Vec::new(),
            }),
            poll_wake: Notify::new(),
            writer_waker: AtomicWaker::new(),
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
            attachment: OnceLock::new(),
        }
    }

    /// Attaches the upper layer's per-session state once (Socket.IO's client), so it needs no
    /// second lookup table; later calls are ignored.
    pub fn attach<T: Any + Send + Sync>(&self, value: T) {
        let _ = self.attachment.set(Box::new(value));
    }

    /// The state given to [`Session::attach`], if it has that type.
    pub fn attached<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.attachment.get().and_then(|b| b.downcast_ref::<T>())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked elsewhere; the state itself stays consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine's metrics, for the transports' counters.
    pub(crate) fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    /// The session id.
    pub fn sid(&self) -> &Sid {
        &self.sid
    }

    /// The handshake request (headers, query, peer address).
    pub fn request(&self) -> &HandshakeRequest {
        &self.request
    }

    /// The handshake request, shared (Socket.IO's handshake keeps it without copying).
    pub fn shared_request(&self) -> Arc<HandshakeRequest> {
        self.request.clone()
    }

    /// The current transport's name: `polling` or `websocket`.
    pub fn transport_name(&self) -> &'static str {
        match self.lock().transport {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Queues a packet encoded once (shared by reference with other sessions); fails fast, never waits.
    pub fn send(&self, packet: Encoded) -> Result<(), SendError> {
        let websocket = {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return Err(SendError::Closed);
            }
            if inner.queued_bytes + packet.len() > self.max_queue_bytes && !inner.queue.is_empty() {
                return Err(SendError::QueueFull);
            }
            inner.queued_bytes += packet.len();
            inner.queue.push_back(packet);
            inner.transport == Transport::WebSocket
        };
        self.wake(websocket);
        Ok(())
    }

    /// Queues packets only if the transport can take them right now (a websocket with nothing
    /// queued, or a pending long-poll); otherwise drops them and returns false (socket.io's volatile).
    pub fn send_volatile(&self, packets: &[Encoded]) -> bool {
        let websocket = {
            let mut inner = self.lock();
            let writable = inner.closed.is_none()
                && inner.queue.is_empty()
                && match inner.transport {
                    Transport::WebSocket => true,
                    Transport::Polling => inner.polling_active,
                };
            if !writable {
                return false;
            }
            for p in packets {
                inner.queued_bytes += p.len();
                inner.queue.push_back(p.clone());
            }
            inner.transport == Transport::WebSocket
        };
        self.wake(websocket);
        true
    }

    /// Queues several packets atomically (a Socket.IO packet and its attachments stay together).
    pub fn send_all(&self, packets: &[Encoded]) -> Result<(), SendError> {
        let websocket = {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return Err(SendError::Closed);
            }
            let len: usize = packets.iter().map(Encoded::len).sum();
            if inner.queued_bytes + len > self.max_queue_bytes && !inner.queue.is_empty() {
                return Err(SendError::QueueFull);
            }
            inner.queued_bytes += len;
            inner.queue.extend(packets.iter().cloned());
            inner.transport == Transport::WebSocket
        };
        self.wake(websocket);
        Ok(())
    }

    fn wake(&self, websocket: bool) {
        if websocket {
            self.writer_waker.wake();
        } else {
            self.poll_wake.notify_one();
        }
    }

    /// Queues a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        self.send(Encoded::message(text.as_bytes()))
    }

    /// Queues a binary message.
    pub fn send_binary(&self, data: Bytes) -> Result<(), SendError> {
        self.send(Encoded::Binary(data))
    }

    /// Queues a ping that must be answered by `deadline`.
    pub(crate) fn send_ping(&self, deadline: Instant) {
        let websocket = {
            let mut inner = self.lock();
            inner.pong_deadline = Some(deadline);
            if inner.closed.is_some() {
                return;
            }
            let ping = Encoded::Text(PING.clone());
            inner.queued_bytes += ping.len();
            // A ping carries nothing the client could act on: it goes ahead of any hold, so a
            // held session is not taken for a dead one. A full queue is ignored: a client that is
            // not reading misses the pong deadline anyway.
            match inner.holds.first().map(|h| h.ahead) {
                Some(at) => {
                    let at = at.min(inner.queue.len());
                    inner.queue.insert(at, ping);
                    for hold in &mut inner.holds {
                        hold.ahead += 1;
                    }
                }
                None => inner.queue.push_back(ping),
            }
            inner.transport == Transport::WebSocket
        };
        self.wake(websocket);
    }

    /// Holds back what is queued from now on: the transport takes only the packets queued before,
    /// until [`release`](Self::release) (pings still go out). For a join whose room subscription
    /// the broker has not confirmed yet: the client must not see anything it could act on (the
    /// join's ack) before other nodes' emits to the room can reach it. The caller must release it,
    /// within a bound; closing the session releases every hold.
    pub(crate) fn hold(&self) -> HoldId {
        let id = NEXT_HOLD.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        if inner.closed.is_none() {
            let ahead = inner.queue.len();
            inner.holds.push(Hold { id, ahead });
        }
        HoldId(id)
    }

    /// Ends a hold: what it held goes out (behind any older hold still open).
    pub(crate) fn release(&self, hold: HoldId) {
        let websocket = {
            let mut inner = self.lock();
            let Some(i) = inner.holds.iter().position(|h| h.id == hold.0) else { return };
            let released = inner.holds.remove(i);
            // Only the oldest hold limits the transport, and only if it held something.
            if i > 0 || inner.queue.len() <= released.ahead {
                return;
            }
            inner.transport == Transport::WebSocket
        };
        self.wake(websocket);
    }

    /// A pong arrived: the session is alive. True if a pong was awaited; a pong nobody asked for
    /// changes nothing.
    pub(crate) fn clear_pong_deadline(&self) -> bool {
        self.lock().pong_deadline.take().is_some()
    }

    /// Closes the session if its pong deadline has passed, even if the heartbeat wheel has not
    /// reached it yet, so a request right after `pingInterval + pingTimeout` sees it gone.
    fn expire_if_late(self: &Arc<Self>) -> bool {
        let late = self.lock().pong_deadline.is_some_and(|d| Instant::now() >= d);
        if late {
            self.close(CloseReason::PingTimeout);
        }
        late
    }

    /// Ends the session: removes it from the engine, wakes its transports, tells the handler once.
    ///
    /// A polling session closed by the server (forced close) drains first, as socket.io
    /// does: it stays reachable until a GET has taken what is queued and then a close packet on
    /// its own (a client handles a close packet before the packets bundled with it), or until
    /// `pingTimeout` passes without a GET.
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        // Not on shutdown: the listener is gone, no later GET could come to drain it.
        self.close_with(reason, reason == CloseReason::ForcedClose);
    }

    /// [`Session::close`], choosing whether a polling session drains first (`drain`): yes while
    /// the listener still takes the client's next GET (a node draining before it exits).
    pub(crate) fn close_with(self: &Arc<Self>, reason: CloseReason, drain: bool) {
        let (drain, transport) = {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return;
            }
            inner.closed = Some(reason);
            // What was held goes out before the close, as if confirmed.
            inner.holds.clear();
            inner.draining = inner.transport == Transport::Polling && drain;
            (inner.draining, inner.transport)
        };
        transport.metrics(&self.metrics).sessions.dec();
        self.metrics.closed(reason);
        if let Some(engine) = self.engine.upgrade() {
            engine.heartbeat.forget(self.id);
            if drain {
                let session = self.clone();
                let limit = engine.config.ping_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    session.finish_drain();
                });
            } else {
                engine.sessions.remove(self.sid.as_str());
            }
        }
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
        self.poll_wake.notify_one();
        self.writer_waker.wake();
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "session closed");
        self.handler.on_close(self, reason);
    }

    /// Acts on one packet from the client; an error is the reason to close the session.
    pub(crate) fn on_packet(self: &Arc<Self>, packet: Packet) -> Result<(), CloseReason> {
        match packet {
            Packet::Message(data) => self.handler.on_message(self, Message::Text(data)),
            Packet::Binary(data) => self.handler.on_message(self, Message::Binary(data)),
            // Only the answer to a ping reaches the heartbeat wheel (one message per ping): a
            // client sending pongs unasked cannot queue work there.
            Packet::Pong(_) if self.clear_pong_deadline() => {
                if let Some(engine) = self.engine.upgrade() {
                    engine.heartbeat.pong(self.id);
                }
            }
            Packet::Pong(_) => {}
            Packet::Ping(data) => {
                let _ = self.send(Encoded::from(Packet::Pong(data)));
            }
            Packet::Close => return Err(CloseReason::TransportClose),
            Packet::Noop | Packet::Upgrade => {}
            Packet::Open(_) => return Err(CloseReason::ParseError),
        }
        Ok(())
    }

    /// Ends the drain of a server-closed polling session: its sid is unknown from now on.
    fn finish_drain(&self) {
        let was_draining = std::mem::take(&mut self.lock().draining);
        if was_draining && let Some(engine) = self.engine.upgrade() {
            engine.sessions.remove(self.sid.as_str());
        }
    }

    // ---- polling ----

    /// Marks a GET as pending; a second concurrent one closes the session.
    pub(crate) fn begin_poll(self: &Arc<Self>) -> Result<(), PollRefusal> {
        if self.expire_if_late() {
            return Err(PollRefusal::Gone);
        }
        let overlap = {
            let mut inner = self.lock();
            if inner.closed.is_some() && !inner.draining {
                return Err(PollRefusal::Gone);
            }
            if inner.transport != Transport::Polling {
                return Err(PollRefusal::WrongTransport);
            }
            if inner.polling_active {
                true
            } else {
                inner.polling_active = true;
                false
            }
        };
        if overlap {
            self.close(CloseReason::TransportError);
            return Err(PollRefusal::Overlap);
        }
        Ok(())
    }

    pub(crate) fn end_poll(&self) {
        self.lock().polling_active = false;
    }

    /// Marks a POST as being read; a second concurrent one closes the session, as socket.io
    /// does (its packets could otherwise arrive out of order, and each open POST holds a body).
    pub(crate) fn begin_post(self: &Arc<Self>) -> Result<(), PollRefusal> {
        if self.expire_if_late() {
            return Err(PollRefusal::Gone);
        }
        {
            let mut inner = self.lock();
            if inner.draining {
                return Err(PollRefusal::Draining);
            }
            if inner.closed.is_some() {
                return Err(PollRefusal::Gone);
            }
            if inner.transport != Transport::Polling {
                return Err(PollRefusal::WrongTransport);
            }
            if !std::mem::replace(&mut inner.posting, true) {
                return Ok(());
            }
        }
        self.close(CloseReason::TransportError);
        Err(PollRefusal::Overlap)
    }

    pub(crate) fn end_post(&self) {
        self.lock().posting = false;
    }

    /// Registers interest before checking state, so a wake between the check and the wait is not lost.
    pub(crate) fn poll_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.poll_wake.notified()
    }

    pub(crate) fn poll_step(&self) -> PollStep {
        let mut inner = self.lock();
        let final_packet = inner.closed.map(|reason| {
            Encoded::Text(if reason.client_initiated() { NOOP.clone() } else { CLOSE.clone() })
        });
        let writable = inner.writable();
        if writable > 0 {
            // Closed sessions hold nothing: the final packet is never sent ahead of held ones.
            let mut out: Vec<Encoded> = inner.take(writable).collect();
            if !inner.draining {
                out.extend(final_packet);
            }
            return PollStep::Send(out);
        }
        if let Some(p) = final_packet {
            if inner.draining {
                drop(inner);
                self.finish_drain();
            }
            return PollStep::Send(vec![p]);
        }
        if inner.transport != Transport::Polling {
            return PollStep::Upgraded;
        }
        if inner.probed {
            return PollStep::Upgrading;
        }
        PollStep::Wait
    }

    /// Whether a GET is pending right now.
    pub(crate) fn is_polling(&self) -> bool {
        self.lock().polling_active
    }

    /// The noop that ends a long-poll without data.
    pub(crate) fn noop() -> Encoded {
        Encoded::Text(NOOP.clone())
    }

    // ---- websocket ----

    /// Claims the single upgrade slot; false when the session cannot upgrade now.
    pub(crate) fn begin_upgrade(&self) -> bool {
        let mut inner = self.lock();
        if inner.closed.is_some() || inner.upgrading || inner.transport != Transport::Polling {
            return false;
        }
        inner.upgrading = true;
        true
    }

    /// The probe was answered: make pending polls return so the client pauses polling.
    pub(crate) fn mark_probed(&self) {
        self.lock().probed = true;
        self.poll_wake.notify_one();
    }

    /// The upgrade failed: the session stays on polling.
    pub(crate) fn abort_upgrade(&self) {
        let mut inner = self.lock();
        inner.upgrading = false;
        inner.probed = false;
    }

    /// The client sent `5`: all traffic moves to the websocket.
    pub(crate) fn complete_upgrade(&self) {
        {
            let mut inner = self.lock();
            if inner.transport == Transport::Polling && inner.closed.is_none() {
                self.metrics.polling.sessions.dec();
                self.metrics.websocket.sessions.inc();
                self.metrics.upgrades.inc();
            }
            inner.transport = Transport::WebSocket;
            inner.upgrading = false;
            inner.probed = false;
        }
        self.poll_wake.notify_one();
        self.writer_waker.wake();
    }

    /// Registers the websocket task to wake; call before looking at the queue, so nothing is missed.
    pub(crate) fn register_writer(&self, waker: &std::task::Waker) {
        self.writer_waker.register(waker);
    }

    /// Forgets the websocket task's waker while the task itself runs handlers: what they queue
    /// would otherwise wake the running task. Register again before looking at the queue.
    pub(crate) fn unregister_writer(&self) {
        drop(self.writer_waker.take());
    }

    /// Swaps the queue with `out` (an empty one), or moves only the packets ahead of a hold;
    /// returns the close reason once closed.
    pub(crate) fn take_queue(&self, out: &mut VecDeque<Encoded>) -> Option<CloseReason> {
        let mut inner = self.lock();
        if inner.holds.is_empty() {
            std::mem::swap(&mut inner.queue, out);
            inner.queued_bytes = 0;
        } else {
            let writable = inner.writable();
            out.extend(inner.take(writable));
        }
        inner.closed
    }
}
