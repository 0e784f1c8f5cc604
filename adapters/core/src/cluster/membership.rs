//! Who else serves a namespace: the live peers, learned from heartbeats.
//!
//! Pure bookkeeping with the time passed in, so every rule is unit-tested without a clock:
//!
//! - a heartbeat (periodic or initial) records its sender as seen now;
//! - an *initial* heartbeat (a node that just started) asks for an immediate answer, so the new
//!   node learns its peers at once rather than after a heartbeat interval;
//! - a peer not heard from for longer than the timeout is no longer live (and [`Membership::expire`]
//!   forgets it, so pending requests can stop waiting for it);
//! - a closing message removes its sender at once;
//! - at most `max_peers` nodes are kept: a heartbeat from a node not known yet is ignored while
//!   the membership is full ([`Membership::admits`]), so made-up node ids cannot grow it.
//!
//! The server count is the live peers plus this node. It never comes from the broker (`PUBSUB
//! NUMSUB` is wrong on Redis Cluster and racy at start-up).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::NodeId;

/// What a heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The sender was not a live peer before (new, or back after expiring).
    pub new_peer: bool,
    /// The sender just started: answer it now with a heartbeat to its node route.
    pub answer: bool,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Membership {
    peers: HashMap<NodeId, Instant>,
    timeout: Duration,
    max_peers: usize,
}

impl Membership {
    /// No peers yet; a peer silent for longer than `timeout` is dropped. Holds at most
    /// [`DEFAULT_MAX_PEERS`](super::config::DEFAULT_MAX_PEERS) peers unless told otherwise.
    pub fn new(timeout: Duration) -> Self {
        Self { peers: HashMap::new(), timeout, max_peers: super::config::DEFAULT_MAX_PEERS }
    }

    /// Holds at most `n` peers (expired ones count until [`Membership::expire`] drops them).
    pub fn with_max_peers(mut self, n: usize) -> Self {
        self.max_peers = n;
        self
    }

    /// Whether a heartbeat from `node` would be recorded: it is known, or there is room.
    pub fn admits(&self, node: &NodeId) -> bool {
        self.peers.len() < self.max_peers || self.peers.contains_key(node.as_str())
    }

    /// Records a heartbeat from `node` at `now`; `initial` for a starting node's first one. A
    /// node the membership does not [admit](Membership::admits) is not recorded (nor answered).
    pub fn heartbeat(&mut self, node: &NodeId, initial: bool, now: Instant) -> Seen {
        if !self.admits(node) {
            return Seen { new_peer: false, answer: false };
        }
        let was_live = self.is_live(node, now);
        match self.peers.get_mut(node.as_str()) {
            // Never move back in time (a late-processed older heartbeat).
            Some(seen) => *seen = (*seen).max(now),
            None => {
                self.peers.insert(node.clone(), now);
            }
        }
        Seen { new_peer: !was_live, answer: initial }
    }

    /// `node` announced it is closing; returns whether it was a peer.
    pub fn leave(&mut self, node: &NodeId) -> bool {
        self.peers.remove(node.as_str()).is_some()
    }

