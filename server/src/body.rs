//! The body of every HTTP response a node writes: whole, in memory (Engine.IO never streams a
//! response, and the other endpoints answer a few bytes).

use bytes::Bytes;

/// Every response body.
pub type Body = http_body_util::Full<Bytes>;
