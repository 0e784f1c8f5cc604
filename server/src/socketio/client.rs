//! One Engine.IO session seen by Socket.IO: its sockets per namespace, binary reassembly (within
//! the packet's byte limit), the packet dispatch from the wire to namespaces and sockets, and a
//! CONNECT's way into its namespace (a restore of a lost connection's socket, the middleware).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use switchboard_adapter::{BroadcastPacket, Room};
use switchboard_protocol::SocketIoError;
use switchboard_protocol::socketio::{DecodeLimits, Decoded, Packet, PartialBinary};

use super::handler;
use super::handshake::Handshake;
use super::namespace::{Entered, Namespace};
use super::recovery::{self, Claim, Restoring};
use super::reserved::check_event_name;
use super::socket::Socket;
use super::{DisconnectReason, IoInner};
use crate::engine::{CloseReason, Session};

/// Attached to its session (no second lookup table); it holds no `Arc` to the session, so the
/// session can be dropped once closed.
pub(crate) struct Client {
    io: Weak<IoInner>,
    /// One per joined namespace (usually one), found by the socket's namespace name.
    sockets: Mutex<Vec<Arc<Socket>>>,
    /// Namespaces whose connect middleware is still running; a repeated CONNECT is ignored.
    connecting: Mutex<HashSet<String>>,
    partial: Mutex<Option<PartialBinary>>,
    /// Whether any namespace was ever joined (connectTimeout only closes clients that never did).
    joined: AtomicBool,
    /// The connectTimeout task, stopped (and freed) once a namespace is joined.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    pub(crate) fn new(io: Weak<IoInner>) -> Self {
        Self {
            io,
            sockets: Mutex::new(Vec::new()),
            connecting: Mutex::new(HashSet::new()),
            partial: Mutex::new(None),
            joined: AtomicBool::new(false),
            connect_timer: Mutex::new(None),
        }
    }

    /// Keeps the connectTimeout task's handle, to stop it when a namespace is joined.
    pub(crate) fn set_connect_timer(&self, timer: tokio::task::AbortHandle) {
        *lock(&self.connect_timer) = Some(timer);
    }

    pub(crate) fn ever_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    pub(crate) fn forget(&self, nsp: &str) {
        lock(&self.sockets).retain(|s| s.namespace().name() != nsp);
    }

    /// Every socket of this client ends with `reason` (the session closed, or a forced close).
    pub(crate) fn close_all(&self, reason: DisconnectReason, send_packet: bool) {
        let sockets: Vec<Arc<Socket>> = std::mem::take(&mut *lock(&self.sockets));
        for s in sockets {
            s.close(reason, send_packet);
        }
    }

    pub(crate) fn on_text(self: &Arc<Self>, session: &Arc<Session>, text: &Bytes) {
        let Some(io) = self.io.upgrade() else { return };
        if lock(&self.partial).is_some() {
            return fail(session, "text packet while binary attachments were expected");
        }
        let Ok(text) = std::str::from_utf8(text) else { return fail(session, "invalid UTF-8") };
        let limits = DecodeLimits::new(io.config.max_attachments, io.max_packet_bytes);
        match Packet::decode_with_limits(text, limits) {
            Ok(Decoded::Complete(packet)) => self.dispatch(&io, session, packet),
            Ok(Decoded::NeedsAttachments(partial)) => *lock(&self.partial) = Some(partial),
            Err(e) => refuse(session, e),
        }
    }

    pub(crate) fn on_binary(self: &Arc<Self>, session: &Arc<Session>, data: Bytes) {
        let Some(io) = self.io.upgrade() else { return };
        let result = {
            let mut partial = lock(&self.partial);
            let Some(p) = partial.as_mut() else {
                drop(partial);
                return fail(session, "unexpected binary attachment");
            };
            let result = p.push(data);
            if !matches!(result, Ok(None)) {
                *partial = None;
            }
            result
        };
        match result {
            Ok(Some(packet)) => self.dispatch(&io, session, packet),
            Ok(None) => {}
            Err(e) => refuse(session, e),
        }
    }

    fn dispatch(self: &Arc<Self>, io: &Arc<IoInner>, session: &Arc<Session>, packet: Packet) {
        if let Packet::Event { event, .. } = &packet {
            if let Err(reserved) = check_event_name(event) {
                return fail(session, &reserved.to_string());
            }
        }
        let socket = lock(&self.sockets).iter().find(|s| s.namespace().name() == packet.nsp()).cloned();
        match (packet, socket) {
            (Packet::Connect { nsp, data }, None) => self.connect(io, session, nsp, data.unwrap_or_default()),
            (Packet::Event { event, args, id, .. }, Some(socket)) => socket.on_event(event, args, id),
            (Packet::Ack { id, args, .. }, Some(socket)) => socket.on_ack(id, args),
            (Packet::Disconnect { .. }, Some(socket)) => {
                socket.close(DisconnectReason::ClientNamespaceDisconnect, false)
            }
            // As socket.io: a packet for a namespace the client is not in (or a second CONNECT,
            // or a CONNECT_ERROR from a client) means the client is confused; close it.
            (other, _) => {
                tracing::debug!(sid = %session.sid(), nsp = other.nsp(), "packet in invalid state");
                session.close(CloseReason::ForcedClose);
            }
        }
    }

    fn connect(
        self: &Arc<Self>,
        io: &Arc<IoInner>,
        session: &Arc<Session>,
        nsp: String,
        mut auth: serde_json::Map<String, serde_json::Value>,
    ) {
        let limits = io.config.limits;
        // Checked before any lookup: a name this long never becomes a namespace, nor a broker subject.
        if !limits.namespace_fits(&nsp) {
            tracing::debug!(sid = %session.sid(), len = nsp.len(), "CONNECT to a too-long namespace name");
            return connect_error(session, nsp, serde_json::json!({"message": "Namespace name too long"}));
        }
        let namespaces = lock(&self.sockets).len() + lock(&self.connecting).len();
        if namespaces >= limits.max_namespaces_per_client {
            tracing::debug!(sid = %session.sid(), namespaces, "CONNECT past the namespaces per client");
            return connect_error(session, nsp, serde_json::json!({"message": "Too many namespaces"}));
        }
        let Some(entered) = io.namespace_for(&nsp) else {
            return connect_error(session, nsp, serde_json::json!({"message": "Invalid namespace"}));
        };
        let ns = entered.namespace().clone();
        let claim = ns.recovery().and_then(|_| recovery::take_claim(&mut auth));
        let handshake = Handshake::new(session.shared_request(), auth)
            .with_credentials(io.config.fetch_sockets_credentials);
        let middleware = ns.handlers.middleware();
        if claim.is_none() && middleware.is_empty() {
            let socket = Arc::new(Socket::new(ns, session.clone(), Arc::downgrade(self), handshake));
            self.finish_connect(socket, entered, None);
            return;
        }
        if !lock(&self.connecting).insert(ns.name().to_owned()) {
            tracing::debug!(sid = %session.sid(), nsp = ns.name(), "repeated CONNECT while connecting: ignored");
            return;
        }
        let client = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let _connecting = ConnectingGuard { client: &client, nsp: ns.name() };
            let (socket, restoring) = match claim {
                Some(claim) => client.restore(&ns, &session, handshake, claim).await,
                None => {
                    (Arc::new(Socket::new(ns.clone(), session, Arc::downgrade(&client), handshake)), None)
                }
            };
            // As socket.io: a restored socket skips the middleware that accepted it before.
            let skip = restoring.is_some() && ns.recovery().is_some_and(|r| r.skip_middlewares);
            for m in middleware.into_iter().filter(|_| !skip) {
                let outcome = std::panic::AssertUnwindSafe(m(socket.clone()));
                let refusal = match futures_util::FutureExt::catch_unwind(outcome).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(refusal)) => refusal.to_json(),
                    Err(_) => {
                        tracing::error!(nsp = socket.namespace().name(), "connect middleware panicked");
                        serde_json::json!({"message": "Internal server error"})
                    }
                };
                return connect_error(socket.session(), socket.namespace().name().to_owned(), refusal);
            }
            client.finish_connect(socket, entered, restoring);
        });
    }

    /// The socket a CONNECT that claims a session starts as: the restored one if the session is
    /// there and none of its missed packets is gone, else a new one (`recovered` false).
    async fn restore(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        session: &Arc<Session>,
        handshake: Handshake,
        claim: Claim,
    ) -> (Arc<Socket>, Option<Restoring>) {
        let client = Arc::downgrade(self);
        let Some(recovery) = ns.recovery() else {
            return (Arc::new(Socket::new(ns.clone(), session.clone(), client, handshake)), None);
        };
        recovery.metrics.attempts.inc();
        let store = recovery.store.clone();
        let max = recovery.max_replay_bytes;
        let offset = claim.offset.as_deref();
        let found = match store.take(&claim.pid).await {
            // A broker store reads here what this node's memory lacks; the check is done again,
            // with what is new, under the order lock as the socket joins.
            Ok(saved) => match store.prefetch(&saved, offset, max).await {
                Ok(prefetched) => store.missed(&saved, offset, &prefetched, max).map(|_| (saved, prefetched)),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        match found {
            // Its old socket is still connected here (the client came back before this node
            // noticed the drop): restoring would put two sockets under one id, and the old one's
            // close would then take the new one out of the namespace and its rooms. It connects
            // as a new socket; the old one saves its session again when it closes.
            Ok((saved, _)) if ns.socket(&saved.sid).is_some() => {
                tracing::debug!(sid = %saved.sid, nsp = ns.name(), "connection state not recovered: still connected here");
                recovery.metrics.failed("still_connected");
                (Arc::new(Socket::new(ns.clone(), session.clone(), client, handshake)), None)
            }
            Ok((saved, prefetched)) => {
                let socket = Socket::restored(ns.clone(), session.clone(), client, handshake, &saved);
                (Arc::new(socket), Some(Restoring { saved, offset: claim.offset, prefetched }))
            }
            Err(error) => {
                tracing::debug!(sid = %session.sid(), nsp = ns.name(), %error, "connection state not recovered");
                recovery.metrics.failed(error.reason());
                (Arc::new(Socket::new(ns.clone(), session.clone(), client, handshake)), None)
            }
        }
    }

    /// The socket joins its namespace (which `entered` kept from being removed meanwhile); a
    /// restored one gets its rooms back and its missed packets queued before anything new.
    fn finish_connect(self: &Arc<Self>, socket: Arc<Socket>, entered: Entered, restoring: Option<Restoring>) {
        let session = socket.session().clone();
        if session.is_closed() {
            // The connection went while connecting: a session being restored is kept again.
            if let (Some(recovery), Some(restoring)) = (socket.namespace().recovery(), restoring) {
                recovery.keep(restoring.saved);
            }
            return;
        }
        let ns = socket.namespace().clone();
        // With recovery on, joining is ordered with the namespace's logging: every packet logged
        // for the socket is either replayed below or delivered to it once it is in its rooms.
        let order = ns.recovery().map(|recovery| recovery.order());
        let (socket, replay) = match (ns.recovery(), restoring) {
            (Some(recovery), Some(restoring)) => {
                let saved = &restoring.saved;
                let offset = restoring.offset.as_deref();
                match recovery.store.missed(saved, offset, &restoring.prefetched, recovery.max_replay_bytes) {
                    Ok(missed) => (socket, Some((missed, restoring.saved.rooms))),
                    // Trimmed while the middleware ran: the middleware accepted this client, which
                    // connects as a new socket.
                    Err(error) => {
                        tracing::debug!(sid = %session.sid(), nsp = ns.name(), %error, "connection state not recovered");
                        recovery.metrics.failed(error.reason());
                        (Arc::new(socket.fresh()), None)
                    }
                }
            }
            _ => (socket, None),
        };
        {
            let mut sockets = lock(&self.sockets);
            sockets.retain(|s| s.namespace().name() != ns.name());
            sockets.push(socket.clone());
        }
        if !self.joined.swap(true, Ordering::AcqRel)
            && let Some(timer) = lock(&self.connect_timer).take()
        {
            timer.abort();
        }
        socket.mark_connected();
        let mut data = serde_json::Map::new();
        data.insert("sid".into(), serde_json::Value::String(socket.id().as_str().to_owned()));
        if let Some(mine) = socket.recovery() {
            data.insert("pid".into(), serde_json::Value::String(mine.pid.clone()));
        }
        let packet = Packet::Connect { nsp: ns.name().to_owned(), data: Some(data) };
        let _ = session.send_all(BroadcastPacket::new(packet.encode()).frames());
        match (ns.recovery(), socket.recovery(), replay) {
            (Some(recovery), Some(mine), Some((missed, rooms))) => {
                for packet in &missed {
                    socket.deliver_packet(packet);
                }
                if !missed.is_empty() {
                    mine.mark_delivered();
                }
                ns.add_socket(socket.clone());
                let rooms: Vec<Room> =
                    rooms.into_iter().filter(|r| r.as_str() != socket.id().as_str()).collect();
                // One node: confirmed at once. The cluster step holds the client's output until
                // the broker confirms, as `Socket::try_join` does.
                let _ = ns.adapter().join(socket.id(), &rooms);
                recovery.metrics.restored.inc();
                recovery.metrics.replayed_packets.inc_by(missed.len() as u64);
            }
            (Some(recovery), Some(mine), None) => {
                ns.add_socket(socket.clone());
                mine.set_since(recovery.store.head());
            }
            _ => ns.add_socket(socket.clone()),
        }
        drop(order);
        socket.persist();
        entered.into_socket();
        if let Some(io) = self.io.upgrade() {
            io.notify_connection(&socket);
        }
        if let Some(on_connection) = ns.handlers.connection() {
            let s = socket.clone();
            handler::run(on_connection(socket.clone()), None, move |error| {
                tracing::error!(socket = %s.id(), error, "connection handler failed: disconnecting its socket");
                s.close(DisconnectReason::ServerNamespaceDisconnect, true);
            });
        }
        socket.mark_ready();
        // The session may have closed while we were connecting: do not leave the socket behind.
        if session.is_closed() {
            self.close_all(DisconnectReason::TransportClose, false);
        }
    }
}

/// Clears a namespace's connecting mark however the middleware task ends.
struct ConnectingGuard<'a> {
    client: &'a Client,
    nsp: &'a str,
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.client.connecting).remove(self.nsp);
    }
}

fn fail(session: &Arc<Session>, why: &str) {
    tracing::debug!(sid = %session.sid(), why, "socket.io parse error");
    session.close(CloseReason::ParseError);
}

/// Closes a session whose packet was refused: oversized input is a transport error (as the
/// engine's own size limit), anything else a parse error.
fn refuse(session: &Arc<Session>, error: SocketIoError) {
    let reason = match error {
        SocketIoError::PacketTooLarge(_) => CloseReason::TransportError,
        _ => CloseReason::ParseError,
    };
    tracing::debug!(sid = %session.sid(), %error, "socket.io packet refused");
    session.close(reason);
}

/// Refuses a CONNECT with CONNECT_ERROR `data` (`{message, data?}`).
fn connect_error(session: &Arc<Session>, nsp: String, data: serde_json::Value) {
    let packet = Packet::ConnectError { nsp, data };
    let _ = session.send_all(BroadcastPacket::new(packet.encode()).frames());
}
