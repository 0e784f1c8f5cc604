//! Socket.IO: packet texts with their binary attachments (placeholders, counts, nesting, the
//! per-packet byte limit), and packets built from structured input that must survive
//! encode → decode unchanged.

use arbitrary::Unstructured;
use bytes::Bytes;
use switchboard_protocol::SocketIoError;
use switchboard_protocol::socketio::{DecodeLimits, Decoded, Encoded, Packet, PartialBinary};

use crate::arb;

/// Attachments the fuzzed decoder accepts: small, so padding a short input with empty
/// attachments stays cheap, and the fuzzer still crosses the limit.
const MAX_ATTACHMENTS: usize = 256;

/// Bytes of a whole packet (text plus attachments) the fuzzed decoder accepts: small enough that
/// inputs cross it, so the refusal path runs too.
const MAX_BYTES: usize = 1024;

/// Separates the text from the attachments, and attachments from each other, in a
/// `socketio_decode` input: never part of UTF-8, so the text is never cut inside a character.
pub const SEPARATOR: u8 = 0xff;

/// Stands for [`PLACEHOLDER`] in the text of a `socketio_decode` input (not UTF-8 either), which
/// the fuzzer would hardly guess on its own.
pub const PLACEHOLDER_BYTE: u8 = 0xfe;

/// What [`PLACEHOLDER_BYTE`] expands to: the start of a placeholder, the number to follow.
pub const PLACEHOLDER: &[u8] = br#"{"_placeholder":true,"num":"#;

/// Feeds `partial` its attachments, then empty ones if the input ran out, checking what it
/// reports after each; `None` once the packet is refused.
fn complete(mut partial: PartialBinary, attachments: impl IntoIterator<Item = Bytes>) -> Option<Packet> {
    let nsp = partial.nsp().map(str::to_owned);
    for attachment in attachments.into_iter().chain(std::iter::repeat(Bytes::new())) {
        let (remaining, held, len) = (partial.remaining(), partial.bytes(), attachment.len());
        assert!(remaining > 0 && remaining <= partial.expected() && held <= MAX_BYTES);
        match partial.push(attachment) {
            Ok(Some(packet)) => {
                assert_eq!(remaining, 1, "complete at its last attachment");
                assert_eq!(Some(packet.nsp()), nsp.as_deref());
                assert_eq!(partial.remaining(), 0);
                assert_eq!(partial.push(Bytes::new()), Err(SocketIoError::UnexpectedAttachment));
                return Some(packet);
            }
            Ok(None) => {
                assert_eq!(partial.remaining(), remaining - 1);
                assert_eq!(partial.bytes(), held + len);
            }
            Err(error) => {
                assert_eq!(error, SocketIoError::PacketTooLarge(MAX_BYTES));
                assert!(held + len > MAX_BYTES, "refused within the limit");
                assert_eq!(partial.nsp(), None, "a refused packet is dropped");
                assert_eq!(partial.push(Bytes::new()), Err(SocketIoError::UnexpectedAttachment));
                return None;
            }
        }
    }
    None
}

/// Checks two decodings of one text agree (a pending binary packet by what it tells, as its
/// limits differ).
fn assert_same_decoding(a: &Result<Decoded, SocketIoError>, b: &Result<Decoded, SocketIoError>) {
    match (a, b) {
        (Ok(Decoded::Complete(a)), Ok(Decoded::Complete(b))) => assert_eq!(a, b),
        (Ok(Decoded::NeedsAttachments(a)), Ok(Decoded::NeedsAttachments(b))) => {
            assert_eq!((a.expected(), a.nsp(), a.bytes()), (b.expected(), b.nsp(), b.bytes()));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("two decodings of one text differ: {a:?} / {b:?}"),
    }
}

/// Decodes what [`Packet::encode`] wrote, with its own attachments and the default limits.
fn decode_encoded(encoded: &Encoded) -> Packet {
    let text = std::str::from_utf8(&encoded.text).expect("encoded text is UTF-8");
    match Packet::decode(text).expect("an encoded packet decodes") {
        Decoded::Complete(packet) => {
            assert!(encoded.attachments.is_empty(), "plain packet with attachments");
            packet
        }
        Decoded::NeedsAttachments(mut partial) => {
            assert_eq!(partial.expected(), encoded.attachments.len());
            let mut done = None;
            for attachment in &encoded.attachments {
                assert!(done.is_none(), "packet complete before its last attachment");
                done = partial.push(attachment.clone()).expect("attachment accepted");
            }
            done.expect("packet complete after its attachments")
        }
    }
}

/// Encodes `packet`, decodes it back, and checks it is the same packet and the same bytes again.
fn assert_roundtrip(packet: &Packet) {
    let encoded = packet.encode();
    assert_eq!(encoded.is_binary(), packet.packet_type().is_binary());
    let again = decode_encoded(&encoded);
    assert_eq!(&again, packet);
    assert_eq!(again.encode(), encoded);
}

/// Expands [`PLACEHOLDER_BYTE`] in the text part of an input.
fn expand_placeholders(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        match b {
            PLACEHOLDER_BYTE => out.extend_from_slice(PLACEHOLDER),
            b => out.push(b),
        }
    }
    out
}

/// Target `socketio_decode`: the packet text, then each attachment, separated by [`SEPARATOR`];
/// a packet that decodes must re-encode and decode to itself.
pub fn decode(data: &[u8]) {
    let mut parts = data.split(|&b| b == SEPARATOR);
    let text = expand_placeholders(parts.next().unwrap_or_default());
    let Ok(text) = std::str::from_utf8(&text) else { return };
    let limits = DecodeLimits::new(MAX_ATTACHMENTS, MAX_BYTES);
    let decoded = Packet::decode_with_limits(text, limits);
    // The other entry points differ only by their limits: no byte limit, and for `decode` the
    // default attachment count.
    let no_byte_limit = Packet::decode_with_max_attachments(text, MAX_ATTACHMENTS);
    if !matches!(decoded, Err(SocketIoError::PacketTooLarge(MAX_BYTES))) {
        assert_same_decoding(&no_byte_limit, &decoded);
    }
    if !matches!(no_byte_limit, Err(SocketIoError::TooManyAttachments(MAX_ATTACHMENTS))) {
        assert_same_decoding(&Packet::decode(text), &no_byte_limit);
    }
    let packet = match decoded {
        Ok(Decoded::Complete(packet)) => packet,
        Ok(Decoded::NeedsAttachments(partial)) => {
            assert!(partial.expected() >= 1 && partial.expected() <= MAX_ATTACHMENTS);
            assert_eq!(partial.bytes(), text.len());
            match complete(partial, parts.map(Bytes::copy_from_slice)) {
                Some(packet) => packet,
                None => return,
            }
        }
        Err(_) => return,
    };
    assert_roundtrip(&packet);
}

/// Target `socketio_roundtrip`: a packet built from the input ([`arb::socketio_packet`]) must
/// encode and decode to itself.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(packet) = arb::socketio_packet(&mut u) else { return };
    if packet.packet_type().is_binary() && arb::has_placeholder_key(&packet) {
        // An object shaped like a placeholder inside a binary packet is read as one, as in
        // socket.io: not something an encoder can carry.
        return;
    }
    assert_roundtrip(&packet);
}
