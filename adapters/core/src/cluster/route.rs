//! Where cluster messages go: interest-based routes, and their names on each broker.
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
//!
//! # Redis channels
//!
//! `{prefix}#{nsp}#` (namespace), `{prefix}#{nsp}#room#{room}` (room), `{prefix}#node#{node}`
//! (node), e.g. `switchboard#/chat#room#lobby`. In `nsp` and `room`, `%` is written `%25` and `#`
//! `%23`, so `#` only separates; a namespace not starting with `/` (never a Socket.IO one) has its
//! first byte written `%XX`, so no namespace reads as the `node` keyword. Every name parses back
//! ([`Route::parse_redis_channel`]).
//!
//! # NATS subjects
//!
//! `{prefix}.ns.{nsp}`, `{prefix}.room.{nsp}.{room}`, `{prefix}.node.{node}`, each name escaped
//! into one token ([`escape_token`]): `A-Z a-z 0-9 -` stay as they are; every other byte of the
//! UTF-8 name (`.`, `*`, `>`, whitespace, `/`, `_`, non-ASCII…) becomes `_` and two uppercase hex
//! digits; the empty name is the token `_` alone. Tokens are never empty and never hold a
//! wildcard or a separator, and the scheme is reversible ([`unescape_token`]): `/chat` →
//! `_2Fchat`, `a.b c` → `a_2Eb_20c`, `é` → `_C3_A9`.

use std::collections::HashSet;
use std::fmt::Write as _;
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

impl Route {
    /// The Redis pub/sub channel of this route under `prefix` (e.g. `switchboard`).
    pub fn redis_channel(&self, prefix: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + 32);
        out.push_str(prefix);
        out.push('#');
        match self {
            Self::Namespace(nsp) => {
                escape_redis(&mut out, nsp, true);
                out.push('#');
            }
            Self::Room(nsp, room) => {
                escape_redis(&mut out, nsp, true);
                out.push_str("#room#");
                escape_redis(&mut out, room.as_str(), false);
            }
            Self::Node(node) => {
                out.push_str("node#");
                escape_redis(&mut out, node.as_str(), false);
            }
        }
        out
    }

    /// The route a Redis channel name stands for, if it is one of ours under `prefix`. Only the
    /// canonical escaping parses (`%41` for `A`, or lowercase hex, is refused), so each route has
    /// exactly one channel and this is the exact inverse of [`redis_channel`](Self::redis_channel).
    pub fn parse_redis_channel(prefix: &str, channel: &str) -> Option<Self> {
        let rest = channel.strip_prefix(prefix)?.strip_prefix('#')?;
        if let Some(node) = rest.strip_prefix("node#") {
            return Some(Self::Node(NodeId::from(unescape_redis(node, false)?)));
        }
        let (nsp, rest) = rest.split_once('#')?;
        let nsp: Arc<str> = unescape_redis(nsp, true)?.into();
        if rest.is_empty() {
            return Some(Self::Namespace(nsp));
        }
        let room = rest.strip_prefix("room#")?;
        if room.contains('#') {
            return None;
        }
        Some(Self::Room(nsp, Room::from(unescape_redis(room, false)?)))
    }

    /// The NATS subject of this route under `prefix` (one or more valid tokens, e.g. `switchboard`).
    pub fn nats_subject(&self, prefix: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + 32);
        out.push_str(prefix);
        match self {
            Self::Namespace(nsp) => {
                out.push_str(".ns.");
                escape_token_into(&mut out, nsp);
            }
            Self::Room(nsp, room) => {
                out.push_str(".room.");
                escape_token_into(&mut out, nsp);
                out.push('.');
                escape_token_into(&mut out, room.as_str());
            }
            Self::Node(node) => {
                out.push_str(".node.");
                escape_token_into(&mut out, node.as_str());
            }
        }
        out
    }

    /// The route a NATS subject stands for, if it is one of ours under `prefix`.
    pub fn parse_nats_subject(prefix: &str, subject: &str) -> Option<Self> {
        let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
        let mut tokens = rest.split('.');
        let route = match (tokens.next()?, tokens.next()?, tokens.next()) {
            ("ns", nsp, None) => Self::Namespace(unescape_token(nsp)?.into()),
            ("room", nsp, Some(room)) => {
                Self::Room(unescape_token(nsp)?.into(), Room::from(unescape_token(room)?))
            }
            ("node", node, None) => Self::Node(NodeId::from(unescape_token(node)?)),
            _ => return None,
        };
        tokens.next().is_none().then_some(route)
    }
}

