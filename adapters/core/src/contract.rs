//! The adapter contract: a suite any [`Adapter`] runs against itself (feature `contract`).
//!
//! A [`Cluster`] is one adapter per node, all for the same namespace (one node for the in-memory
//! adapter, several connected through a broker for Redis or NATS). Each `case_*` function places
//! recording [`TestSocket`]s on the nodes under fresh ids and rooms, drives the adapters and
//! asserts by panicking, so it is meant to be awaited from a `#[tokio::test]`. [`run_all`] runs
//! every case in sequence; each case removes its sockets when it ends, even when it fails.
//!
//! Assertions wait for what they expect (polling up to [`Cluster::timeout`]) instead of sleeping.
//! To check that nothing *else* arrived, a case waits [`Cluster::quiet`], then broadcasts a marker
//! from the emitting node to every socket and waits for it everywhere before counting.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use switchboard_adapter::MemoryAdapter;
//! use switchboard_adapter::contract::{Cluster, run_all};
//!
//! # async fn demo() {
//! run_all(&Cluster::new(vec![Arc::new(MemoryAdapter::new())])).await;
//! // A broker-backed adapter: one adapter per node for the same namespace, plus some slack.
//! # let nodes = vec![];
//! run_all(&Cluster::new(nodes).with_quiet(Duration::from_millis(50))).await;
//! # }
//! ```

// Test support: a broken expectation must fail the calling test loudly, so this module panics
// (assert!, expect) by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use switchboard_protocol::socketio::{Value, encode_event};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::adapter::{Adapter, BoxFuture, ServerSideAck, ServerSideEmitHandler};
use crate::error::AdapterError;
use crate::types::{
    AckResponse, BroadcastFlags, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId, SocketInfo,
};

const POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------------
// The recording socket.

/// One packet a [`TestSocket`] was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The Socket.IO packet text.
    pub text: String,
    /// The `volatile` argument of `deliver` (false for `deliver_with_ack`).
    pub volatile: bool,
    /// The ack id of `deliver_with_ack`; `None` for `deliver`.
    pub ack_id: Option<u64>,
}

#[derive(Debug, Default)]
struct Record {
    deliveries: Vec<Delivery>,
    pending_acks: Vec<(u64, mpsc::UnboundedSender<AckResponse>)>,
    disconnects: Vec<bool>,
}

/// A [`LocalSocket`] that records what the adapter does to it and answers acks on demand.
///
/// It cannot reach its adapter: `disconnect` is only recorded, and the caller removes the socket.
#[derive(Debug)]
pub struct TestSocket {
    id: SocketId,
    nsp: String,
    handshake: serde_json::Value,
    data: serde_json::Value,
    record: Mutex<Record>,
}

impl TestSocket {
    /// A socket of namespace `nsp`, with `{"id": id}` as its data and a small fixed handshake.
    pub fn new(id: impl Into<SocketId>, nsp: &str) -> Arc<Self> {
        let id = id.into();
        let data = serde_json::json!({ "id": id.as_str() });
        Self::with_data(id, nsp, data)
    }

    /// A socket of namespace `nsp` with the given application data.
    pub fn with_data(id: impl Into<SocketId>, nsp: &str, data: serde_json::Value) -> Arc<Self> {
        let id = id.into();
        let handshake = serde_json::json!({ "address": "test", "query": { "sid": id.as_str() } });
        Arc::new(Self { id, nsp: nsp.to_owned(), handshake, data, record: Mutex::new(Record::default()) })
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every packet handed to the socket, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.record().deliveries.clone()
    }

    /// How many times the packet with this text was handed to the socket.
    pub fn count(&self, text: &str) -> usize {
        self.record().deliveries.iter().filter(|d| d.text == text).count()
    }

    /// The deliveries of the packet with this text.
    pub fn deliveries_of(&self, text: &str) -> Vec<Delivery> {
        self.record().deliveries.iter().filter(|d| d.text == text).cloned().collect()
    }

    /// The ack ids registered by `deliver_with_ack` and not answered yet.
    pub fn pending_acks(&self) -> Vec<u64> {
        self.record().pending_acks.iter().map(|(id, _)| *id).collect()
    }

    /// Answers every pending ack with `args` through the sink the adapter gave; returns how many.
    pub fn answer_acks(&self, args: &[Value]) -> usize {
        let pending = std::mem::take(&mut self.record().pending_acks);
        let n = pending.len();
        for (_, sink) in pending {
            // A closed sink means the adapter stopped listening (deadline passed): nothing to do.
            let _ = sink.send(AckResponse { socket: self.id.clone(), args: args.to_vec() });
        }
        n
    }

    /// The `close` argument of every `disconnect` call, in order.
    pub fn disconnects(&self) -> Vec<bool> {
        self.record().disconnects.clone()
    }
}

impl LocalSocket for TestSocket {
    fn id(&self) -> &SocketId {
        &self.id
    }

    fn deliver(&self, packet: &BroadcastPacket, volatile: bool) {
        let text = String::from_utf8_lossy(&packet.packet().text).into_owned();
        self.record().deliveries.push(Delivery { text, volatile, ack_id: None });
    }

    fn deliver_with_ack(
        &self,
        packet: &BroadcastPacket,
        ack_id: u64,
        sink: mpsc::UnboundedSender<AckResponse>,
    ) {
        let text = String::from_utf8_lossy(&packet.packet().text).into_owned();
        let mut record = self.record();
        record.deliveries.push(Delivery { text, volatile: false, ack_id: Some(ack_id) });
        record.pending_acks.push((ack_id, sink));
    }

