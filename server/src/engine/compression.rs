//! gzip/deflate for large polling responses (socket.io's `httpCompression`).

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http::HeaderValue;

/// Compresses `body` if it reaches `threshold` and the client accepts gzip (preferred) or deflate.
pub(crate) fn compress(
    body: &[u8],
    accept_encoding: Option<&HeaderValue>,
    threshold: usize,
) -> Option<(Bytes, &'static str)> {
    if body.len() < threshold {
        return None;
    }
    let accepted = accept_encoding?.to_str().ok()?;
    let accepts = |name: &str| {
        accepted.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    // Level 1: polling payloads are compressed per response, so speed matters more than ratio.
    let level = Compression::fast();
    if accepts("gzip") {
        let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 2), level);
        enc.write_all(body).ok()?;
        return Some((Bytes::from(enc.finish().ok()?), "gzip"));
    }
    if accepts("deflate") {
        let mut enc = ZlibEncoder::new(Vec::with_capacity(body.len() / 2), level);
        enc.write_all(body).ok()?;
        return Some((Bytes::from(enc.finish().ok()?), "deflate"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_only_large_accepted_bodies() {
        let body = vec![b'4'; 2000];
        let gzip = HeaderValue::from_static("gzip, deflate, br");
        assert!(compress(&body[..100], Some(&gzip), 1024).is_none());
        assert!(compress(&body, None, 1024).is_none());
        assert_eq!(compress(&body, Some(&gzip), 1024).map(|(_, e)| e), Some("gzip"));
        let deflate = HeaderValue::from_static("deflate");
        assert_eq!(compress(&body, Some(&deflate), 1024).map(|(_, e)| e), Some("deflate"));
        let refused = HeaderValue::from_static("gzip;q=0");
        assert!(compress(&body, Some(&refused), 1024).is_none());
    }
}
