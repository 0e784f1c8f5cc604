//! The official Socket.IO client bundle (npm `socket.io-client`), embedded at build time by
//! `build.rs` and served at `<path>/socket.io.js`, `socket.io.min.js`, `socket.io.esm.min.js` and
//! their `.map` files, like Node socket.io's `serveClient`. Empty when npm was unavailable at
//! build time (the build then warns).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG};
use http::{HeaderValue, Response, StatusCode};

use crate::body::Body;

include!(concat!(env!("OUT_DIR"), "/client_bundle.rs"));

/// The bytes and content type of the embedded file `name` (e.g. `socket.io.min.js`), if any.
pub fn file(name: &str) -> Option<(&'static [u8], &'static str)> {
    let (_, bytes) = FILES.iter().find(|(file, _)| *file == name)?;
    let content_type =
        if name.ends_with(".map") { "application/json" } else { "application/javascript; charset=utf-8" };
    Some((bytes, content_type))
}

/// The version of the embedded `socket.io-client` (empty when no bundle is embedded).
pub fn version() -> &'static str {
    VERSION
}

/// A 200 with the file `name`, or a 304 when `if_none_match` matches its ETag; `None` if unknown.
pub fn response(name: &str, if_none_match: Option<&HeaderValue>) -> Option<Response<Body>> {
    let (bytes, content_type) = file(name)?;
    let etag = format!("\"{VERSION}\"");
    let builder = Response::builder().header(CACHE_CONTROL, "public, max-age=0").header(ETAG, etag.as_str());
    let response = if if_none_match.is_some_and(|value| etag_matches(value, &etag)) {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::new(Bytes::new()))
    } else {
        builder
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, content_type)
            .body(Body::new(Bytes::from_static(bytes)))
    };
    response.ok()
}

/// Whether an `If-None-Match` value (`*`, or a list of possibly weak tags) names `etag`.
fn etag_matches(if_none_match: &HeaderValue, etag: &str) -> bool {
    let Ok(value) = if_none_match.to_str() else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn serves_the_minified_bundle() {
        let (bytes, content_type) = file("socket.io.min.js").unwrap();
        assert!(!bytes.is_empty());
        assert!(bytes.starts_with(b"/*!"), "no banner comment");
        assert_eq!(content_type, "application/javascript; charset=utf-8");
        assert_eq!(file("socket.io.min.js.map").unwrap().1, "application/json");
        for name in ["socket.io.js", "socket.io.js.map", "socket.io.esm.min.js", "socket.io.esm.min.js.map"] {
            assert!(!file(name).unwrap().0.is_empty(), "{name}");
        }
        assert!(version().starts_with("4."), "{}", version());
    }

    #[test]
    fn unknown_names_are_none() {
        assert!(file("nope.js").is_none());
        assert!(file("").is_none());
        assert!(file("socket.io.msgpack.min.js").is_none());
        assert!(response("nope.js", None).is_none());
    }

    #[tokio::test]
    async fn responds_200_then_304() {
        let ok = response("socket.io.js", None).unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], "application/javascript; charset=utf-8");
        assert_eq!(ok.headers()[CACHE_CONTROL], "public, max-age=0");
        let etag = ok.headers()[ETAG].clone();
        assert_eq!(etag.to_str().unwrap(), format!("\"{}\"", version()));
        let body = ok.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes().as_ref(), file("socket.io.js").unwrap().0);

        let cached = response("socket.io.js", Some(&etag)).unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert!(cached.headers().get(CONTENT_TYPE).is_none());

        let other = HeaderValue::from_static("\"0.0.0\"");
        assert_eq!(response("socket.io.js", Some(&other)).unwrap().status(), StatusCode::OK);
    }
}
