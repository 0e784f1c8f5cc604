//! The Redis channel of each cluster [`Route`], and back.
//!
//! `{prefix}#{nsp}#` (namespace), `{prefix}#{nsp}#room#{room}` (room), `{prefix}#node#{node}`
//! (node), e.g. `switchboard#/chat#room#lobby`. In `nsp` and `room`, `%` is written `%25` and `#`
//! `%23`, so `#` only separates; a namespace not starting with `/` (never a Socket.IO one) has its
//! first character written as `%XX` bytes, so no namespace reads as the `node` keyword. Every name
//! parses back ([`parse`]), and only the canonical escaping does (`%41` for `A`, or lowercase hex,
//! is refused), so each route has exactly one channel.

use std::fmt::Write as _;
use std::sync::Arc;

use switchboard_adapter::Room;
use switchboard_adapter::cluster::{NodeId, Route};

/// Whether `prefix` can start channel names: non-empty, without the `#` that separates their parts.
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && !prefix.contains('#')
}

/// The channel of `route` under `prefix` (e.g. `switchboard`).
pub fn name(route: &Route, prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    out.push('#');
    match route {
        Route::Namespace(nsp) => {
            escape(&mut out, nsp, true);
            out.push('#');
        }
        Route::Room(nsp, room) => {
            escape(&mut out, nsp, true);
            out.push_str("#room#");
            escape(&mut out, room.as_str(), false);
        }
        Route::Node(node) => {
            out.push_str("node#");
            escape(&mut out, node.as_str(), false);
        }
    }
    out
}

/// The route `channel` stands for, if it is one of ours under `prefix`: the exact inverse of [`name`].
pub fn parse(prefix: &str, channel: &str) -> Option<Route> {
    let rest = channel.strip_prefix(prefix)?.strip_prefix('#')?;
    if let Some(node) = rest.strip_prefix("node#") {
        return Some(Route::Node(NodeId::from(unescape(node, false)?)));
    }
    let (nsp, rest) = rest.split_once('#')?;
    let nsp: Arc<str> = unescape(nsp, true)?.into();
    if rest.is_empty() {
        return Some(Route::Namespace(nsp));
    }
    let room = rest.strip_prefix("room#")?;
    if room.contains('#') {
        return None;
    }
    Some(Route::Room(nsp, Room::from(unescape(room, false)?)))
}

/// Writes `name` with `%` and `#` escaped, and with `namespace`, a first character other than `/`.
fn escape(out: &mut String, name: &str, namespace: bool) {
    for (i, c) in name.char_indices() {
        match c {
            '%' | '#' => push_hex(out, c as u8),
            _ if namespace && i == 0 && c != '/' => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(out, b);
                }
            }
            _ => out.push(c),
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    let _ = write!(out, "%{b:02X}");
}

/// The name [`escape`] wrote as `s` (with the same `namespace`), if `s` is exactly what it writes.
fn unescape(s: &str, namespace: bool) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2)?;
            if !hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)) {
                return None;
            }
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    let mut canonical = String::with_capacity(s.len());
    escape(&mut canonical, &name, namespace);
    (canonical == s).then_some(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;
    use switchboard_testkit::odd_routes;

    use super::*;

    #[test]
    fn channels_are_readable_and_parse_back() {
        let p = "switchboard";
        assert_eq!(name(&Route::Namespace("/chat".into()), p), "switchboard#/chat#");
        assert_eq!(name(&Route::Room("/chat".into(), "lobby".into()), p), "switchboard#/chat#room#lobby");
        assert_eq!(name(&Route::Room("/".into(), "a#b%".into()), p), "switchboard#/#room#a%23b%25");
        assert_eq!(name(&Route::Room("/".into(), "".into()), p), "switchboard#/#room#");
        assert_eq!(name(&Route::Node("n1".into()), p), "switchboard#node#n1");
        assert_eq!(name(&Route::Namespace("node".into()), p), "switchboard#%6Eode#");
        for route in odd_routes() {
            let channel = name(&route, p);
            assert_eq!(parse(p, &channel), Some(route.clone()), "{channel}");
            assert_eq!(parse("other", &channel), None);
        }
        let all: std::collections::HashSet<_> = odd_routes().iter().map(|r| name(r, p)).collect();
        assert_eq!(all.len(), odd_routes().len(), "two routes share a channel");
    }

    #[test]
    fn only_canonical_channels_parse() {
        assert_eq!(parse("sb", "sb#/a#room#b#c"), None);
        assert_eq!(parse("sb", "sb#/a#bogus"), None);
        assert_eq!(parse("sb", "sb#/a%2"), None);
        // Only what `name` writes parses back.
        assert_eq!(parse("sb", "sb#/#room#a%23b"), Some(Route::Room("/".into(), "a#b".into())));
        assert_eq!(parse("sb", "sb#/#room#%41"), None, "an escaped letter");
        assert_eq!(parse("sb", "sb#/#room#a%2f"), None, "lowercase hex");
        assert_eq!(parse("sb", "sb#/#room#%2F"), None, "an escaped slash");
        assert_eq!(parse("sb", "sb#%2Fchat#"), None, "a leading slash is never escaped");
        assert_eq!(parse("sb", "sb#node#n%31"), None);
        assert_eq!(parse("sb", "sb#node#n1"), Some(Route::Node("n1".into())));
        assert_eq!(parse("sb", "sb#xyz#"), None, "a leading non-slash must be escaped");
        assert_eq!(parse("sb", "sb#%78yz#"), Some(Route::Namespace("xyz".into())));
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("switchboard"));
        assert!(is_valid_prefix("app.sb-1"));
        assert!(!is_valid_prefix(""));
        assert!(!is_valid_prefix("a#b"));
    }

    proptest! {
        #[test]
        fn any_name_roundtrips(nsp in ".*", room in ".*") {
            let route = Route::Room(nsp.as_str().into(), Room::from(room.as_str()));
            prop_assert_eq!(parse("p", &name(&route, "p")), Some(route.clone()));
        }
    }
}
