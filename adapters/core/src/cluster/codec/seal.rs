//! Authenticated frames: with a cluster secret, every frame carries an HMAC-SHA256 tag over all
//! its bytes, so a program that can publish on the broker but does not hold the secret cannot
//! speak for a node ([`ClusterConfig::with_secret`](crate::cluster::ClusterConfig::with_secret)).
//!
//! ```text
//! | "SB" | version | kind | 0x80 | … the frame as without a secret … | tag: 32 bytes |
//! ```
//!
//! The high bit of the kind byte says the frame is sealed, so a node without a secret tells a
//! sealed frame from garbage and counts it as forged too: nodes with and without a secret never
//! act on each other's messages. [`Key::seal`] runs once per published frame and [`open`] once
//! per received frame, before anything else reads it, never per recipient.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::frame::MAGIC;
use crate::error::CodecError;

/// The kind byte's flag for a sealed frame.
pub(super) const SEALED: u8 = 0x80;
/// Bytes of the tag at the end of a sealed frame.
pub const TAG_LEN: usize = 32;

/// The cluster secret, keyed once: sealing a frame clones the keyed state (no key hashing per
/// frame). Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Key {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from the shared secret (any length: HMAC hashes a long one down).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        Self { mac }
    }

    /// Marks `frame` (a complete frame) sealed and appends its tag.
    pub(super) fn seal(&self, frame: &mut Vec<u8>) {
        frame[3] |= SEALED;
        let mut mac = self.mac.clone();
        mac.update(frame);
        frame.extend_from_slice(&mac.finalize().into_bytes());
    }

    /// Whether `tag` is the tag of `body` (compared in constant time).
    fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

/// Whether `frame` says it is sealed: our magic, and the flag in its kind byte.
fn is_sealed(frame: &[u8]) -> bool {
    frame.len() > 3 && frame[..2] == MAGIC && frame[3] & SEALED != 0
}

/// Checks a received frame's origin and returns the frame to decode (a slice, no copy).
///
/// With a `key`, the frame must be sealed with it: anything else (unsealed, another secret, a
/// changed byte, garbage) is [`CodecError::Forged`], and the tag is cut off. Without one, a sealed
/// frame is [`CodecError::Forged`] (a node with a secret sent it; this one cannot check it) and
/// anything else is returned as is, for [`decode`](super::decode) to judge.
pub fn open(frame: &Bytes, key: Option<&Key>) -> Result<Bytes, CodecError> {
    let sealed = is_sealed(frame);
    let Some(key) = key else {
        return if sealed { Err(CodecError::Forged) } else { Ok(frame.clone()) };
    };
    let Some(body_len) = frame.len().checked_sub(TAG_LEN) else { return Err(CodecError::Forged) };
    if !sealed || !key.verify(&frame[..body_len], &frame[body_len..]) {
        return Err(CodecError::Forged);
    }
    Ok(frame.slice(..body_len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::{decode, encode, encode_with};
    use super::*;
    use crate::cluster::message::Message;

    #[test]
    fn a_sealed_frame_opens_with_its_key_only() {
        let key = Key::new(b"a cluster secret of some length");
        let other = Key::new(b"another cluster secret entirely");
        let message = Message::Address { address: "10.0.0.7:3000".into() };
        let sealed = encode_with("n", "/", &message, Some(&key)).unwrap();
        let plain = encode("n", "/", &message).unwrap();
        assert_eq!(sealed.len(), plain.len() + TAG_LEN);
        assert_eq!(sealed[3], plain[3] | SEALED);
        assert_eq!(&sealed[4..plain.len()], &plain[4..], "the frame itself is unchanged");
        let opened = open(&sealed, Some(&key)).unwrap();
        assert_eq!(decode(&opened).unwrap().message, message);
        assert_eq!(open(&sealed, Some(&other)), Err(CodecError::Forged), "another secret");
        assert_eq!(open(&sealed, None), Err(CodecError::Forged), "a node without a secret");
        assert_eq!(open(&plain, Some(&key)), Err(CodecError::Forged), "unsealed, to a node with one");
        assert_eq!(open(&plain, None).unwrap(), plain, "no secret on either side: as before");
        for cut in 0..sealed.len() {
            assert_eq!(open(&sealed.slice(..cut), Some(&key)), Err(CodecError::Forged), "cut at {cut}");
        }
        for i in 0..sealed.len() {
            let mut flipped = sealed.to_vec();
            flipped[i] ^= 1;
            assert_eq!(open(&flipped.into(), Some(&key)), Err(CodecError::Forged), "bit flipped at {i}");
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let key = Key::new(b"hunter2hunter2hunter2");
        assert!(!format!("{key:?}").contains("hunter2"));
    }
}
