//! Where cluster messages go: interest-based routes, and how a broadcast to several rooms is split
//! over them. Each transport names the routes on its broker (Redis channels, NATS subjects: see
//! the `switchboard-redis` and `switchboard-nats` crates).
//!
//! Three kinds of route:
//!
//! - **namespace** — every node that has the namespace subscribes: emits to all its sockets,
//!   heartbeats, and requests whose answers are awaited (the requester knows who will answer).
//! - **room** (namespace, room) — a node subscribes while it has local members in the room, so a
//!   room emit reaches only nodes with members. A socket's own-id room costs no subscription when
//!   the id has the server's shape `<node>.<22 base64url chars>` ([`socket_node`]): emits to it use
//!   the owner's node route. Other ids (tests, custom id generators) are subscribed as a room while
//!   the socket is connected.
//! - **node** — one per node, whatever the namespace (the message names it): answers, heartbeat
//!   replies, and emits to socket ids of that node.

use std::collections::HashSet;
use std::sync::Arc;

use super::NodeId;
use crate::types::Room;

/// One destination of cluster messages; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Every node with the namespace.
    Namespace(Arc<str>),
    /// Nodes with local members in the room of the namespace.
    Room(Arc<str>, Room),
    /// One node (all namespaces).
    Node(NodeId),
}

/// Length of the random part of a server socket id (128 bits in base64url).
const SID_RANDOM_LEN: usize = 22;

/// The node that owns a socket, if `id` has the server's socket-id shape `<node>.<22 base64url chars>`.
///
/// Rooms of this shape are taken for socket ids and routed to that node only: do not name rooms
/// like socket ids.
pub fn socket_node(id: &str) -> Option<&str> {
    let (node, random) = id.split_once('.')?;
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (NodeId::is_valid(node) && random.len() == SID_RANDOM_LEN && random.bytes().all(base64url))
        .then_some(node)
}

/// Where one part of a room broadcast goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRoute<'a> {
    /// The room's route.
    Room(&'a Room),
    /// A node's route: the rooms of this part are socket ids of that node.
    Node(&'a str),
}

/// One part of a broadcast's plan: a route and the targeted rooms it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// Where the copy goes.
    pub route: PartRoute<'a>,
    /// The rooms it serves.
    pub rooms: Vec<&'a Room>,
}

/// Most routed copies of one broadcast; past it, one copy goes to the whole namespace instead
/// (each copy carries every room name, so k copies cost k² names).
pub const MAX_PARTS: usize = 8;

/// Splits a broadcast's rooms into routed parts, in order of first appearance: one per distinct
/// room, except that socket-id rooms ([`socket_node`]) share one part per owner node. `None` when
/// that makes more than [`MAX_PARTS`] parts: send one namespace-wide copy instead.
///
/// Emitter and receivers compute the same plan from the same room list, so a message only carries
/// its part's index (see [`Target`](super::Target)).
pub fn plan(rooms: &[Room]) -> Option<Vec<Part<'_>>> {
    let mut parts: Vec<Part<'_>> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(rooms.len());
    for room in rooms {
        if !seen.insert(room.as_str()) {
            continue;
        }
        let route = match socket_node(room.as_str()) {
            Some(node) => PartRoute::Node(node),
            None => PartRoute::Room(room),
        };
        if let Some(part) = parts.iter_mut().find(|p| same_route(p.route, route)) {
            part.rooms.push(room);
        } else if parts.len() == MAX_PARTS {
            return None;
        } else {
            parts.push(Part { route, rooms: vec![room] });
        }
    }
    Some(parts)
}

fn same_route(a: PartRoute<'_>, b: PartRoute<'_>) -> bool {
    match (a, b) {
        (PartRoute::Room(x), PartRoute::Room(y)) => x == y,
        (PartRoute::Node(x), PartRoute::Node(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn socket_ids_name_their_node() {
        assert_eq!(socket_node("n1.AAAAAAAAAAAAAAAAAAAAAA"), Some("n1"));
        assert_eq!(socket_node("a-b_c.0123456789abcdefghij-_"), Some("a-b_c"));
        assert_eq!(socket_node("chat.general"), None);
        assert_eq!(socket_node("n1.AAAAAAAAAAAAAAAAAAAAA"), None, "21 chars");
        assert_eq!(socket_node("n1.AAAAAAAAAAAAAAAAAAAAAAA"), None, "23 chars");
        assert_eq!(socket_node(".AAAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(socket_node("n 1.AAAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(socket_node("n1.AAAAAAAAAAAAAAAAAAAA.A"), None);
        assert_eq!(socket_node("plain"), None);
    }

    #[test]
    fn plan_groups_socket_ids_by_node_and_dedups_rooms() {
        let rooms: Vec<Room> = [
            "r",
            "a.AAAAAAAAAAAAAAAAAAAAAA",
            "s",
            "r",
            "b.AAAAAAAAAAAAAAAAAAAAAA",
            "a.BBBBBBBBBBBBBBBBBBBBBB",
            "a.AAAAAAAAAAAAAAAAAAAAAA",
        ]
        .into_iter()
        .map(Room::from)
        .collect();
        let plan = plan(&rooms).unwrap();
        let shown: Vec<(String, Vec<&str>)> = plan
            .iter()
            .map(|p| {
                let route = match p.route {
                    PartRoute::Room(r) => format!("room {r}"),
                    PartRoute::Node(n) => format!("node {n}"),
                };
                (route, p.rooms.iter().map(|r| r.as_str()).collect())
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("room r".to_owned(), vec!["r"]),
                ("node a".to_owned(), vec!["a.AAAAAAAAAAAAAAAAAAAAAA", "a.BBBBBBBBBBBBBBBBBBBBBB"]),
                ("room s".to_owned(), vec!["s"]),
                ("node b".to_owned(), vec!["b.AAAAAAAAAAAAAAAAAAAAAA"]),
            ]
        );
        assert!(super::plan(&[]).unwrap().is_empty());
    }

    #[test]
    fn plan_gives_up_past_max_parts() {
        let rooms: Vec<Room> = (0..MAX_PARTS).map(|i| Room::from(format!("r{i}"))).collect();
        assert_eq!(plan(&rooms).unwrap().len(), MAX_PARTS);
        let mut more = rooms.clone();
        more.push("r0".into()); // a duplicate adds no part
        more.push(format!("n.{}", "A".repeat(22)).into());
        assert!(plan(&more).is_none());
        // Many ids of one node are one part, and cost linear time.
        let ids: Vec<Room> = (0..20_000).map(|i| Room::from(format!("n.{i:0>22}"))).collect();
        assert_eq!(plan(&ids).unwrap().len(), 1);
    }
}
