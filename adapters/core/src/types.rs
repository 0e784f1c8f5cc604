//! The values that cross the adapter seam: ids, rooms, broadcast options and packets, socket info.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::engineio;
use switchboard_protocol::socketio::{self, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::written::Written;

macro_rules! shared_str {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The string itself.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                Self(s.as_str().into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

shared_str!(
    /// A Socket.IO socket id (one per namespace connection), cheap to clone.
    SocketId
);
shared_str!(
    /// A room name, cheap to clone.
    Room
);

impl SocketId {
    /// The socket's own room: every socket is in the room named by its id, so `to(id)` reaches it.
    pub fn room(&self) -> Room {
        Room(self.0.clone())
    }
}

/// Modifiers of a broadcast, as socket.io names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Only this node's sockets.
    pub local: bool,
    /// Drop for sockets that cannot take it now instead of queueing.
    pub volatile: bool,
    /// Allow compression (socket.io's `compress`, default true there; advisory here).
    pub compress: bool,
}

/// Which sockets a broadcast or a cluster request targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Sockets in any of these rooms; all sockets of the namespace when empty.
    pub rooms: Vec<Room>,
    /// Minus sockets in any of these rooms.
    pub except: Vec<Room>,
    /// Modifiers.
    pub flags: BroadcastFlags,
}

/// A Socket.IO packet encoded once, plus its Engine.IO frames built once, shared by every recipient.
#[derive(Debug, Clone)]
pub struct BroadcastPacket {
    packet: socketio::Encoded,
    frames: Arc<[engineio::Encoded]>,
}

impl BroadcastPacket {
    /// Frames the encoded packet for Engine.IO once: the text as a message, attachments as binary messages.
    pub fn new(packet: socketio::Encoded) -> Self {
        let text = engineio::Encoded::message(&packet.text);
        Self::with_text_frame(packet, text)
    }

    /// Like [`BroadcastPacket::new`], plus a [`Written`] that resolves once every local
    /// recipient's transport has taken the frames.
    pub fn tracked(packet: socketio::Encoded) -> (Self, Written) {
        let mut text = Vec::with_capacity(1 + packet.text.len());
        text.push(engineio::PacketType::Message.digit());
        text.extend_from_slice(&packet.text);
        let (text, written) = crate::written::tracked(text);
        (Self::with_text_frame(packet, engineio::Encoded::Text(text)), written)
    }

    fn with_text_frame(packet: socketio::Encoded, text: engineio::Encoded) -> Self {
        let mut frames = Vec::with_capacity(1 + packet.attachments.len());
        frames.push(text);
        frames.extend(packet.attachments.iter().cloned().map(engineio::Encoded::Binary));
        Self { packet, frames: frames.into() }
    }

    /// The Socket.IO encoding (what a remote adapter ships).
    pub fn packet(&self) -> &socketio::Encoded {
        &self.packet
    }

    /// The Engine.IO frames to queue on each recipient, in order.
    pub fn frames(&self) -> &[engineio::Encoded] {
        &self.frames
    }

    /// Bytes on the wire (text plus attachments), for accounting.
    pub fn len(&self) -> usize {
        self.packet.text.len() + self.packet.attachments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether the packet is empty (never for a valid packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A socket as the cluster sees it (fetchSockets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// Socket id.
    pub id: SocketId,
    /// Namespace.
    pub nsp: String,
    /// Rooms the socket is in (its own id room included).
    pub rooms: Vec<Room>,
    /// Handshake details (headers, query, auth, address, time) as socket.io's `socket.handshake`.
    pub handshake: serde_json::Value,
    /// The socket's application data (`socket.data`).
    pub data: serde_json::Value,
}

/// One socket's answer to a broadcast with acks.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    /// Who answered.
    pub socket: SocketId,
    /// The ack arguments.
    pub args: Vec<Value>,
}

/// The answers to a broadcast with acks: how many to expect, and the stream of them until the deadline.
#[derive(Debug)]
pub struct AckStream {
    /// Number of sockets the packet reached (all nodes).
    pub expected: usize,
    /// Of those, the sockets of this node.
    pub local: usize,
    /// When to stop waiting.
    pub deadline: Instant,
    /// The answers as they come.
    pub responses: mpsc::UnboundedReceiver<AckResponse>,
}

impl AckStream {
    /// Waits for every answer or the deadline; returns the answers and how many are missing.
    pub async fn collect(mut self) -> (Vec<AckResponse>, usize) {
        let mut out = Vec::with_capacity(self.expected);
        while out.len() < self.expected {
            match tokio::time::timeout_at(self.deadline, self.responses.recv()).await {
                Ok(Some(r)) => out.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        let missing = self.expected - out.len();
        (out, missing)
    }
}

/// What the server implements for each of its sockets so an adapter can reach it.
pub trait LocalSocket: Send + Sync + 'static {
    /// The socket id.
    fn id(&self) -> &SocketId;
    /// Queues the frames; volatile packets are dropped when the socket cannot take them now. Never blocks.
    fn deliver(&self, packet: &BroadcastPacket, volatile: bool);
    /// Queues the frames (encoded with `ack_id`) and forwards the socket's answer to `sink`.
    fn deliver_with_ack(
        &self,
        packet: &BroadcastPacket,
        ack_id: u64,
        sink: mpsc::UnboundedSender<AckResponse>,
    );
    /// The socket as fetchSockets reports it (rooms filled in by the adapter).
    fn info(&self) -> SocketInfo;
    /// Disconnects the socket ("server namespace disconnect"); `close` also closes its connection.
    fn disconnect(&self, close: bool);
}