    fn info(&self) -> SocketInfo {
        SocketInfo {
            id: self.id.clone(),
            nsp: self.nsp.clone(),
            rooms: Vec::new(),
            handshake: self.handshake.clone(),
            data: self.data.clone(),
        }
    }

    fn disconnect(&self, close: bool) {
        self.record().disconnects.push(close);
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster under test.

/// An async hook awaited after membership changes, before the next broadcast.
pub type Settle = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The adapters under test: one per node, all for the same namespace and broker.
#[derive(Clone)]
pub struct Cluster {
    /// One adapter per node (at least one).
    pub nodes: Vec<Arc<dyn Adapter>>,
    /// The namespace the adapters serve (default `/`).
    pub nsp: String,
    /// How long to wait for an expected effect before failing (default 2 s).
    pub timeout: Duration,
    /// How long to keep watching for unexpected effects once the expected ones showed (default 0).
    pub quiet: Duration,
    /// Awaited after every membership change (joins, leaves, removals); none by default.
    pub settle: Option<Settle>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .field("nsp", &self.nsp)
            .field("timeout", &self.timeout)
            .field("quiet", &self.quiet)
            .field("settle", &self.settle.is_some())
            .finish()
    }
}

impl Cluster {
    /// A cluster of these nodes with the defaults; panics on an empty list.
    pub fn new(nodes: Vec<Arc<dyn Adapter>>) -> Self {
        assert!(!nodes.is_empty(), "a cluster needs at least one node");
        Self {
            nodes,
            nsp: "/".to_owned(),
            timeout: Duration::from_secs(2),
            quiet: Duration::ZERO,
            settle: None,
        }
    }

    /// Sets the namespace the adapters serve.
    pub fn with_nsp(mut self, nsp: impl Into<String>) -> Self {
        self.nsp = nsp.into();
        self
    }

    /// Sets how long to wait for an expected effect.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long to watch for unexpected effects (remote adapters: a few tens of ms).
    pub fn with_quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Sets the hook awaited after membership changes (e.g. until broker subscriptions are live).
    pub fn with_settle(
        mut self,
        settle: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.settle = Some(Arc::new(settle));
        self
    }

    fn last(&self) -> usize {
        self.nodes.len() - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Per-case fixture.

static NEXT_CASE: AtomicU64 = AtomicU64::new(0);

struct Placed {
    node: usize,
    socket: Arc<TestSocket>,
    removed: bool,
}

/// One case's sockets and rooms, under a fresh prefix; removes its sockets when dropped.
struct Fixture<'c> {
    cluster: &'c Cluster,
    tag: String,
    placed: Vec<Placed>,
    labels: u64,
}

impl<'c> Fixture<'c> {
    fn new(cluster: &'c Cluster, case: &str) -> Self {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{case}-{}-{n}", std::process::id());
        Self { cluster, tag, placed: Vec::new(), labels: 0 }
    }

    fn node(&self, i: usize) -> &Arc<dyn Adapter> {
        &self.cluster.nodes[i]
    }

    fn room(&self, name: &str) -> Room {
        Room::from(format!("{}.{name}", self.tag))
    }

    fn rooms(&self, names: &[&str]) -> Vec<Room> {
        names.iter().map(|n| self.room(n)).collect()
    }

    /// Adds socket `name` on node `node` and joins it to `rooms`.
    fn socket(&mut self, node: usize, name: &str, rooms: &[&str]) -> Arc<TestSocket> {
        let id = SocketId::from(format!("{}-{name}", self.tag));
        let socket = TestSocket::new(id.clone(), &self.cluster.nsp);
        let adapter = self.node(node).clone();
        adapter.add_socket(socket.clone());
        adapter.join(&id, &self.rooms(rooms));
        self.placed.push(Placed { node, socket: socket.clone(), removed: false });
        socket
    }

    /// One socket per node named `{name}{node}`, each joined to `rooms`.
    fn per_node(&mut self, name: &str, rooms: &[&str]) -> Vec<Arc<TestSocket>> {
        (0..self.cluster.nodes.len()).map(|i| self.socket(i, &format!("{name}{i}"), rooms)).collect()
    }

    fn node_of(&self, socket: &Arc<TestSocket>) -> usize {
        self.placed
            .iter()
            .find(|p| Arc::ptr_eq(&p.socket, socket))
            .map(|p| p.node)
            .expect("socket of this fixture")
    }

    fn remove(&mut self, socket: &Arc<TestSocket>) {
        let placed =
            self.placed.iter_mut().find(|p| Arc::ptr_eq(&p.socket, socket)).expect("socket of this fixture");
        self.cluster.nodes[placed.node].remove_socket(socket.id());
        placed.removed = true;
    }

    fn live(&self) -> Vec<Arc<TestSocket>> {
        self.placed.iter().filter(|p| !p.removed).map(|p| p.socket.clone()).collect()
    }

    fn all(&self) -> Vec<Arc<TestSocket>> {
        self.placed.iter().map(|p| p.socket.clone()).collect()
    }

    fn ids(&self) -> BTreeSet<String> {
        self.placed.iter().map(|p| p.socket.id().to_string()).collect()
    }

    async fn settle(&self) {
        if let Some(settle) = &self.cluster.settle {
            settle().await;
        }
    }

