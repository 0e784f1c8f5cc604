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

/// Why a Socket.IO packet (or one of its binary attachments) was rejected; the server answers with a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocketIoError {
    /// The packet had no characters at all, not even a type.
    #[error("empty packet")]
    Empty,
    /// The first character is not one of the packet types `0`–`6`.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A binary packet did not start with decimal digits followed by `-`.
    #[error("invalid attachment count")]
    InvalidAttachmentCount,
    /// A binary packet announced zero attachments.
    #[error("binary packet announces no attachments")]
    NoAttachments,
    /// A binary packet announced more attachments than the decoder accepts (the limit is given).
    #[error("more than {0} attachments")]
    TooManyAttachments(usize),
    /// The ack id does not fit in a u64.
    #[error("ack id out of range")]
    AckIdOverflow,
    /// This packet type carries no ack id but one was present.
    #[error("{0} packet takes no ack id")]
    UnexpectedAckId(crate::socketio::PacketType),
    /// An ACK packet had no ack id.
    #[error("{0} packet without ack id")]
    MissingAckId(crate::socketio::PacketType),
    /// The data after the header is not valid JSON (or has trailing characters); column within the JSON text.
    #[error("invalid JSON data at column {column}")]
    InvalidJson {
        /// 1-based column of the error inside the JSON text, as reported by serde_json.
        column: usize,
    },
    /// This packet type requires data but none followed the header.
    #[error("{0} packet without data")]
    MissingData(crate::socketio::PacketType),
    /// This packet type takes no data but some followed the header.
    #[error("{0} packet takes no data")]
    UnexpectedData(crate::socketio::PacketType),
    /// The JSON data has the wrong shape for the type (see [`crate::socketio::Packet`] for each shape).
    #[error("invalid data for {0} packet")]
    InvalidData(crate::socketio::PacketType),
    /// A binary placeholder's `num` is missing or not a non-negative integer.
    #[error("invalid binary placeholder")]
    InvalidPlaceholder,
    /// A binary placeholder refers to an attachment the packet did not announce.
    #[error("placeholder {num} out of range for {attachments} attachments")]
    PlaceholderOutOfRange {
        /// The placeholder's `num`.
        num: u64,
        /// How many attachments the packet announced.
        attachments: usize,
    },
    /// An attachment arrived after the packet already had all it announced.
    #[error("unexpected binary attachment")]
    UnexpectedAttachment,
    /// The packet's text plus its attachments hold more bytes than the decoder accepts (the limit is given).
    #[error("packet larger than {0} bytes")]
    PacketTooLarge(usize),
}
