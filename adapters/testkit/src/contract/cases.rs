//! The cases of the adapter contract, one `pub async fn` each (named as the tests
//! [`contract_tests!`](crate::contract_tests) generates): each places [`TestSocket`]s on the nodes
//! through a fixture (its own fresh ids and rooms), drives the adapters and asserts by panicking.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard_adapter::{
    Adapter, BroadcastOptions, BroadcastPacket, InboundHandler, LocalSocket, Room, ServerSideAck,
};
use switchboard_protocol::socketio::{Value, encode_event};
use tokio::time::Instant;

use super::fixture::{Fixture, ids_of, local_flags, opts, to};
use super::{Cluster, TestSocket};

/// A broadcast to all reaches every socket on every node once, from any node; it resolves to the
/// emitting node's local recipient count.
pub async fn broadcast_all(cluster: &Cluster) {
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
pub async fn broadcast_room(cluster: &Cluster) {
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
pub async fn broadcast_rooms_dedup(cluster: &Cluster) {
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
pub async fn broadcast_except(cluster: &Cluster) {
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
pub async fn socket_id_room(cluster: &Cluster) {
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
pub async fn local_flag(cluster: &Cluster) {
    let mut fx = Fixture::new(cluster, "local");
    let a = fx.per_node("a", &["r"]);
    let b = fx.per_node("b", &[]);
    fx.settle().await;
    let from = cluster.last();

    let mut local_all = to(vec![]);
    local_all.flags = local_flags();
    let (text, n) = fx.broadcast(from, "local-all", local_all).await;
    fx.expect_exactly(from, &text, &[&a[from], &b[from]], "local broadcast to all").await;
    let local = fx.node(from).local().len();
    assert_eq!(n, local, "[{}] local broadcast to all: local recipients", fx.tag);

    let mut local_room = to(fx.rooms(&["r"]));
    local_room.flags = local_flags();
    let (text, n) = fx.broadcast(from, "local-room", local_room).await;
    fx.expect_exactly(from, &text, &[&a[from]], "local broadcast to a room").await;
    assert_eq!(n, 1, "[{}] local broadcast to a room: local recipients", fx.tag);
}

/// The `volatile` flag reaches `deliver` on every node, and is false when not set.
pub async fn volatile_flag(cluster: &Cluster) {
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
pub async fn broadcast_with_ack(cluster: &Cluster) {
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
pub async fn fetch_sockets(cluster: &Cluster) {
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
        local.flags = local_flags();
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
pub async fn add_del_sockets(cluster: &Cluster) {
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
pub async fn disconnect_sockets(cluster: &Cluster) {
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
pub async fn leave_and_remove(cluster: &Cluster) {
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
pub async fn server_count(cluster: &Cluster) {
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
pub async fn server_side_emit(cluster: &Cluster) {
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
pub async fn join_confirmed(cluster: &Cluster) {
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
    cluster.nodes[last].set_inbound_handler(Arc::new(EmitTo { adapter: relay, nsp }));
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

impl InboundHandler for EmitTo {
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
