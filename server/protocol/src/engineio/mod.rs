//! Engine.IO v4: single packets ([`packet`]) and the long-polling payload that batches them ([`payload`]).

pub mod packet;
pub mod payload;

pub use packet::{Packet, PacketType};
pub use payload::{PayloadDecoder, decode_payload, encode_payload};
