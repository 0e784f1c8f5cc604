//! Fuzz target: the Socket.IO decoder on arbitrary text plus attachments; whatever decodes must
//! re-encode and decode to itself, and encode to the same bytes again.
//!
//! Input layout: the packet text, then each attachment, separated by 0xff (a byte no UTF-8 text
//! contains, so the text part is never cut inside a character). In the text, 0xfe (not UTF-8 either)
//! stands for `{"_placeholder":true,"num":`, which the fuzzer would hardly guess on its own.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::socketio::{DecodeLimits, Decoded, Encoded, Packet};

/// Attachment limit for the fuzzed decoder: small, so padding (below) stays cheap; the limit check is still hit.
const MAX_ATTACHMENTS: usize = 256;

/// Byte limit of a whole packet (text plus attachments) for the fuzzed decoder: small enough
/// that the fuzzer's inputs cross it, so the refusal path runs too.
const MAX_BYTES: usize = 1024;

/// Decodes a text and feeds it the attachments in order, then empty ones if the input ran out, so the
/// fuzzer only has to find a valid header and JSON to reach placeholder resolution; `None` if it fails.
fn decode(text: &str, attachments: impl IntoIterator<Item = Bytes>) -> Option<Packet> {
    match Packet::decode_with_limits(text, DecodeLimits::new(MAX_ATTACHMENTS, MAX_BYTES)).ok()? {
        Decoded::Complete(packet) => Some(packet),
        Decoded::NeedsAttachments(mut partial) => {
            for attachment in attachments.into_iter().chain(std::iter::repeat(Bytes::new())) {
                if let Some(packet) = partial.push(attachment).ok()? {
                    return Some(packet);
                }
            }
            None
        }
    }
}

fn decode_encoded(encoded: &Encoded) -> Packet {
    let text = std::str::from_utf8(&encoded.text).expect("encoded text is UTF-8");
    match Packet::decode(text).expect("encoded packet decodes") {
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

/// Expands 0xfe in the text part into the start of a placeholder object.
fn expand_placeholders(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for &b in text {
        match b {
            0xfe => out.extend_from_slice(br#"{"_placeholder":true,"num":"#),
            b => out.push(b),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let text = expand_placeholders(parts.next().unwrap_or_default());
    let Ok(text) = std::str::from_utf8(&text) else { return };
    let Some(packet) = decode(text, parts.map(Bytes::copy_from_slice)) else { return };

    let encoded = packet.encode();
    let again = decode_encoded(&encoded);
    assert_eq!(again, packet);
    assert_eq!(again.encode(), encoded);
});
