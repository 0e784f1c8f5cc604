//! [`NodeFormatAdapter`]: one namespace of a Switchboard node that is a member of a Node
//! socket.io cluster. Outbound, it does what a Node server's `RedisAdapter` does (deliver locally,
//! then publish the broadcast or request in Node's format); inbound, it serves what Node servers
//! and emitters publish from the same local [`RoomIndex`], and answers their requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchboard_adapter::cluster::PublishError;
use switchboard_adapter::{
    AckResponse, AckStream, Adapter, AdapterError, BoxFuture, BroadcastOptions, BroadcastPacket,
    InboundHandler, PartialReplies, Room, RoomIndex, ServerSideAck, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{self, Decoded, Packet, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shared;
use super::channels::Channels;
use super::message::{self, Broadcast, NodePacket, Request, Response, Selection};

/// Ack ids this node gives the packets of Node's acked broadcasts start here, far above the
/// namespace's own counter, and stay below 2^53 (a JS client reads them as numbers).
const REMOTE_ACK_IDS: u64 = 1 << 52;

/// Longest this node relays its clients' acks of a peer's broadcast, whatever `flags.timeout`
/// the peer asked for.
const MAX_ACK_RELAY: Duration = Duration::from_secs(300);

/// See the module docs.
pub struct NodeFormatAdapter {
    pub(super) shared: Arc<Shared>,
    pub(super) nsp: Arc<str>,
    pub(super) uid: String,
    pub(super) channels: Channels,
    index: RoomIndex,
    next_request: AtomicU64,
    next_ack: AtomicU64,
    hook: RwLock<Option<Arc<dyn InboundHandler>>>,
}

impl std::fmt::Debug for NodeFormatAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFormatAdapter")
            .field("nsp", &self.nsp)
            .field("uid", &self.uid)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl NodeFormatAdapter {
    pub(super) fn new(shared: Arc<Shared>, nsp: &str, uid: String) -> Self {
        Self {
            channels: Channels::new(&shared.config.key, nsp, &uid),
            shared,
            nsp: nsp.into(),
            uid,
            index: RoomIndex::new(),
            next_request: AtomicU64::new(0),
            next_ack: AtomicU64::new(0),
            hook: RwLock::new(None),
        }
    }

    /// This adapter's uid in the Node cluster (`<node id>-<n>`).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The channels it subscribes and publishes on.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    fn hook(&self) -> Option<Arc<dyn InboundHandler>> {
        self.hook.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), AdapterError> {
        match self.shared.link.publish(channel, payload) {
            true => Ok(()),
            false => Err(AdapterError::BrokerUnavailable(PublishError::QueueFull.into())),
        }
    }

    fn require_connected(&self) -> Result<(), AdapterError> {
        match self.shared.link.is_connected() {
            true => Ok(()),
            false => Err(AdapterError::BrokerUnavailable(switchboard_adapter::Unreachable::Disconnected)),
        }
    }

    /// Opens a request: its id and the receiver of its responses; refused past the limit.
    fn open_request(&self) -> Result<(String, mpsc::UnboundedReceiver<Response>), AdapterError> {
        let id = format!("{}-{}", self.uid, self.next_request.fetch_add(1, Ordering::Relaxed));
        let rx = self.shared.open_request(&id)?;
        Ok((id, rx))
    }

    fn close_request(&self, id: &str) {
        self.shared.close_request(id);
    }

    /// Node's server count: subscribers of the request channel (every Node server and this node).
    async fn count_servers(&self) -> Result<usize, AdapterError> {
        self.shared
            .link
            .numsub(&self.channels.request)
            .await
            .map(|n| n.max(1))
            .map_err(|_| AdapterError::BrokerUnavailable(switchboard_adapter::Unreachable::Disconnected))
    }

    // --------------------------------------------------------------------------------------------
    // Inbound
    // --------------------------------------------------------------------------------------------

    /// A message on the namespace's channel or one of its room channels.
    pub(super) fn on_broadcast(&self, channel: &[u8], payload: Bytes) {
        let Some(room) = self.channels.room_of(channel) else { return };
        // Node's receiver filter: a room channel of a room with no member here is dropped unread.
        if !room.is_empty() {
            let Ok(room) = std::str::from_utf8(room) else { return };
            if !self.index.has_room(&Room::from(room)) {
                return;
            }
        }
        if message::broadcast_uid(&payload) == Some(self.uid.as_str()) {
            return;
        }
        match message::decode_broadcast(&payload, self.shared.limits()) {
            Ok(broadcast) => self.deliver(broadcast),
            Err(e) => self.shared.malformed(&self.nsp, &e),
        }
    }

    fn deliver(&self, Broadcast { uid, packet, selection }: Broadcast) {
        if uid == self.uid || packet.nsp != *self.nsp {
            return;
        }
        let encoded = socketio::encode_event(&self.nsp, &packet.event, &packet.args, None);
        let count = self.index.deliver(&BroadcastPacket::new(encoded), &selection.opts);
        if let Some(hook) = self.hook() {
            hook.on_delivered(count);
        }
    }

    /// A message on the namespace's request channel.
    pub(super) fn on_request(&self, payload: Bytes) {
        let request = match message::decode_request(&payload, self.shared.limits()) {
            Ok(request) => request,
            Err(e) => return self.shared.malformed(&self.nsp, &e),
        };
        let own = |uid: &Option<String>| uid.as_deref() == Some(self.uid.as_str());
        match request {
            Request::Sockets { request_id, rooms } => {
                let opts = BroadcastOptions { rooms, ..Default::default() };
                let ids: Vec<serde_json::Value> =
                    self.index.select(&opts).iter().map(|s| json!(s.id().as_str())).collect();
                self.respond(message::encode_sockets_response(&request_id, ids));
            }
            Request::AllRooms { uid, request_id } => {
                if own(&uid) {
                    return;
                }
                let mut rooms = self.index.rooms();
                rooms.extend(self.index.select(&BroadcastOptions::default()).iter().map(|s| s.id().room()));
                self.respond(message::encode_rooms_response(&request_id, &rooms));
            }
            Request::Rooms { join, uid, selection, rooms, request_id } => {
                // Our own requests were applied when made.
                if own(&uid) {
                    return;
                }
                self.apply_rooms(join, &selection.opts, &rooms);
                if let Some(id) = request_id {
                    self.respond(message::encode_done_response(&id));
                }
            }
            Request::Disconnect { uid, selection, close, request_id } => {
                if own(&uid) {
                    return;
                }
                for s in self.index.select(&selection.opts) {
                    s.disconnect(close);
                }
                if let Some(id) = request_id {
                    self.respond(message::encode_done_response(&id));
                }
            }
            Request::Fetch { uid, request_id, selection } => {
                if own(&uid) {
                    return;
                }
                let sockets = self.index.fetch(&selection.opts).iter().map(socket_json).collect();
                self.respond(message::encode_sockets_response(&request_id, sockets));
            }
            Request::ServerSideEmit { uid, request_id, event, args } => {
                if own(&uid) {
                    return;
                }
                let Some(hook) = self.hook() else { return };
                let ack = request_id.map(|id| {
                    let link = self.shared.clone();
                    let channel = self.channels.response.clone();
                    ServerSideAck::new(move |args: Vec<Value>| {
                        let first = args.into_iter().next().unwrap_or_default();
                        link.link.publish(channel, message::encode_server_side_response(&id, &first));
                    })
                });
                hook.on_server_side_emit(event, args, ack);
            }
            Request::Broadcast { uid, request_id, packet, selection } => {
                if own(&uid) {
                    return;
                }
                self.answer_ack_broadcast(request_id, packet, selection);
            }
        }
    }

    /// Publishes a socketsJoin/Leave/disconnectSockets request, already applied here (our own echo
    /// is dropped by uid), unless the operation is `local`; fails while Redis is unreachable.
    fn tell_others(
        &self,
        opts: &BroadcastOptions,
        payload: impl FnOnce() -> Vec<u8>,
    ) -> Result<(), AdapterError> {
        if opts.flags.local {
            return Ok(());
        }
        self.require_connected()?;
        self.publish(self.channels.request.clone(), payload())
    }

    fn respond(&self, payload: Vec<u8>) {
        // Counted by the link when dropped; nothing else to do for an answer.
        let _ = self.publish(self.channels.response.clone(), payload);
    }

    fn apply_rooms(&self, join: bool, opts: &BroadcastOptions, rooms: &[Room]) {
        for s in self.index.select(opts) {
            if join {
                let _ = self.join(s.id(), rooms);
            } else {
                for room in rooms {
                    self.leave(s.id(), room);
                }
            }
        }
    }

    /// Delivers a peer's acked broadcast here, reports the client count (always, even 0: the
    /// requester counts servers), then relays each client's ack until the peer's timeout.
    fn answer_ack_broadcast(&self, request_id: String, packet: NodePacket, selection: Selection) {
        if packet.nsp != *self.nsp {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        // Each relay holds a task until its timeout: past the limit, the broadcast is refused
        // (counted) and answered with a count of 0, so the requester does not wait for us.
        let Some(relay) = self.shared.start_relay() else {
            self.shared.malformed(&self.nsp, &message::MessageError::TooManyRelays);
            return self.respond(message::encode_client_count(&request_id, 0));
        };
        let ack_id = REMOTE_ACK_IDS + self.next_ack.fetch_add(1, Ordering::Relaxed) % REMOTE_ACK_IDS;
        let encoded = socketio::encode_event(&self.nsp, &packet.event, &packet.args, Some(ack_id));
        let packet = BroadcastPacket::new(encoded);
        let (sink, mut acks) = mpsc::unbounded_channel::<AckResponse>();
        let count = self.index.deliver_with_ack(&packet, ack_id, &selection.opts, &sink);
        drop(sink);
        self.respond(message::encode_client_count(&request_id, count));
        if let Some(hook) = self.hook() {
            hook.on_delivered(count);
        }
        if count == 0 {
            return;
        }
        let timeout = selection
            .timeout
            .map_or(self.shared.config.requests_timeout, Duration::from_millis)
            .min(MAX_ACK_RELAY);
        let shared = self.shared.clone();
        let channel = self.channels.response.clone();
        runtime.spawn(async move {
            let _relay = relay;
            let deadline = Instant::now() + timeout;
            for _ in 0..count {
                match tokio::time::timeout_at(deadline, acks.recv()).await {
                    Ok(Some(ack)) => {
                        let first = ack.args.into_iter().next().unwrap_or_default();
                        shared.link.publish(channel.clone(), message::encode_ack(&request_id, &first));
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        });
    }

    /// A message on one of the namespace's response channels.
    pub(super) fn on_response(&self, payload: Bytes) {
        let response = match message::decode_response(&payload) {
            Ok(response) => response,
            Err(e) => return self.shared.malformed(&self.nsp, &e),
        };
        let id = match &response {
            Response::Sockets { request_id, .. }
            | Response::Rooms { request_id, .. }
            | Response::ServerSideEmit { request_id, .. }
            | Response::ClientCount { request_id, .. }
            | Response::Ack { request_id, .. } => request_id.clone(),
            Response::Other => return,
        };
        self.shared.answer(&id, response);
    }
}

/// Passes a peer's client ack on to the ack stream, unless `limit` acks were passed on already.
fn relay(response: Response, sink: &mpsc::UnboundedSender<AckResponse>, relayed: &mut usize, limit: usize) {
    if let Response::Ack { data, .. } = response {
        if *relayed < limit {
            *relayed += 1;
            // Node's ack carries no socket id.
            let _ = sink.send(AckResponse { socket: SocketId::from(""), args: vec![data] });
        }
    }
}

/// A socket as Node's fetchSockets answer lists it.
fn socket_json(info: &SocketInfo) -> serde_json::Value {
    let rooms: Vec<&str> = info.rooms.iter().map(Room::as_str).collect();
    json!({ "id": info.id.as_str(), "handshake": info.handshake, "rooms": rooms, "data": info.data })
}

/// A socket from a Node fetchSockets answer; `None` if it has no string id.
fn socket_info(value: &Value, nsp: &str) -> Option<SocketInfo> {
    let json = message::node_json(value);
    let id = json.get("id")?.as_str()?;
    let rooms = match json.get("rooms") {
        Some(serde_json::Value::Array(rooms)) => {
            rooms.iter().filter_map(|r| r.as_str()).map(Room::from).collect()
        }
        _ => Vec::new(),
    };
    Some(SocketInfo {
        id: SocketId::from(id),
        nsp: nsp.to_owned(),
        rooms,
        handshake: json.get("handshake").cloned().unwrap_or_default(),
        data: json.get("data").cloned().unwrap_or_default(),
    })
}

/// The event name and arguments of an encoded broadcast packet (binary attachments put back).
fn event_of(packet: &BroadcastPacket) -> Option<(String, Vec<Value>)> {
    let encoded = packet.packet();
    let text = std::str::from_utf8(&encoded.text).ok()?;
    let packet = match Packet::decode(text).ok()? {
        Decoded::Complete(packet) => packet,
        Decoded::NeedsAttachments(mut partial) => {
            let mut done = None;
            for attachment in &encoded.attachments {
                done = partial.push(attachment.clone()).ok()?;
            }
            done?
        }
    };
    match packet {
        Packet::Event { event, args, .. } => Some((event, args)),
        _ => None,
    }
}

impl Adapter for NodeFormatAdapter {
    fn local(&self) -> &RoomIndex {
        &self.index
    }

    fn broadcast(
        &self,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) -> BoxFuture<'_, Result<usize, AdapterError>> {
        let count = self.index.deliver(&packet, &opts);
        if !opts.flags.local {
            if let Some((event, args)) = event_of(&packet) {
                let payload = message::encode_broadcast(&self.uid, &self.nsp, &event, &args, &opts);
                // Local delivery happened; a dropped publish is counted by the link.
                let _ = self.publish(self.channels.for_rooms(&opts.rooms), payload);
            }
        }
        Box::pin(std::future::ready(Ok(count)))
    }

    fn broadcast_with_ack(
        &self,
        packet: BroadcastPacket,
        ack_id: u64,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<AckStream, AdapterError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let (sink, responses) = mpsc::unbounded_channel();
            if opts.flags.local {
                let local = self.index.deliver_with_ack(&packet, ack_id, &opts, &sink);
                return Ok(AckStream { expected: local, local, deadline, responses });
            }
            self.require_connected()?;
            let servers = self.count_servers().await?;
            let (request_id, mut rx) = self.open_request()?;
            let local = self.index.deliver_with_ack(&packet, ack_id, &opts, &sink);
            let Some((event, args)) = event_of(&packet) else {
                self.close_request(&request_id);
                return Ok(AckStream { expected: local, local, deadline, responses });
            };
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let payload =
                message::encode_ack_broadcast(&self.uid, &request_id, &self.nsp, &event, &args, &opts, ms);
            if let Err(e) = self.publish(self.channels.request.clone(), payload) {
                self.close_request(&request_id);
                tracing::debug!(error = %e, "acked broadcast not published; local sockets only");
                return Ok(AckStream { expected: local, local, deadline, responses });
            }
            // Wait for every other server's client count (acks that come meanwhile pass on). No
            // more acks are passed on than the counts announce (at most `max_remote_acks`), so a
            // peer repeating acks cannot grow the stream.
            let max = self.shared.config.max_remote_acks;
            let mut relayed = 0;
            let mut reported = 1;
            let mut remote: usize = 0;
            while reported < servers {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Response::ClientCount { count, .. })) => {
                        reported += 1;
                        let count = usize::try_from(count).unwrap_or(usize::MAX);
                        remote = remote.saturating_add(count).min(max);
                    }
                    Ok(Some(other)) => relay(other, &sink, &mut relayed, max),
                    Ok(None) | Err(_) => break,
                }
            }
            // Acks keep coming until the deadline; then the request is dropped (Node keeps its
            // ack state for `flags.timeout` too).
            let shared = self.shared.clone();
            tokio::spawn(async move {
                while relayed < remote {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(response)) => relay(response, &sink, &mut relayed, remote),
                        Ok(None) | Err(_) => break,
                    }
                }
                shared.close_request(&request_id);
            });
            Ok(AckStream { expected: local + remote, local, deadline, responses })
        })
    }

    fn fetch_sockets(&self, opts: BroadcastOptions) -> BoxFuture<'_, Result<Vec<SocketInfo>, AdapterError>> {
        Box::pin(async move {
            let mut sockets = self.index.fetch(&opts);
            if opts.flags.local {
                return Ok(sockets);
            }
            self.require_connected()?;
            let servers = self.count_servers().await?;
            if servers <= 1 {
                return Ok(sockets);
            }
            let (request_id, mut rx) = self.open_request()?;
            let payload = message::encode_fetch(&self.uid, &request_id, &opts);
            if let Err(e) = self.publish(self.channels.request.clone(), payload) {
                self.close_request(&request_id);
                return Err(e);
            }
            let deadline = Instant::now() + self.shared.config.requests_timeout;
            let mut answered = 1;
            while answered < servers {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Response::Sockets { sockets: found, .. })) => {
                        answered += 1;
                        sockets.extend(found.iter().filter_map(|s| socket_info(s, &self.nsp)));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        self.close_request(&request_id);
                        return Err(AdapterError::Timeout {
                            missing: servers - answered,
                            partial: PartialReplies::Sockets(sockets),
                        });
                    }
                }
            }
            self.close_request(&request_id);
            Ok(sockets)
        })
    }

    fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.apply_rooms(true, &opts, &rooms);
        let sent = self.tell_others(&opts, || message::encode_rooms(&self.uid, true, &opts, &rooms));
        Box::pin(std::future::ready(sent))
    }

    fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.apply_rooms(false, &opts, &rooms);
        let sent = self.tell_others(&opts, || message::encode_rooms(&self.uid, false, &opts, &rooms));
        Box::pin(std::future::ready(sent))
    }

    fn disconnect_sockets(
        &self,
        opts: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<'_, Result<(), AdapterError>> {
        for s in self.index.select(&opts) {
            s.disconnect(close);
        }
        let sent = self.tell_others(&opts, || message::encode_disconnect(&self.uid, &opts, close));
        Box::pin(std::future::ready(sent))
    }

    fn server_side_emit(
        &self,
        event: String,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'_, Result<Vec<Vec<Value>>, AdapterError>> {
        Box::pin(async move {
            self.require_connected()?;
            let Some(timeout) = timeout else {
                let payload = message::encode_server_side_emit(&self.uid, None, &event, &args);
                self.publish(self.channels.request.clone(), payload)?;
                return Ok(Vec::new());
            };
            let expected = self.count_servers().await? - 1;
            let (request_id, mut rx) = self.open_request()?;
            let payload = message::encode_server_side_emit(&self.uid, Some(&request_id), &event, &args);
            if let Err(e) = self.publish(self.channels.request.clone(), payload) {
                self.close_request(&request_id);
                return Err(e);
            }
            let deadline = Instant::now() + timeout;
            // `expected` comes from Redis (NUMSUB): never sized from it.
            let mut answers = Vec::new();
            while answers.len() < expected {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Response::ServerSideEmit { data, .. })) => answers.push(vec![data]),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        self.close_request(&request_id);
                        return Err(AdapterError::Timeout {
                            missing: expected - answers.len(),
                            partial: PartialReplies::Answers(answers),
                        });
                    }
                }
            }
            self.close_request(&request_id);
            Ok(answers)
        })
    }

    fn server_count(&self) -> BoxFuture<'_, Result<usize, AdapterError>> {
        Box::pin(self.count_servers())
    }

    fn set_inbound_handler(&self, handler: Arc<dyn InboundHandler>) {
        *self.hook.write().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }
}

impl Drop for NodeFormatAdapter {
    fn drop(&mut self) {
        self.shared.unregister(self);
    }
}
