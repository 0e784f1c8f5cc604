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
//!   another namespace, brings it back);
//! - only `host:port` addresses are recorded ([`is_valid_address`]): the forwarding node dials
//!   them, so a URL, user info or a path must never get that far;
//! - at most `max_peers` nodes are kept: a node not known yet is ignored while the directory is full.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::NodeId;

/// Longest address accepted: a DNS name (253) and a port.
const MAX_ADDRESS_LEN: usize = 253 + 6;

/// Whether `address` is something a node may dial to forward a request: `host:port`, the host an
/// IPv4 address, a bracketed IPv6 address or a DNS name (letters, digits, `-`, `_`, dot-separated
/// labels of 1–63), the port 1–65535, and nothing else: no scheme, user info, path, query or
/// fragment, no whitespace.
pub fn is_valid_address(address: &str) -> bool {
    if address.len() > MAX_ADDRESS_LEN {
        return false;
    }
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    // An IPv6 address only in brackets: `::1:3000` is ambiguous.
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // Four all-digit labels that are not an IPv4 address (`999.1.1.1`) are not a name either.
    let numeric = host.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    !host.is_empty() && host.len() <= 253 && !numeric && host.split('.').all(label)
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Directory {
    peers: HashMap<NodeId, (Arc<str>, Instant)>,
    timeout: Duration,
    max_peers: usize,
}

impl Directory {
    /// No peers yet; a peer silent for longer than `timeout` loses its address. Holds at most
    /// [`DEFAULT_MAX_PEERS`](super::config::DEFAULT_MAX_PEERS) peers unless told otherwise.
    pub fn new(timeout: Duration) -> Self {
        Self { peers: HashMap::new(), timeout, max_peers: super::config::DEFAULT_MAX_PEERS }
    }

    /// Holds at most `n` peers.
    pub fn with_max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }

    /// Records that `node` announced `address` at `now`; returns `false` (and records nothing)
    /// for an address that is not `host:port` ([`is_valid_address`]), or a node not known yet
    /// while the directory is full.
    pub fn heard(&mut self, node: &NodeId, address: &str, now: Instant) -> bool {
        if !is_valid_address(address) {
            return false;
        }
        if let Some((known, seen)) = self.peers.get_mut(node.as_str()) {
            if &**known != address {
                *known = address.into();
            }
            *seen = (*seen).max(now);
            return true;
        }
        if self.peers.len() >= self.max_peers {
            // Make room from the silent ones before refusing a newcomer.
            self.expire(now);
            if self.peers.len() >= self.max_peers {
                return false;
            }
        }
        self.peers.insert(node.clone(), (address.into(), now));
        true
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
    fn only_host_and_port_are_addresses() {
        for good in [
            "10.0.0.7:3000",
            "[::1]:3000",
            "[2001:db8::7]:443",
            "switchboard-0.switchboard.default.svc.cluster.local:3000",
            "my_service:3000",
            "localhost:1",
            "h:65535",
        ] {
            assert!(is_valid_address(good), "{good} refused");
        }
        for bad in [
            "",
            "10.0.0.7",
            "10.0.0.7:",
            "10.0.0.7:0",
            "10.0.0.7:65536",
            "10.0.0.7:+80",
            ":3000",
            "http://10.0.0.7:3000",
            "user@10.0.0.7:3000",
            "user:pw@10.0.0.7:3000",
            "10.0.0.7:3000/path",
            "10.0.0.7/x:3000",
            "10.0.0.7:3000?q=1",
            "10.0.0.7:3000#f",
            "evil.example?:3000",
            "a b:3000",
            "::1:3000",
            "[::1:3000",
            "[not-v6]:3000",
            "-host:3000",
            "host-:3000",
            "a..b:3000",
            "999.1.1.1:3000",
            "host\n:3000",
            "é.example:3000",
        ] {
            assert!(!is_valid_address(bad), "{bad:?} accepted");
        }
        assert!(!is_valid_address(&format!("{}:3000", "a".repeat(64))), "a label over 63");
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(!is_valid_address(&format!("{long}:3000")), "a name over 253");
    }

    #[test]
    fn an_address_that_is_not_host_and_port_is_not_recorded() {
        let t0 = Instant::now();
        let mut d = Directory::new(TIMEOUT);
        assert!(!d.heard(&"a".into(), "http://169.254.169.254/latest:80", t0));
        assert!(d.is_empty());
        assert!(d.heard(&"a".into(), "10.0.0.1:3000", t0));
        assert!(!d.heard(&"a".into(), "10.0.0.1:3000/x", t0));
        assert_eq!(d.address("a", t0).as_deref(), Some("10.0.0.1:3000"), "the good one stays");
    }

    #[test]
    fn a_full_directory_ignores_new_nodes_until_one_expires() {
        let t0 = Instant::now();
        let mut d = Directory::new(TIMEOUT).with_max_peers(2);
        assert!(d.heard(&"a".into(), "10.0.0.1:3000", t0));
        assert!(d.heard(&"b".into(), "10.0.0.2:3000", t0 + Duration::from_secs(5)));
        assert!(!d.heard(&"c".into(), "10.0.0.3:3000", t0 + Duration::from_secs(6)));
        assert!(d.heard(&"a".into(), "10.0.0.1:3000", t0 + Duration::from_secs(6)), "known nodes refresh");
        assert_eq!(d.len(), 2);
        // b goes silent; once it expired, a newcomer takes its place.
        let later = t0 + Duration::from_secs(16);
        assert!(d.heard(&"c".into(), "10.0.0.3:3000", later));
        assert_eq!(d.address("b", later), None);
        assert_eq!(d.len(), 2);
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
