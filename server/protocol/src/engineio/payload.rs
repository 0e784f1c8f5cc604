//! The long-polling payload: packets joined by the record separator 0x1e, binary ones as `b` + base64.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::packet::{Encoded, Packet, base64_decode};
use crate::DecodeError;

/// Separates packets in a polling payload; it cannot occur inside UTF-8 text of a packet.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// Iterates over the packets of a polling payload, decoding each lazily so the caller can stop at the first error.
#[derive(Debug, Clone)]
pub struct PayloadDecoder {
    rest: Option<Bytes>,
}

impl Iterator for PayloadDecoder {
    type Item = Result<Packet, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut rest = self.rest.take()?;
        let record = match find_separator(&rest) {
            Some(i) => {
                let record = rest.split_to(i);
                rest.advance(1);
                self.rest = Some(rest);
                record
            }
            None => rest,
        };
        Some(decode_record(record))
    }
}

fn find_separator(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == RECORD_SEPARATOR)
}

fn decode_record(record: Bytes) -> Result<Packet, DecodeError> {
    match record.first() {
        Some(b'b') => base64_decode(&record[1..]).map(Packet::Binary),
        _ => Packet::decode_text_utf8(record),
    }
}

/// Splits a polling body into packets; the whole body must be UTF-8 (checked once, up front).
pub fn decode_payload(body: Bytes) -> Result<PayloadDecoder, DecodeError> {
    std::str::from_utf8(&body).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(PayloadDecoder { rest: Some(body) })
}

/// Joins packets into one polling payload.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>, out: &mut BytesMut) {
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(RECORD_SEPARATOR);
        }
        packet.encode_text(out);
    }
}

/// Joins already-encoded packets into one polling payload (the server's flush path).
pub fn encode_encoded_payload<'a>(packets: impl IntoIterator<Item = &'a Encoded>, out: &mut BytesMut) {
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(RECORD_SEPARATOR);
        }
        packet.encode_polling(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &[u8]) -> Result<Vec<Packet>, DecodeError> {
        decode_payload(Bytes::copy_from_slice(s))?.collect()
    }

    #[test]
    fn splits_on_record_separator() {
        assert_eq!(
            decode(b"4hello\x1ebAQIDBA==\x1e2"),
            Ok(vec![
                Packet::Message(Bytes::from("hello")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Ping(Bytes::new()),
            ])
        );
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"4a\x1e"), Err(DecodeError::Empty));
        assert_eq!(decode(b"babc!"), Err(DecodeError::InvalidBase64));
        assert_eq!(decode(b"4\xff"), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn encodes_batches() {
        let mut out = BytesMut::new();
        encode_payload(
            &[Packet::Message(Bytes::from("a")), Packet::Binary(Bytes::from_static(&[1])), Packet::Noop],
            &mut out,
        );
        assert_eq!(&out[..], b"4a\x1ebAQ==\x1e6");
    }
}
