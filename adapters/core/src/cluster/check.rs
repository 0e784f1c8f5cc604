//! What a decoded message from a peer may ask of this node, checked before anything acts on it:
//! the broker may carry anything (a buggy or hostile publisher, without a cluster secret), so no
//! name, count or address in a message is used beyond the limits of [`ClusterConfig`].
//!
//! A message that fails a check is dropped whole and counted as `malformed` by the node's
//! receive path, which then goes on with the next one.

use super::NodeId;
use super::config::ClusterConfig;
use super::directory::is_valid_address;
use super::message::{Envelope, Message};
use crate::types::Room;

/// Why a well-formed message is refused (for the log).
pub(super) type Refusal = &'static str;

/// `Ok` if `envelope` asks nothing beyond `config`'s limits; see the module docs.
pub(super) fn check(envelope: &Envelope, config: &ClusterConfig) -> Result<(), Refusal> {
    // Answers go to a route named after the sender: it must be a node id a broker takes.
    if !NodeId::is_valid(envelope.sender.as_str()) {
        return Err("sender is not a valid node id");
    }
    match &envelope.message {
        Message::Address { address } if !is_valid_address(address) => {
            Err("forwarding address is not host:port")
        }
        Message::BroadcastClientCount { count, .. }
            if usize::try_from(*count).map_or(true, |n| n > config.max_remote_acks) =>
        {
            Err("client count over max_remote_acks")
        }
        Message::SocketsJoin { rooms, .. } | Message::SocketsLeave { rooms, .. } => rooms_fit(rooms, config),
        _ => Ok(()),
    }
}

/// A peer's socketsJoin/socketsLeave: every selected local socket joins (leaves) every room, and
/// each joined room becomes a broker subscription.
fn rooms_fit(rooms: &[Room], config: &ClusterConfig) -> Result<(), Refusal> {
    if rooms.len() > config.max_rooms_per_join {
        return Err("more rooms than max_rooms_per_join");
    }
    if rooms.iter().any(|r| r.as_str().len() > config.max_name_bytes) {
        return Err("room name over max_name_bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cluster::message::Target;

    fn from(sender: &str, message: Message) -> Envelope {
        Envelope { sender: NodeId::from(sender), nsp: "/".into(), message }
    }

    fn join(rooms: Vec<Room>) -> Message {
        Message::SocketsJoin { target: Target::default(), rooms }
    }

    #[test]
    fn a_peer_asks_nothing_beyond_the_limits() {
        let config = ClusterConfig::new("me").unwrap().with_max_remote_acks(100);
        let ok = |e: &Envelope| check(e, &config).is_ok();
        assert!(ok(&from("node-1", Message::Heartbeat)));
        for sender in ["", "a.b", "a b", "a>", &"n".repeat(NodeId::MAX_LEN + 1)] {
            assert!(!ok(&from(sender, Message::Heartbeat)), "sender {sender:?}");
        }
        assert!(ok(&from("n", Message::Address { address: "10.0.0.1:3000".into() })));
        assert!(!ok(&from("n", Message::Address { address: "http://10.0.0.1:3000/".into() })));
        let count = |count| from("n", Message::BroadcastClientCount { request_id: 1, count });
        assert!(ok(&count(100)));
        assert!(!ok(&count(101)));
        assert!(!ok(&count(u64::MAX)));
        let room = |len: usize| Room::from("r".repeat(len));
        assert!(ok(&from("n", join(vec![room(256); 1000]))));
        assert!(!ok(&from("n", join(vec![room(257)]))));
        assert!(!ok(&from("n", join(vec![room(1); 1001]))));
        let leave = Message::SocketsLeave { target: Target::default(), rooms: vec![room(5000)] };
        assert!(!ok(&from("n", leave)));
    }
}
