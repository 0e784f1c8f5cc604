//! Decoding errors, one small enum so a bad packet costs no allocation.

/// Why some bytes are not a valid packet; the server answers each with a session close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet had no bytes at all, not even a type.
    #[error("empty packet")]
    Empty,
    /// The first byte is not one of the packet types `0`–`6`.
    #[error("unknown packet type byte 0x{0:02x}")]
    UnknownType(u8),
    /// A packet type that carries no data came with some.
    #[error("packet type {0} takes no data")]
    UnexpectedData(char),
    /// Text where UTF-8 is required was not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A `b`-prefixed polling packet did not hold valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
}