/// Whether `prefix` can start NATS subjects: dot-separated non-empty tokens without wildcards or whitespace.
pub fn is_valid_nats_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t.chars().all(|c| !c.is_whitespace() && c != '*' && c != '>'))
}

fn escape_redis(out: &mut String, name: &str, keep_leading_slash_only: bool) {
    for (i, c) in name.char_indices() {
        let leading_non_slash = keep_leading_slash_only && i == 0 && c != '/';
        match c {
            '%' | '#' => push_hex(out, '%', c as u8),
            _ if leading_non_slash => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(out, '%', b);
                }
            }
            _ => out.push(c),
        }
    }
}

/// The name [`escape_redis`] wrote as `s` (with the same `keep_leading_slash_only`), if `s` is
/// exactly what it writes: non-canonical escapes are refused.
fn unescape_redis(s: &str, keep_leading_slash_only: bool) -> Option<String> {
    let name = unescape(s, b'%')?;
    let mut canonical = String::with_capacity(s.len());
    escape_redis(&mut canonical, &name, keep_leading_slash_only);
    (canonical == s).then_some(name)
}

fn push_hex(out: &mut String, marker: char, b: u8) {
    out.push(marker);
    let _ = write!(out, "{b:02X}");
}

fn unescape(s: &str, marker: u8) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == marker {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes a name into one valid NATS subject token; see the module docs.
pub fn escape_token(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    escape_token_into(&mut out, name);
    out
}

fn escape_token_into(out: &mut String, name: &str) {
    if name.is_empty() {
        out.push('_');
        return;
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            push_hex(out, '_', b);
        }
    }
}

