//! The Engine.IO HTTP errors: status 400 (403 for code 4) and the standard `{"code":N,"message":"…"}` body.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use crate::body::Body;

/// Engine.IO's error codes, numbered as socket.io numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `transport` missing or not enabled.
    #[error("Transport unknown")]
    TransportUnknown,
    /// `sid` does not name an open session.
    #[error("Session ID unknown")]
    UnknownSid,
    /// A handshake that is not a GET.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// Anything else the protocol does not allow.
    #[error("Bad request")]
    BadRequest,
    /// Refused by the `allowRequest` hook.
    #[error("Forbidden")]
    Forbidden,
    /// `EIO` missing or not 4.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// The node is draining before it exits: a new session must go to another node (503, code 4).
    #[error("Server shutting down")]
    ShuttingDown,
}

impl RequestError {
    /// The numeric code in the JSON body.
    pub fn code(self) -> u8 {
        match self {
            Self::TransportUnknown => 0,
            Self::UnknownSid => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden | Self::ShuttingDown => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The error response, with socket.io's message or a custom one (allowRequest's reason).
    pub(crate) fn response(self, message: Option<&str>) -> Response<Body> {
        let status = match self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({
            "code": self.code(),
            "message": message.map(str::to_owned).unwrap_or_else(|| self.to_string()),
        });
        let mut response = Response::new(Body::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        response
    }
}
