//! Socket.IO v5: packets ([`packet`]) over Engine.IO messages, application data that may hold binary
//! anywhere ([`value`]), and the placeholder/attachment mechanics that carry that binary ([`binary`]).
//!
//! A binary packet travels as one text message followed by its attachments as binary messages:
//! [`Packet::encode`] yields both, and [`Packet::decode`] returns a [`PartialBinary`] that collects them.

pub mod binary;
pub mod packet;
pub mod value;

pub use binary::PartialBinary;
pub use packet::{
    DEFAULT_MAX_ATTACHMENTS, DEFAULT_NAMESPACE, DecodeLimits, Decoded, Encoded, Packet, PacketType,
    encode_ack, encode_event,
};
pub use value::Value;
