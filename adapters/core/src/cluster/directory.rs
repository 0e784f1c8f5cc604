//! Where each peer can be reached: the address it announces after each heartbeat, so a node can
//! forward a request for a session it does not own to the node that does (the sid's prefix names it).
//!
//! Pure bookkeeping with the time passed in, like [`Membership`](super::membership::Membership),
//! but node-wide (any namespace's announcement refreshes it):
//!
//! - an `Address` message (sent after every heartbeat) records its address as the sender's, seen now;
//! - a peer not heard from for longer than the timeout has no address any more
//!   ([`Directory::expire`] forgets it, so the map does not grow with pod churn);
//! - a closing message removes its sender at once (its next heartbeat, if it is still alive on
//!   another namespace, brings it back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::NodeId;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Directory {
    peers: HashMap<NodeId, (Arc<str>, Instant)>,
    timeout: Duration,
}

impl Directory {
    /// No peers yet; a peer silent for longer than `timeout` loses its address.
    pub fn new(timeout: Duration) -> Self {
        Self { peers: HashMap::new(), timeout }
    }

    /// Records that `node` announced `address` at `now`.
    pub fn heard(&mut self, node: &NodeId, address: &str, now: Instant) {
        match self.peers.get_mut(node.as_str()) {
            Some((known, seen)) => {
                if &**known != address {
                    *known = address.into();
                }
                *seen = (*seen).max(now);
            }
            None => {
                self.peers.insert(node.clone(), (address.into(), now));
            }
        }
    }

    /// `node` is closing: forget its address.
    pub fn leave(&mut self, node: &NodeId) {
        self.peers.remove(node.as_str());
    }

    /// The address of `node` if it was heard from within the timeout at `now`.
    pub fn address(&self, node: &str, now: Instant) -> Option<Arc<str>> {
        self.peers
            .get(node)
            .filter(|(_, seen)| now.saturating_duration_since(*seen) <= self.timeout)
            .map(|(address, _)| address.clone())
    }

    /// Forgets the peers silent for longer than the timeout at `now`.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.peers.retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= timeout);
    }

    /// Number of peers with an address (live or not yet expired).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer announced an address.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn heartbeats_record_addresses_until_the_timeout() {
        let t0 = Instant::now();
        let mut d = Directory::new(TIMEOUT);
        assert_eq!(d.address("a", t0), None);
        d.heard(&"a".into(), "10.0.0.1:3000", t0);
        assert_eq!(d.address("a", t0).as_deref(), Some("10.0.0.1:3000"));
        assert_eq!(d.address("a", t0 + TIMEOUT).as_deref(), Some("10.0.0.1:3000"));
        let after = t0 + TIMEOUT + Duration::from_millis(1);
        assert_eq!(d.address("a", after), None, "silent peers have no address");
        d.expire(after);
        assert!(d.is_empty(), "and are forgotten");
    }

    #[test]
    fn a_new_address_replaces_the_old_and_late_heartbeats_do_not_age_it() {
        let t0 = Instant::now();
        let mut d = Directory::new(TIMEOUT);
        d.heard(&"a".into(), "10.0.0.1:3000", t0 + Duration::from_secs(8));
        d.heard(&"a".into(), "10.0.0.2:3000", t0);
        assert_eq!(d.address("a", t0 + Duration::from_secs(17)).as_deref(), Some("10.0.0.2:3000"));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn closing_forgets_at_once() {
        let t0 = Instant::now();
        let mut d = Directory::new(TIMEOUT);
        d.heard(&"a".into(), "10.0.0.1:3000", t0);
        d.heard(&"b".into(), "10.0.0.2:3000", t0);
        d.leave(&"a".into());
        assert_eq!(d.address("a", t0), None);
        assert_eq!(d.address("b", t0).as_deref(), Some("10.0.0.2:3000"));
    }
}