    /// A fresh event packet and its text.
    fn packet(&mut self, label: &str, ack_id: Option<u64>) -> (BroadcastPacket, String) {
        self.labels += 1;
        let arg = Value::String(format!("{}:{label}:{}", self.tag, self.labels));
        let encoded = encode_event(&self.cluster.nsp, "contract", &[arg], ack_id);
        let text = String::from_utf8_lossy(&encoded.text).into_owned();
        (BroadcastPacket::new(encoded), text)
    }

    /// Broadcasts a fresh packet from node `from`; returns its text and the local recipient count.
    async fn broadcast(&mut self, from: usize, label: &str, opts: BroadcastOptions) -> (String, usize) {
        let (packet, text) = self.packet(label, None);
        let n = self
            .node(from)
            .broadcast(packet, opts)
            .await
            .unwrap_or_else(|e| panic!("broadcast `{label}`: {e}"));
        (text, n)
    }

    /// Waits until `ok` holds, polling up to the cluster timeout.
    async fn eventually(&self, mut ok: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + self.cluster.timeout;
        loop {
            if ok() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the async check holds, polling up to the cluster timeout.
    async fn eventually_async<F, Fut>(&self, mut ok: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + self.cluster.timeout;
        loop {
            if ok().await {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lets stray effects land: waits `quiet`, then a marker from `from` must reach every live socket.
    async fn flush(&mut self, from: usize) {
        if !self.cluster.quiet.is_zero() {
            tokio::time::sleep(self.cluster.quiet).await;
        }
        let (marker, _) = self.broadcast(from, "marker", BroadcastOptions::default()).await;
        let live = self.live();
        let ok = self.eventually(|| live.iter().all(|s| s.count(&marker) > 0)).await;
        assert!(
            ok,
            "[{}] marker broadcast from node {from} did not reach {:?}",
            self.tag,
            missing(&live, &marker)
        );
    }

    /// Asserts that the packet `text` sent from node `from` reaches exactly `expected` (each once)
    /// among this fixture's sockets.
    async fn expect_exactly(&mut self, from: usize, text: &str, expected: &[&Arc<TestSocket>], what: &str) {
        let ok = self.eventually(|| expected.iter().all(|s| s.count(text) > 0)).await;
        let tag = &self.tag;
        assert!(ok, "[{tag}] {what}: not delivered to {:?}", missing(expected.iter().copied(), text));
        self.flush(from).await;
        let tag = &self.tag;
        for s in self.all() {
            let want = usize::from(expected.iter().any(|e| Arc::ptr_eq(e, &s)));
            let got = s.count(text);
            assert_eq!(
                got,
                want,
                "[{tag}] {what}: socket {} got the packet {got} time(s), expected {want}",
                s.id()
            );
        }
    }

    /// fetch_sockets from node `from`, restricted to this fixture's sockets, by id.
    async fn fetch(&self, from: usize, opts: BroadcastOptions) -> BTreeMap<String, SocketInfo> {
        let infos =
            self.node(from).fetch_sockets(opts).await.unwrap_or_else(|e| panic!("fetch_sockets: {e}"));
        let ids = self.ids();
        let mut out = BTreeMap::new();
        for info in infos {
            let id = info.id.to_string();
            if ids.contains(&id) {
                let dup = out.insert(id.clone(), info);
                assert!(dup.is_none(), "[{}] fetch_sockets from node {from} listed {id} twice", self.tag);
            }
        }
        out
    }
}

impl Drop for Fixture<'_> {
    fn drop(&mut self) {
        for p in self.placed.iter().filter(|p| !p.removed) {
            self.cluster.nodes[p.node].remove_socket(p.socket.id());
        }
    }
}

fn missing<'a>(sockets: impl IntoIterator<Item = &'a Arc<TestSocket>>, text: &str) -> Vec<SocketId> {
    sockets.into_iter().filter(|s| s.count(text) == 0).map(|s| s.id().clone()).collect()
}

fn ids_of<'a>(sockets: impl IntoIterator<Item = &'a Arc<TestSocket>>) -> BTreeSet<String> {
    sockets.into_iter().map(|s| s.id().to_string()).collect()
}

fn opts(rooms: Vec<Room>, except: Vec<Room>) -> BroadcastOptions {
    BroadcastOptions { rooms, except, flags: BroadcastFlags::default() }
}

fn to(rooms: Vec<Room>) -> BroadcastOptions {
    opts(rooms, Vec::new())
}

fn local_flag() -> BroadcastFlags {
    BroadcastFlags { local: true, ..BroadcastFlags::default() }
}

/// Polls `ok` every 2 ms until it holds or `within` passes; on tokio's clock, so tests with a
/// paused clock work too. For adapter tests that wait for an effect instead of sleeping.
pub async fn eventually<F, Fut>(within: Duration, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if ok().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A fetchSockets and a serverSideEmit (5 s timeout) started in the background on one adapter,
/// for fault tests that break the broker under requests in flight.
pub struct PendingRequests {
    fetch: tokio::task::JoinHandle<Result<Vec<SocketInfo>, AdapterError>>,
    emit: tokio::task::JoinHandle<Result<Vec<Vec<Value>>, AdapterError>>,
}

impl PendingRequests {
    /// Starts both requests on `adapter`.
    pub fn start(adapter: Arc<dyn Adapter>) -> Self {
        let fetch = tokio::spawn({
            let adapter = adapter.clone();
            async move { adapter.fetch_sockets(BroadcastOptions::default()).await }
        });
        let emit = tokio::spawn(async move {
            adapter.server_side_emit("x".into(), vec![], Some(Duration::from_secs(5))).await
        });
        Self { fetch, emit }
    }

    /// Waits for both and asserts each failed with `BrokerUnavailable`.
    pub async fn assert_broker_unavailable(self) {
        let fetched = self.fetch.await.expect("fetchSockets task");
        assert!(matches!(fetched, Err(AdapterError::BrokerUnavailable(_))), "{fetched:?}");
        let emitted = self.emit.await.expect("serverSideEmit task");
        assert!(matches!(emitted, Err(AdapterError::BrokerUnavailable(_))), "{emitted:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Runs every case in sequence, each with fresh socket ids and rooms.
pub async fn run_all(cluster: &Cluster) {
    case_broadcast_all(cluster).await;
    case_broadcast_room(cluster).await;
    case_broadcast_rooms_dedup(cluster).await;
    case_broadcast_except(cluster).await;
    case_socket_id_room(cluster).await;
    case_local_flag(cluster).await;
    case_volatile_flag(cluster).await;
    case_broadcast_with_ack(cluster).await;
    case_fetch_sockets(cluster).await;
    case_add_del_sockets(cluster).await;
    case_disconnect_sockets(cluster).await;
    case_leave_and_remove(cluster).await;
    case_server_count(cluster).await;
    case_server_side_emit(cluster).await;
    case_join_confirmed(cluster).await;
}

/// A broadcast to all reaches every socket on every node once, from any node; it resolves to the
/// emitting node's local recipient count.
pub async fn case_broadcast_all(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "all");
    fx.per_node("a", &[]);
    fx.per_node("b", &["r"]);
    fx.settle().await;
    for from in 0..cluster.nodes.len() {
        let (text, n) = fx.broadcast(from, "all", BroadcastOptions::default()).await;
        let everyone = fx.all();
        fx.expect_exactly(from, &text, &everyone.iter().collect::<Vec<_>>(), "broadcast to all").await;
        let local = fx.node(from).local().len();
        assert_eq!(
            n, local,
            "[{}] broadcast from node {from} resolved to {n}, node has {local} sockets",
            fx.tag
        );
    }
}

/// A broadcast to a room reaches its members on every node, and no one else.
pub async fn case_broadcast_room(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "room");
    let members = fx.per_node("a", &["r"]);
    fx.per_node("b", &["other"]);
    fx.per_node("c", &[]);
    fx.settle().await;
    for from in [0, cluster.last()] {
        let (text, n) = fx.broadcast(from, "room", to(fx.rooms(&["r"]))).await;
        fx.expect_exactly(from, &text, &members.iter().collect::<Vec<_>>(), "broadcast to a room").await;
        assert_eq!(n, 1, "[{}] room broadcast from node {from}: local recipients", fx.tag);
    }
    let (text, n) = fx.broadcast(0, "nobody", to(fx.rooms(&["empty"]))).await;
    fx.expect_exactly(0, &text, &[], "broadcast to a room with no members").await;
    assert_eq!(n, 0, "[{}] broadcast to an unknown room: local recipients", fx.tag);
}

/// A broadcast to several rooms (own id rooms among them) reaches each member once.
pub async fn case_broadcast_rooms_dedup(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "dedup");
    let both = fx.per_node("a", &["r", "s"]);
    let r_only = fx.per_node("b", &["r"]);
    let s_only = fx.per_node("c", &["s"]);
    let none = fx.per_node("d", &[]);
    fx.settle().await;
    let last = cluster.last();

    let mut expected: Vec<&Arc<TestSocket>> = both.iter().chain(&r_only).chain(&s_only).collect();
    let (text, n) = fx.broadcast(0, "r+s", to(fx.rooms(&["r", "s"]))).await;
    fx.expect_exactly(0, &text, &expected, "broadcast to two overlapping rooms").await;
    assert_eq!(n, 3, "[{}] broadcast to two rooms: local recipients", fx.tag);

    let mut rooms = fx.rooms(&["r", "s", "r"]);
    rooms.push(both[0].id().room());
    rooms.push(none[last].id().room());
    expected.push(&none[last]);
    let (text, _) = fx.broadcast(last, "r+s+ids", to(rooms)).await;
    fx.expect_exactly(last, &text, &expected, "broadcast to rooms and own id rooms").await;
}

/// `except` removes the sockets of any excepted room (own id rooms included) from the selection.
pub async fn case_broadcast_except(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "except");
    let a = fx.per_node("a", &["r"]);
    let b = fx.per_node("b", &["r", "e"]);
    fx.per_node("c", &["e"]);
    let d = fx.per_node("d", &[]);
    fx.settle().await;
    let last = cluster.last();

    let expected: Vec<_> = a.iter().chain(&d).collect();
    let (text, _) = fx.broadcast(0, "all-e", opts(vec![], fx.rooms(&["e"]))).await;
    fx.expect_exactly(0, &text, &expected, "broadcast to all except a room").await;

    let (text, n) = fx.broadcast(last, "r-e", opts(fx.rooms(&["r"]), fx.rooms(&["e"]))).await;
    fx.expect_exactly(last, &text, &a.iter().collect::<Vec<_>>(), "broadcast to a room except a room").await;
    assert_eq!(n, 1, "[{}] room except room: local recipients", fx.tag);

    let expected: Vec<_> = a.iter().skip(1).chain(&b).collect();
    let (text, _) = fx.broadcast(last, "r-a0", opts(fx.rooms(&["r"]), vec![a[0].id().room()])).await;
    fx.expect_exactly(last, &text, &expected, "broadcast to a room except a socket id").await;

    let (text, n) = fx.broadcast(0, "r-r", opts(fx.rooms(&["r"]), fx.rooms(&["e", "r"]))).await;
    fx.expect_exactly(0, &text, &[], "broadcast to a room except itself").await;
    assert_eq!(n, 0, "[{}] room except itself: local recipients", fx.tag);
}

/// Every socket is in the room named by its id: `to(id)` reaches that socket only, from any node.
pub async fn case_socket_id_room(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "own");
    let a = fx.per_node("a", &["r"]);
    fx.per_node("b", &[]);
    fx.settle().await;
    let last = cluster.last();
    let target = &a[last];
    let (text, _) = fx.broadcast(0, "to-id", to(vec![target.id().room()])).await;
    fx.expect_exactly(0, &text, &[target], "broadcast to a socket id").await;
    let (text, n) = fx.broadcast(last, "to-id-local", to(vec![target.id().room()])).await;
    fx.expect_exactly(last, &text, &[target], "broadcast to a socket id on its own node").await;
    assert_eq!(n, 1, "[{}] broadcast to a local socket id: local recipients", fx.tag);
}

/// The `local` flag restricts a broadcast to the emitting node's sockets.
pub async fn case_local_flag(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "local");
    let a = fx.per_node("a", &["r"]);
    let b = fx.per_node("b", &[]);
    fx.settle().await;
    let from = cluster.last();

