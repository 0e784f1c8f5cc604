//! One case's world: its sockets and rooms under a fresh tag (so cases never see each other's),
//! the broadcasts it sends, and the assertions every case makes: what reached whom, exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_adapter::{
    Adapter, BroadcastFlags, BroadcastOptions, BroadcastPacket, LocalSocket, Room, SocketId, SocketInfo,
};
use switchboard_protocol::socketio::{Value, encode_event};

use super::{Cluster, TestSocket};
use crate::wait::eventually;

static NEXT_CASE: AtomicU64 = AtomicU64::new(0);

struct Placed {
    node: usize,
    socket: Arc<TestSocket>,
    removed: bool,
}

/// One case's sockets and rooms, under a fresh prefix; removes its sockets when dropped.
pub(super) struct Fixture<'c> {
    cluster: &'c Cluster,
    pub(super) tag: String,
    placed: Vec<Placed>,
    labels: u64,
}

impl<'c> Fixture<'c> {
    pub(super) fn new(cluster: &'c Cluster, case: &str) -> Self {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{case}-{}-{n}", std::process::id());
        Self { cluster, tag, placed: Vec::new(), labels: 0 }
    }

    pub(super) fn node(&self, i: usize) -> &Arc<dyn Adapter> {
        &self.cluster.nodes[i]
    }

    pub(super) fn room(&self, name: &str) -> Room {
        Room::from(format!("{}.{name}", self.tag))
    }

    pub(super) fn rooms(&self, names: &[&str]) -> Vec<Room> {
        names.iter().map(|n| self.room(n)).collect()
    }

    /// Adds socket `name` on node `node` and joins it to `rooms`.
    pub(super) fn socket(&mut self, node: usize, name: &str, rooms: &[&str]) -> Arc<TestSocket> {
        let id = SocketId::from(format!("{}-{name}", self.tag));
        let socket = TestSocket::new(id.clone(), &self.cluster.nsp);
        let adapter = self.node(node).clone();
        adapter.add_socket(socket.clone());
        adapter.join(&id, &self.rooms(rooms));
        self.placed.push(Placed { node, socket: socket.clone(), removed: false });
        socket
    }

    /// One socket per node named `{name}{node}`, each joined to `rooms`.
    pub(super) fn per_node(&mut self, name: &str, rooms: &[&str]) -> Vec<Arc<TestSocket>> {
        (0..self.cluster.nodes.len()).map(|i| self.socket(i, &format!("{name}{i}"), rooms)).collect()
    }

    pub(super) fn node_of(&self, socket: &Arc<TestSocket>) -> usize {
        self.placed
            .iter()
            .find(|p| Arc::ptr_eq(&p.socket, socket))
            .map(|p| p.node)
            .expect("socket of this fixture")
    }

    pub(super) fn remove(&mut self, socket: &Arc<TestSocket>) {
        let placed =
            self.placed.iter_mut().find(|p| Arc::ptr_eq(&p.socket, socket)).expect("socket of this fixture");
        self.cluster.nodes[placed.node].remove_socket(socket.id());
        placed.removed = true;
    }

    pub(super) fn live(&self) -> Vec<Arc<TestSocket>> {
        self.placed.iter().filter(|p| !p.removed).map(|p| p.socket.clone()).collect()
    }

    pub(super) fn all(&self) -> Vec<Arc<TestSocket>> {
        self.placed.iter().map(|p| p.socket.clone()).collect()
    }

    pub(super) fn ids(&self) -> BTreeSet<String> {
        self.placed.iter().map(|p| p.socket.id().to_string()).collect()
    }

    pub(super) async fn settle(&self) {
        if let Some(settle) = &self.cluster.settle {
            settle().await;
        }
    }

    /// A fresh event packet and its text.
    pub(super) fn packet(&mut self, label: &str, ack_id: Option<u64>) -> (BroadcastPacket, String) {
        self.labels += 1;
        let arg = Value::String(format!("{}:{label}:{}", self.tag, self.labels));
        let encoded = encode_event(&self.cluster.nsp, "contract", &[arg], ack_id);
        let text = String::from_utf8_lossy(&encoded.text).into_owned();
        (BroadcastPacket::new(encoded), text)
    }

    /// Broadcasts a fresh packet from node `from`; returns its text and the local recipient count.
    pub(super) async fn broadcast(
        &mut self,
        from: usize,
        label: &str,
        opts: BroadcastOptions,
    ) -> (String, usize) {
        let (packet, text) = self.packet(label, None);
        let n = self
            .node(from)
            .broadcast(packet, opts)
            .await
            .unwrap_or_else(|e| panic!("broadcast `{label}`: {e}"));
        (text, n)
    }

    /// Waits until `ok` holds, polling up to the cluster timeout.
    pub(super) async fn eventually(&self, mut ok: impl FnMut() -> bool) -> bool {
        eventually(self.cluster.timeout, || std::future::ready(ok())).await
    }

    /// Waits until the async check holds, polling up to the cluster timeout.
    pub(super) async fn eventually_async<F, Fut>(&self, ok: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        eventually(self.cluster.timeout, ok).await
    }

    /// Lets stray effects land: waits `quiet`, then a marker from `from` must reach every live socket.
    pub(super) async fn flush(&mut self, from: usize) {
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
    pub(super) async fn expect_exactly(
        &mut self,
        from: usize,
        text: &str,
        expected: &[&Arc<TestSocket>],
        what: &str,
    ) {
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
    pub(super) async fn fetch(&self, from: usize, opts: BroadcastOptions) -> BTreeMap<String, SocketInfo> {
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

pub(super) fn missing<'a>(
    sockets: impl IntoIterator<Item = &'a Arc<TestSocket>>,
    text: &str,
) -> Vec<SocketId> {
    sockets.into_iter().filter(|s| s.count(text) == 0).map(|s| s.id().clone()).collect()
}

pub(super) fn ids_of<'a>(sockets: impl IntoIterator<Item = &'a Arc<TestSocket>>) -> BTreeSet<String> {
    sockets.into_iter().map(|s| s.id().to_string()).collect()
}

pub(super) fn opts(rooms: Vec<Room>, except: Vec<Room>) -> BroadcastOptions {
    BroadcastOptions { rooms, except, flags: BroadcastFlags::default() }
}

pub(super) fn to(rooms: Vec<Room>) -> BroadcastOptions {
    opts(rooms, Vec::new())
}

pub(super) fn local_flags() -> BroadcastFlags {
    BroadcastFlags { local: true, ..BroadcastFlags::default() }
}
