//! Switchboard's wire codecs: Engine.IO v4 packets and polling payloads, and Socket.IO v5 packets.
//!
//! Pure functions over bytes, no I/O and no runtime: the server, the load generator and the fuzz
//! targets all share them, so a decoding bug is found once and fixed once.

pub mod engineio;
mod error;
pub mod socketio;

pub use error::{DecodeError, SocketIoError};