    let mut local_all = to(vec![]);
    local_all.flags = local_flag();
    let (text, n) = fx.broadcast(from, "local-all", local_all).await;
    fx.expect_exactly(from, &text, &[&a[from], &b[from]], "local broadcast to all").await;
    let local = fx.node(from).local().len();
    assert_eq!(n, local, "[{}] local broadcast to all: local recipients", fx.tag);

    let mut local_room = to(fx.rooms(&["r"]));
    local_room.flags = local_flag();
    let (text, n) = fx.broadcast(from, "local-room", local_room).await;
    fx.expect_exactly(from, &text, &[&a[from]], "local broadcast to a room").await;
    assert_eq!(n, 1, "[{}] local broadcast to a room: local recipients", fx.tag);
}

/// The `volatile` flag reaches `deliver` on every node, and is false when not set.
pub async fn case_volatile_flag(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "volatile");
    fx.per_node("a", &["r"]);
    fx.per_node("b", &[]);
    fx.settle().await;
    for volatile in [true, false] {
        let mut o = to(vec![]);
        o.flags.volatile = volatile;
        let (text, _) = fx.broadcast(0, "volatile", o).await;
        let everyone = fx.all();
        fx.expect_exactly(0, &text, &everyone.iter().collect::<Vec<_>>(), "volatile broadcast").await;
        for s in &everyone {
            for d in s.deliveries_of(&text) {
                assert_eq!(d.volatile, volatile, "[{}] socket {}: volatile flag not passed", fx.tag, s.id());
                assert_eq!(
                    d.ack_id,
                    None,
                    "[{}] socket {}: plain broadcast delivered with an ack",
                    fx.tag,
                    s.id()
                );
            }
        }
    }
}

/// broadcast_with_ack: `expected` counts the targeted sockets on all nodes, their answers arrive
/// through the stream, and the ones that never answer are reported missing after the timeout.
pub async fn case_broadcast_with_ack(cluster: &Cluster) {
    const ACK_ID: u64 = 7;
    let mut fx = Fixture::new(cluster, "ack");
    let mut members = fx.per_node("a", &["r"]);
    members.push(fx.socket(0, "extra", &["r"]));
    fx.per_node("b", &[]);
    fx.settle().await;
    let ack_timeout = cluster.timeout / 4;
    // The last node's member never answers (a remote one when there are several nodes).
    let silent = members[cluster.last()].clone();

    let (packet, text) = fx.packet("ack", Some(ACK_ID));
    let started = Instant::now();
    let stream = fx
        .node(0)
        .broadcast_with_ack(packet, ACK_ID, to(fx.rooms(&["r"])), ack_timeout)
        .await
        .unwrap_or_else(|e| panic!("broadcast_with_ack: {e}"));
    assert_eq!(stream.expected, members.len(), "[{}] broadcast_with_ack: expected answers", fx.tag);

    let ok = fx.eventually(|| members.iter().all(|s| s.pending_acks() == [ACK_ID])).await;
    assert!(
        ok,
        "[{}] ack broadcast not registered on {:?}",
        fx.tag,
        members.iter().filter(|s| s.pending_acks() != [ACK_ID]).map(|s| s.id()).collect::<Vec<_>>()
    );
    for s in &members {
        for d in s.deliveries_of(&text) {
            assert_eq!(
                d.ack_id,
                Some(ACK_ID),
                "[{}] socket {}: delivered without its ack id",
                fx.tag,
                s.id()
            );
        }
    }
    let mut answered = BTreeSet::new();
    for s in members.iter().filter(|s| !Arc::ptr_eq(s, &silent)) {
        assert_eq!(s.answer_acks(&[Value::String(s.id().to_string())]), 1);
        answered.insert(s.id().to_string());
    }

    let (responses, missing) = stream.collect().await;
    assert_eq!(missing, 1, "[{}] broadcast_with_ack: missing answers", fx.tag);
    let got: BTreeSet<String> = responses.iter().map(|r| r.socket.to_string()).collect();
    assert_eq!(got, answered, "[{}] broadcast_with_ack: who answered", fx.tag);
    assert_eq!(responses.len(), answered.len(), "[{}] broadcast_with_ack: an answer came twice", fx.tag);
    for r in &responses {
        assert_eq!(
            r.args,
            vec![Value::String(r.socket.to_string())],
            "[{}] ack args of {}",
            fx.tag,
            r.socket
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= ack_timeout, "[{}] the stream ended before its timeout ({elapsed:?})", fx.tag);
    assert!(
        elapsed < ack_timeout + cluster.timeout,
        "[{}] the stream outlived its timeout ({elapsed:?})",
        fx.tag
    );
    fx.expect_exactly(0, &text, &members.iter().collect::<Vec<_>>(), "broadcast with ack").await;

    // Nobody targeted: nothing to expect, and the stream ends at once.
    let (packet, _) = fx.packet("ack-nobody", Some(ACK_ID + 1));
    let stream = fx
        .node(cluster.last())
        .broadcast_with_ack(packet, ACK_ID + 1, to(fx.rooms(&["empty"])), ack_timeout)
        .await
        .unwrap_or_else(|e| panic!("broadcast_with_ack: {e}"));
    assert_eq!(stream.expected, 0, "[{}] broadcast_with_ack to nobody: expected answers", fx.tag);
    let (responses, missing) = stream.collect().await;
    assert!(responses.is_empty() && missing == 0, "[{}] broadcast_with_ack to nobody", fx.tag);
}

/// fetch_sockets returns the selected sockets of every node once, with their rooms (own id room
/// included), namespace, handshake and data; with the `local` flag, only the node's own.
pub async fn case_fetch_sockets(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "fetch");
    let a = fx.per_node("a", &["r", "s"]);
    let b = fx.per_node("b", &["s"]);
    let c = fx.per_node("c", &[]);
    fx.settle().await;
    let last = cluster.last();
    let tag = fx.tag.clone();

    for from in 0..cluster.nodes.len() {
        let all = fx.fetch(from, to(vec![])).await;
        assert_eq!(
            all.keys().cloned().collect::<BTreeSet<_>>(),
            fx.ids(),
            "[{tag}] fetch_sockets all from node {from}"
        );
        for s in fx.all() {
            let info = &all[s.id().as_str()];
            let want = s.info();
            assert_eq!(info.nsp, want.nsp, "[{tag}] fetch_sockets: nsp of {}", s.id());
            assert_eq!(info.handshake, want.handshake, "[{tag}] fetch_sockets: handshake of {}", s.id());
            assert_eq!(info.data, want.data, "[{tag}] fetch_sockets: data of {}", s.id());
            let mut rooms: BTreeSet<Room> =
                fx.node(fx.node_of(&s)).local().rooms_of(s.id()).into_iter().collect();
            rooms.insert(s.id().room());
            let got: BTreeSet<Room> = info.rooms.iter().cloned().collect();
            assert_eq!(got, rooms, "[{tag}] fetch_sockets: rooms of {}", s.id());
            assert_eq!(got.len(), info.rooms.len(), "[{tag}] fetch_sockets: duplicate rooms for {}", s.id());
        }

        let in_r = fx.fetch(from, to(fx.rooms(&["r"]))).await;
        assert_eq!(
            in_r.keys().cloned().collect::<BTreeSet<_>>(),
            ids_of(&a),
            "[{tag}] fetch_sockets in r from node {from}"
        );
        let ar = &in_r[a[0].id().as_str()];
        let want: BTreeSet<Room> = [a[0].id().room(), fx.room("r"), fx.room("s")].into();
        assert_eq!(
            ar.rooms.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "[{tag}] fetch_sockets: rooms of a0"
        );

        let s_not_r = fx.fetch(from, opts(fx.rooms(&["s"]), fx.rooms(&["r"]))).await;
        assert_eq!(
            s_not_r.keys().cloned().collect::<BTreeSet<_>>(),
            ids_of(&b),
            "[{tag}] fetch_sockets s except r"
        );

        let one = fx.fetch(from, to(vec![c[last].id().room()])).await;
        assert_eq!(
            one.keys().cloned().collect::<BTreeSet<_>>(),
            ids_of([&c[last]]),
            "[{tag}] fetch_sockets by id"
        );

        let mut local = to(vec![]);
        local.flags = local_flag();
        let local = fx.fetch(from, local).await;
        let want = ids_of([&a[from], &b[from], &c[from]]);
        assert_eq!(
            local.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "[{tag}] local fetch_sockets on node {from}"
        );
    }
}

/// add_sockets / del_sockets change the membership of the selected sockets on every node; later
/// room broadcasts, fetches and the local indexes reflect it.
pub async fn case_add_del_sockets(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "adddel");
    let a = fx.per_node("a", &["r"]);
    fx.per_node("b", &[]);
    fx.settle().await;
    let last = cluster.last();
    let tag = fx.tag.clone();
    let n = cluster.nodes.len();

