//! CORS headers for cross-origin browsers, and the preflight answer.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::config::CorsConfig;
use crate::body::Body;

/// Adds the allow headers when the request's origin is allowed; nothing otherwise (the browser then refuses).
pub(crate) fn apply(cors: &CorsConfig, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else { return };
    let Ok(origin_str) = origin.to_str() else { return };
    if !cors.allows(origin_str) {
        return;
    }
    let any = cors.origins.iter().any(|o| o == "*");
    let value = if any && !cors.credentials { HeaderValue::from_static("*") } else { origin.clone() };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    if cors.credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

/// Whether a websocket handshake from `origin` may go on. Browsers do not apply CORS to
/// websockets, so without this check any page could open one with its visitor's cookies
/// (cross-site websocket hijacking). A request without `Origin` is not from a browser page and
/// passes: such a client could send any origin anyway.
pub(crate) fn allows_websocket(cors: &CorsConfig, origin: Option<&HeaderValue>) -> bool {
    match origin {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|o| cors.allows(o)),
    }
}

/// Answers an `OPTIONS` preflight: 204 with the allowed methods and the requested headers.
pub(crate) fn preflight(cors: &CorsConfig, origin: Option<&HeaderValue>, req: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    apply(cors, origin, headers);
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET,HEAD,POST"));
        if let Some(requested) = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        if let Some(age) = cors.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age.as_secs()));
        }
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}
