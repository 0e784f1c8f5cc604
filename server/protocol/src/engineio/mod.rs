//! Engine.IO v4: single packets ([`packet`]) and the long-polling payload that batches them ([`payload`]).

pub mod packet;
pub mod payload;

pub use packet::{Encoded, Packet, PacketType};
pub use payload::{PayloadDecoder, RECORD_SEPARATOR, decode_payload, encode_encoded_payload, encode_payload};