    fx.node(0)
        .add_sockets(to(fx.rooms(&["r"])), fx.rooms(&["t", "u"]))
        .await
        .unwrap_or_else(|e| panic!("add_sockets: {e}"));
    let want = &ids_of(&a);
    for from in 0..n {
        let fx = &fx;
        let ok = fx
            .eventually_async(|| async move {
                fx.fetch(from, to(fx.rooms(&["t"]))).await.keys().cloned().collect::<BTreeSet<_>>() == *want
            })
            .await;
        assert!(ok, "[{tag}] add_sockets: node {from} does not see r's members in t");
    }
    for (i, s) in a.iter().enumerate() {
        let rooms = fx.node(i).local().rooms_of(s.id());
        assert!(
            rooms.contains(&fx.room("t")) && rooms.contains(&fx.room("u")),
            "[{tag}] add_sockets: local rooms of {}: {rooms:?}",
            s.id()
        );
    }
    fx.settle().await;
    let (text, _) = fx.broadcast(last, "to-t", to(fx.rooms(&["t"]))).await;
    fx.expect_exactly(last, &text, &a.iter().collect::<Vec<_>>(), "broadcast to a room added by add_sockets")
        .await;

    fx.node(last)
        .del_sockets(to(fx.rooms(&["t"])), fx.rooms(&["t"]))
        .await
        .unwrap_or_else(|e| panic!("del_sockets: {e}"));
    for from in 0..n {
        let fx = &fx;
        let ok = fx
            .eventually_async(|| async move { fx.fetch(from, to(fx.rooms(&["t"]))).await.is_empty() })
            .await;
        assert!(ok, "[{tag}] del_sockets: node {from} still sees members in t");
    }
    for i in 0..n {
        let rooms = fx.node(i).local().rooms();
        assert!(!rooms.contains(&fx.room("t")), "[{tag}] del_sockets: node {i} still lists room t");
        assert!(rooms.contains(&fx.room("u")), "[{tag}] del_sockets: node {i} lost room u");
    }
    fx.settle().await;
    let (text, _) = fx.broadcast(0, "to-t-again", to(fx.rooms(&["t"]))).await;
    fx.expect_exactly(0, &text, &[], "broadcast to a room emptied by del_sockets").await;
    let (text, _) = fx.broadcast(0, "to-u", to(fx.rooms(&["u"]))).await;
    fx.expect_exactly(0, &text, &a.iter().collect::<Vec<_>>(), "broadcast to a room del_sockets left alone")
        .await;
}