    /// Forgets the peers silent for longer than the timeout at `now`; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<NodeId> {
        let timeout = self.timeout;
        let mut gone = Vec::new();
        self.peers.retain(|node, seen| {
            let live = now.saturating_duration_since(*seen) <= timeout;
            if !live {
                gone.push(node.clone());
            }
            live
        });
        gone
    }

    /// Whether `node` is a live peer at `now`.
    pub fn is_live(&self, node: &NodeId, now: Instant) -> bool {
        self.peers.get(node.as_str()).is_some_and(|seen| now.saturating_duration_since(*seen) <= self.timeout)
    }

    /// The live peers at `now` (exact even between [`Membership::expire`] calls).
    pub fn live(&self, now: Instant) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) <= self.timeout)
            .map(|(node, _)| node.clone())
            .collect()
    }

    /// Nodes serving the namespace: the live peers and this one.
    pub fn server_count(&self, now: Instant) -> usize {
        self.live(now).len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn ids(mut v: Vec<NodeId>) -> Vec<String> {
        v.sort();
        v.into_iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn heartbeats_make_peers_and_initial_ones_ask_for_an_answer() {
        let t0 = Instant::now();
        let mut m = Membership::new(TIMEOUT);
        assert_eq!(m.server_count(t0), 1);
        assert_eq!(m.heartbeat(&"a".into(), true, t0), Seen { new_peer: true, answer: true });
        assert_eq!(m.heartbeat(&"a".into(), false, t0), Seen { new_peer: false, answer: false });
        assert_eq!(m.heartbeat(&"b".into(), false, t0), Seen { new_peer: true, answer: false });
        // A restarted node announces itself again: known, but it still needs the answer.
        assert_eq!(m.heartbeat(&"b".into(), true, t0), Seen { new_peer: false, answer: true });
        assert_eq!(ids(m.live(t0)), ["a", "b"]);
        assert_eq!(m.server_count(t0), 3);
    }

    #[test]
    fn silent_peers_stop_being_live_after_the_timeout() {
        let t0 = Instant::now();
        let mut m = Membership::new(TIMEOUT);
        m.heartbeat(&"a".into(), false, t0);
        m.heartbeat(&"b".into(), false, t0 + Duration::from_secs(5));
        let at_limit = t0 + TIMEOUT;
        assert!(m.is_live(&"a".into(), at_limit), "exactly at the timeout a peer is still live");
        let after = at_limit + Duration::from_millis(1);
        assert!(!m.is_live(&"a".into(), after));
        assert_eq!(ids(m.live(after)), ["b"], "live() is exact without expire()");
        assert_eq!(m.server_count(after), 2);
        assert_eq!(ids(m.expire(after)), ["a"]);
        assert!(m.expire(after).is_empty(), "expired once");
        // It comes back with its next heartbeat.
        assert!(m.heartbeat(&"a".into(), false, after).new_peer);
        assert_eq!(m.server_count(after), 3);
    }

    #[test]
    fn a_late_heartbeat_does_not_move_last_seen_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(TIMEOUT);
        m.heartbeat(&"a".into(), false, t0 + Duration::from_secs(8));
        m.heartbeat(&"a".into(), false, t0);
        assert!(m.is_live(&"a".into(), t0 + Duration::from_secs(17)));
    }

    #[test]
    fn a_full_membership_ignores_unknown_nodes_until_one_is_dropped() {
        let t0 = Instant::now();
        let mut m = Membership::new(TIMEOUT).with_max_peers(2);
        m.heartbeat(&"a".into(), false, t0);
        m.heartbeat(&"b".into(), false, t0);
        assert!(!m.admits(&"c".into()));
        assert!(m.admits(&"a".into()));
        assert_eq!(m.heartbeat(&"c".into(), true, t0), Seen { new_peer: false, answer: false });
        assert_eq!(ids(m.live(t0)), ["a", "b"]);
        m.heartbeat(&"a".into(), false, t0 + TIMEOUT);
        assert_eq!(ids(m.expire(t0 + TIMEOUT + Duration::from_millis(1))), ["b"]);
        assert!(m.heartbeat(&"c".into(), false, t0 + TIMEOUT).new_peer);
        assert!(m.leave(&"a".into()));
        assert!(m.admits(&"d".into()));
    }

    #[test]
    fn closing_removes_at_once() {
        let t0 = Instant::now();
        let mut m = Membership::new(TIMEOUT);
        m.heartbeat(&"a".into(), false, t0);
        assert!(m.leave(&"a".into()));
        assert!(!m.leave(&"a".into()));
        assert!(m.live(t0).is_empty());
        assert!(m.expire(t0 + TIMEOUT * 2).is_empty(), "a closed peer does not expire again");
    }
}