/// The name a token produced by [`escape_token`] stands for; `None` for anything else.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    let name = unescape(token, b'_')?;
    // Only the canonical escaping parses back, so each name has exactly one token.
    (escape_token(&name) == token).then_some(name)
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

    use proptest::prelude::*;

    use super::*;

    const ODD: &[&str] = &[
        "",
        "lobby",
        "a.b",
        "a b",
        "tab\there",
        "*",
        ">",
        "a.*.>",
        "#",
        "%",
        "%23",
        "room#1",
        "_",
        "__",
        "_2F",
        "é",
        "日本語",
        "🎉",
        "/",
        "node",
        "node#x",
        "a\nb",
    ];

    fn routes() -> Vec<Route> {
        let mut out = Vec::new();
        for nsp in ["/", "/chat", "/a.b", "/#x", "/%", "/é", "node", "", "x#y"] {
            out.push(Route::Namespace(nsp.into()));
            for room in ODD {
                out.push(Route::Room(nsp.into(), Room::from(*room)));
            }
        }
        for node in ["n1", "A-z_0", "node"] {
            out.push(Route::Node(node.into()));
        }
        out
    }

    #[test]
    fn redis_channels_are_readable_and_parse_back() {
        let p = "switchboard";
        assert_eq!(Route::Namespace("/chat".into()).redis_channel(p), "switchboard#/chat#");
        assert_eq!(
            Route::Room("/chat".into(), "lobby".into()).redis_channel(p),
            "switchboard#/chat#room#lobby"
        );
        assert_eq!(Route::Room("/".into(), "a#b%".into()).redis_channel(p), "switchboard#/#room#a%23b%25");
        assert_eq!(Route::Room("/".into(), "".into()).redis_channel(p), "switchboard#/#room#");
        assert_eq!(Route::Node("n1".into()).redis_channel(p), "switchboard#node#n1");
        assert_eq!(Route::Namespace("node".into()).redis_channel(p), "switchboard#%6Eode#");
        for route in routes() {
            let channel = route.redis_channel(p);
            assert_eq!(Route::parse_redis_channel(p, &channel), Some(route.clone()), "{channel}");
            assert_eq!(Route::parse_redis_channel("other", &channel), None);
        }
        let all: std::collections::HashSet<_> = routes().iter().map(|r| r.redis_channel(p)).collect();
        assert_eq!(all.len(), routes().len(), "two routes share a channel");
    }

    #[test]
    fn nats_subjects_are_valid_tokens_and_parse_back() {
        let p = "switchboard";
        assert_eq!(Route::Namespace("/chat".into()).nats_subject(p), "switchboard.ns._2Fchat");
        assert_eq!(Route::Room("/".into(), "a.b c".into()).nats_subject(p), "switchboard.room._2F.a_2Eb_20c");
        assert_eq!(Route::Room("/".into(), "".into()).nats_subject(p), "switchboard.room._2F._");
        assert_eq!(Route::Room("/".into(), "é".into()).nats_subject(p), "switchboard.room._2F._C3_A9");
        assert_eq!(Route::Node("n_1".into()).nats_subject(p), "switchboard.node.n_5F1");
        for route in routes() {
            let subject = route.nats_subject("app.sb");
            let tokens: Vec<&str> = subject.split('.').collect();
            assert!(tokens.len() >= 4, "{subject}");
            for t in &tokens {
                assert!(!t.is_empty(), "empty token in {subject}");
                assert!(
                    t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "bad token {t:?} in {subject}"
                );
            }
            assert_eq!(Route::parse_nats_subject("app.sb", &subject), Some(route.clone()), "{subject}");
        }
        let all: std::collections::HashSet<_> = routes().iter().map(|r| r.nats_subject(p)).collect();
        assert_eq!(all.len(), routes().len(), "two routes share a subject");
    }

    #[test]
    fn only_canonical_tokens_parse() {
        assert_eq!(unescape_token("_"), Some(String::new()));
        assert_eq!(unescape_token("_2F"), Some("/".into()));
        assert_eq!(unescape_token(""), None);
        assert_eq!(unescape_token("_2f"), None, "lowercase hex is not canonical");
        assert_eq!(unescape_token("_41"), None, "an escaped letter is not canonical");
        assert_eq!(unescape_token("a_"), None);
        assert_eq!(unescape_token("a_4"), None);
        assert_eq!(unescape_token("a.b"), None);
        assert_eq!(unescape_token("_FF"), None, "not UTF-8");
        assert_eq!(Route::parse_nats_subject("sb", "sb.ns.a.b"), None);
        assert_eq!(Route::parse_nats_subject("sb", "sb.room.a"), None);
        assert_eq!(Route::parse_nats_subject("sb", "sb.what.a"), None);
        assert_eq!(Route::parse_redis_channel("sb", "sb#/a#room#b#c"), None);
        assert_eq!(Route::parse_redis_channel("sb", "sb#/a#bogus"), None);
        assert_eq!(Route::parse_redis_channel("sb", "sb#/a%2"), None);
        // Redis: only what `redis_channel` writes parses back.
        assert_eq!(
            Route::parse_redis_channel("sb", "sb#/#room#a%23b"),
            Some(Route::Room("/".into(), "a#b".into()))
        );
        assert_eq!(Route::parse_redis_channel("sb", "sb#/#room#%41"), None, "an escaped letter");
        assert_eq!(Route::parse_redis_channel("sb", "sb#/#room#a%2f"), None, "lowercase hex");
        assert_eq!(Route::parse_redis_channel("sb", "sb#/#room#%2F"), None, "an escaped slash");
        assert_eq!(Route::parse_redis_channel("sb", "sb#%2Fchat#"), None, "a leading slash is never escaped");
        assert_eq!(Route::parse_redis_channel("sb", "sb#node#n%31"), None);
        assert_eq!(Route::parse_redis_channel("sb", "sb#node#n1"), Some(Route::Node("n1".into())));
        assert_eq!(Route::parse_redis_channel("sb", "sb#xyz#"), None, "a leading non-slash must be escaped");
        assert_eq!(Route::parse_redis_channel("sb", "sb#%78yz#"), Some(Route::Namespace("xyz".into())));
    }

    #[test]
    fn nats_prefixes() {
        assert!(is_valid_nats_prefix("switchboard"));
        assert!(is_valid_nats_prefix("app.sb-1"));
        for bad in ["", ".", "a..b", "a.*", "a >", "a b", "a.>"] {
            assert!(!is_valid_nats_prefix(bad), "{bad:?}");
        }
    }

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

    proptest! {
        #[test]
        fn any_name_roundtrips(nsp in ".*", room in ".*") {
            let route = Route::Room(nsp.as_str().into(), Room::from(room.as_str()));
            prop_assert_eq!(Route::parse_nats_subject("p", &route.nats_subject("p")), Some(route.clone()));
            prop_assert_eq!(Route::parse_redis_channel("p", &route.redis_channel("p")), Some(route.clone()));
            let token = escape_token(&room);
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(['.', '*', '>']) && !token.contains(char::is_whitespace));
            prop_assert_eq!(unescape_token(&token), Some(room));
        }
    }
}