/// disconnect_sockets calls `disconnect(close)` on the selected sockets of every node, once, and
/// on no other socket.
pub async fn case_disconnect_sockets(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "disconnect");
    let a = fx.per_node("a", &["r"]);
    let b = fx.per_node("b", &[]);
    fx.settle().await;
    let last = cluster.last();
    let tag = fx.tag.clone();

    fx.node(0)
        .disconnect_sockets(to(fx.rooms(&["r"])), true)
        .await
        .unwrap_or_else(|e| panic!("disconnect_sockets: {e}"));
    let ok = fx.eventually(|| a.iter().all(|s| !s.disconnects().is_empty())).await;
    assert!(ok, "[{tag}] disconnect_sockets(r) did not reach every member");

    let target = &b[last];
    fx.node(0)
        .disconnect_sockets(to(vec![target.id().room()]), false)
        .await
        .unwrap_or_else(|e| panic!("disconnect_sockets: {e}"));
    let ok = fx.eventually(|| !target.disconnects().is_empty()).await;
    assert!(ok, "[{tag}] disconnect_sockets(id) did not reach {}", target.id());

    fx.flush(0).await;
    for s in &a {
        assert_eq!(s.disconnects(), [true], "[{tag}] disconnect_sockets(r, close): calls on {}", s.id());
    }
    for s in &b {
        let want: &[bool] = if Arc::ptr_eq(s, target) { &[false] } else { &[] };
        assert_eq!(s.disconnects(), want, "[{tag}] disconnect_sockets: calls on {}", s.id());
    }
}

