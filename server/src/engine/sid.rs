//! Session ids: unguessable, URL-safe, and prefixed with the node id so a router can find the owner.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore as _;

/// Separates the node id from the random part; not in the base64url alphabet, so the split is unambiguous.
pub const NODE_SEPARATOR: char = '.';

/// A session id: `<node id>.<22 base64url chars of 128 random bits>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(Arc<str>);

impl Sid {
    /// A fresh sid for a session on `node_id`, from the OS-seeded thread RNG (a CSPRNG).
    pub fn generate(node_id: &str) -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self(format!("{node_id}{NODE_SEPARATOR}{random}").into())
    }

    /// The sid as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the node that issued this sid, if it has one.
    pub fn node_id(&self) -> Option<&str> {
        self.0.split_once(NODE_SEPARATOR).map(|(node, _)| node)
    }
}

impl Borrow<str> for Sid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A short random node id (6 base64url chars, 36 bits), unique enough within one cluster.
pub fn random_node_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    let mut id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    id.truncate(6);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_has_node_prefix_and_128_random_bits() {
        let sid = Sid::generate("n1");
        assert_eq!(sid.node_id(), Some("n1"));
        let random = sid.as_str().split_once('.').map(|(_, r)| r).unwrap_or_default();
        assert_eq!(random.len(), 22);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(Sid::generate("n1"), sid);
    }
}
