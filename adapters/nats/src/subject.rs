//! The NATS subject of each cluster [`Route`], and back.
//!
//! `{prefix}.ns.{nsp}`, `{prefix}.room.{nsp}.{room}`, `{prefix}.node.{node}`, each name escaped
//! into one token ([`escape_token`]): `A-Z a-z 0-9 -` stay as they are; every other byte of the
//! UTF-8 name (`.`, `*`, `>`, whitespace, `/`, `_`, non-ASCII…) becomes `_` and two uppercase hex
//! digits; the empty name is the token `_` alone. Tokens are never empty and never hold a
//! wildcard or a separator, and the scheme is reversible ([`unescape_token`], [`parse`]): `/chat`
//! → `_2Fchat`, `a.b c` → `a_2Eb_20c`, `é` → `_C3_A9`.

use std::fmt::Write as _;

use switchboard_adapter::Room;
use switchboard_adapter::cluster::{NodeId, Route};

/// Whether `prefix` can start subjects: dot-separated non-empty tokens without wildcards or whitespace.
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t.chars().all(|c| !c.is_whitespace() && c != '*' && c != '>'))
}

/// The subject of `route` under `prefix` (one or more valid tokens, e.g. `switchboard`).
pub fn name(route: &Route, prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    match route {
        Route::Namespace(nsp) => {
            out.push_str(".ns.");
            escape_token_into(&mut out, nsp);
        }
        Route::Room(nsp, room) => {
            out.push_str(".room.");
            escape_token_into(&mut out, nsp);
            out.push('.');
            escape_token_into(&mut out, room.as_str());
        }
        Route::Node(node) => {
            out.push_str(".node.");
            escape_token_into(&mut out, node.as_str());
        }
    }
    out
}

/// The route `subject` stands for, if it is one of ours under `prefix`: the exact inverse of [`name`].
pub fn parse(prefix: &str, subject: &str) -> Option<Route> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut tokens = rest.split('.');
    let route = match (tokens.next()?, tokens.next()?, tokens.next()) {
        ("ns", nsp, None) => Route::Namespace(unescape_token(nsp)?.into()),
        ("room", nsp, Some(room)) => {
            Route::Room(unescape_token(nsp)?.into(), Room::from(unescape_token(room)?))
        }
        ("node", node, None) => Route::Node(NodeId::from(unescape_token(node)?)),
        _ => return None,
    };
    tokens.next().is_none().then_some(route)
}

/// Escapes a name into one valid subject token; see the module docs.
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
            let _ = write!(out, "_{b:02X}");
        }
    }
}

/// The name a token produced by [`escape_token`] stands for; `None` for anything else, so each
/// name has exactly one token.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token;
    while let Some((plain, escaped)) = rest.split_once('_') {
        bytes.extend_from_slice(plain.as_bytes());
        let hex = escaped.get(..2)?;
        if !hex.bytes().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)) {
            return None;
        }
        bytes.push(u8::from_str_radix(hex, 16).ok()?);
        rest = &escaped[2..];
    }
    bytes.extend_from_slice(rest.as_bytes());
    let name = String::from_utf8(bytes).ok()?;
    (escape_token(&name) == token).then_some(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;
    use switchboard_testkit::odd_routes;

    use super::*;

    #[test]
    fn subjects_are_valid_tokens_and_parse_back() {
        let p = "switchboard";
        assert_eq!(name(&Route::Namespace("/chat".into()), p), "switchboard.ns._2Fchat");
        assert_eq!(name(&Route::Room("/".into(), "a.b c".into()), p), "switchboard.room._2F.a_2Eb_20c");
        assert_eq!(name(&Route::Room("/".into(), "".into()), p), "switchboard.room._2F._");
        assert_eq!(name(&Route::Room("/".into(), "é".into()), p), "switchboard.room._2F._C3_A9");
        assert_eq!(name(&Route::Node("n_1".into()), p), "switchboard.node.n_5F1");
        for route in odd_routes() {
            let subject = name(&route, "app.sb");
            let tokens: Vec<&str> = subject.split('.').collect();
            assert!(tokens.len() >= 4, "{subject}");
            for t in &tokens {
                assert!(!t.is_empty(), "empty token in {subject}");
                assert!(
                    t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "bad token {t:?} in {subject}"
                );
            }
            assert_eq!(parse("app.sb", &subject), Some(route.clone()), "{subject}");
        }
        let all: std::collections::HashSet<_> = odd_routes().iter().map(|r| name(r, p)).collect();
        assert_eq!(all.len(), odd_routes().len(), "two routes share a subject");
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
        assert_eq!(parse("sb", "sb.ns.a.b"), None);
        assert_eq!(parse("sb", "sb.room.a"), None);
        assert_eq!(parse("sb", "sb.what.a"), None);
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("switchboard"));
        assert!(is_valid_prefix("app.sb-1"));
        for bad in ["", ".", "a..b", "a.*", "a >", "a b", "a.>"] {
            assert!(!is_valid_prefix(bad), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_name_roundtrips(nsp in ".*", room in ".*") {
            let route = Route::Room(nsp.as_str().into(), Room::from(room.as_str()));
            prop_assert_eq!(parse("p", &name(&route, "p")), Some(route.clone()));
            let token = escape_token(&room);
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(['.', '*', '>']) && !token.contains(char::is_whitespace));
            prop_assert_eq!(unescape_token(&token), Some(room));
        }
    }
}