/// After `leave` a socket no longer gets the room's broadcasts; after `remove_socket` it gets
/// nothing and is not fetched; a room emptied on a node is gone from that node's index.
pub async fn case_leave_and_remove(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "leave");
    let x = fx.per_node("x", &["r"]);
    let y = fx.per_node("y", &["r"]);
    let z = fx.per_node("z", &[]);
    let n = cluster.nodes.len();
    let last = cluster.last();
    let tag = fx.tag.clone();
    let r = fx.room("r");

    for (i, s) in x.iter().enumerate() {
        fx.node(i).leave(s.id(), &r);
        fx.node(i).leave(s.id(), &r); // again: a no-op
        fx.node(i).leave(s.id(), &fx.room("never-joined"));
        assert!(fx.node(i).local().rooms().contains(&r), "[{tag}] node {i} lost room r while y{i} is in it");
    }
    fx.settle().await;
    let (text, _) = fx.broadcast(0, "after-leave", to(vec![r.clone()])).await;
    fx.expect_exactly(0, &text, &y.iter().collect::<Vec<_>>(), "broadcast to a room after leave").await;

    for s in &y {
        fx.remove(s);
    }
    fx.settle().await;
    for i in 0..n {
        let local = fx.node(i).local();
        assert!(!local.rooms().contains(&r), "[{tag}] node {i} still lists emptied room r");
        assert!(!local.has_room(&r), "[{tag}] node {i} still has emptied room r");
    }
    let (text, _) = fx.broadcast(last, "r-after-remove", to(vec![r.clone()])).await;
    fx.expect_exactly(last, &text, &[], "broadcast to an emptied room").await;
    let (text, _) = fx.broadcast(last, "all-after-remove", to(vec![])).await;
    let expected: Vec<_> = x.iter().chain(&z).collect();
    fx.expect_exactly(last, &text, &expected, "broadcast to all after remove_socket").await;
    let (text, _) = fx.broadcast(0, "removed-id", to(vec![y[last].id().room()])).await;
    fx.expect_exactly(0, &text, &[], "broadcast to a removed socket's id").await;
    for from in 0..n {
        let fetched = fx.fetch(from, to(vec![])).await;
        assert_eq!(
            fetched.keys().cloned().collect::<BTreeSet<_>>(),
            ids_of(x.iter().chain(&z)),
            "[{tag}] fetch after remove_socket from node {from}"
        );
    }
}

/// server_count counts at least every node of the cluster, on every node.
pub async fn case_server_count(cluster: &Cluster) {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let count = node.server_count().await.unwrap_or_else(|e| panic!("server_count: {e}"));
        assert!(
            count >= cluster.nodes.len(),
            "node {i}: server_count {count} < {} nodes",
            cluster.nodes.len()
        );
    }
}

/// With a single node, server_side_emit has no other server to reach: `Ok(vec![])`, with or without
/// a timeout, and without waiting for it.
///
/// With several nodes it is skipped: the emit reaches the other nodes' namespace handlers, which
/// are outside the [`Adapter`] trait, so a multi-node adapter tests that in its own suite.
pub async fn case_server_side_emit(cluster: &Cluster) {
    if cluster.nodes.len() > 1 {
        return;
    }
    let node = &cluster.nodes[0];
    let args = vec![Value::String("hello".to_owned())];
    let got = node.server_side_emit("contract".to_owned(), args.clone(), None).await;
    assert_eq!(got, Ok(Vec::new()), "server_side_emit without timeout on a single node");
    let started = Instant::now();
    let got = node.server_side_emit("contract".to_owned(), args, Some(cluster.timeout)).await;
    assert_eq!(got, Ok(Vec::new()), "server_side_emit with timeout on a single node");
    assert!(started.elapsed() < cluster.timeout, "server_side_emit waited for answers no node can give");
}

/// Fresh rooms joined in a row, each probed at once from another node (no settling).
const JOIN_TRIES: usize = 30;

/// A join is visible cluster-wide once its confirmation resolves: a room emit sent from another
/// node right after reaches the socket, for every one of many fresh rooms in a row, and so does a
/// second member's join while the room's subscription is still pending. A server-side emit sent
/// right after a join (not awaited) is published only once the join is confirmed, so a peer that
/// emits to the room on receiving it reaches the socket too.
pub async fn case_join_confirmed(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "confirmed");
    let (first, second) = (fx.socket(0, "first", &[]), fx.socket(0, "second", &[]));
    fx.settle().await;
    let last = cluster.last();
    let mut texts = Vec::with_capacity(JOIN_TRIES);
    for i in 0..JOIN_TRIES {
        let room = fx.room(&format!("fresh{i}"));
        let a = fx.node(0).join(first.id(), std::slice::from_ref(&room));
        let b = fx.node(0).join(second.id(), std::slice::from_ref(&room));
        assert!(a.wait().await && b.wait().await, "[{}] join of {room} not confirmed in time", fx.tag);
        texts.push(fx.broadcast(last, "fresh", to(vec![room])).await.0);
    }
    let both = [&first, &second];
    let ok = fx.eventually(|| texts.iter().all(|t| both.iter().all(|s| s.count(t) == 1))).await;
    let lost: Vec<&String> = texts.iter().filter(|t| both.iter().any(|s| s.count(t) == 0)).collect();
    assert!(
        ok,
        "[{}] {} of {JOIN_TRIES} emits right after a confirmed join were lost: {lost:?}",
        fx.tag,
        lost.len()
    );

    if last == 0 {
        return;
    }
    // Server to server: the last node emits to whatever room a server-side `emit-to` names.
    let relay = Arc::downgrade(&cluster.nodes[last]);
    let nsp = cluster.nsp.clone();
    cluster.nodes[last].set_server_side_emit_handler(Arc::new(EmitTo { adapter: relay, nsp }));
    let mut texts = Vec::with_capacity(JOIN_TRIES);
    for i in 0..JOIN_TRIES {
        let room = fx.room(&format!("relayed{i}"));
        let _ = fx.node(0).join(first.id(), std::slice::from_ref(&room));
        let label = Value::String(format!("{}:relayed:{i}", fx.tag));
        let encoded = encode_event(&cluster.nsp, "contract", std::slice::from_ref(&label), None);
        texts.push(String::from_utf8_lossy(&encoded.text).into_owned());
        let args = vec![Value::String(room.to_string()), label];
        fx.node(0).server_side_emit("emit-to".to_owned(), args, None).await.expect("server-side emit");
    }
    let ok = fx.eventually(|| texts.iter().all(|t| first.count(t) == 1)).await;
    let lost = texts.iter().filter(|t| first.count(t) == 0).count();
    assert!(
        ok,
        "[{}] {lost} of {JOIN_TRIES} emits a peer made on a server-side emit sent after a join were lost",
        fx.tag
    );
}

/// A server-side listener that emits `contract(label)` to the room in `emit-to(room, label)`.
struct EmitTo {
    adapter: std::sync::Weak<dyn Adapter>,
    nsp: String,
}

impl ServerSideEmitHandler for EmitTo {
    fn on_server_side_emit(&self, event: String, args: Vec<Value>, _ack: Option<ServerSideAck>) {
        let (Some(adapter), "emit-to", [Value::String(room), label]) =
            (self.adapter.upgrade(), &*event, &args[..])
        else {
            return;
        };
        let packet =
            BroadcastPacket::new(encode_event(&self.nsp, "contract", std::slice::from_ref(label), None));
        let opts = to(vec![Room::from(room.as_str())]);
        tokio::spawn(async move {
            let _ = adapter.broadcast(packet, opts).await;
        });
    }
}
