//! The handshake request a session keeps, as the application may inspect it (allowRequest,
//! Socket.IO middleware, fetchSockets' handshake).

use std::net::SocketAddr;

use http::{HeaderMap, Uri};

/// The handshake request as the application may inspect it (allowRequest, Socket.IO middleware).
#[derive(Debug, Clone)]
pub struct HandshakeRequest {
    /// Request URI with its query.
    pub uri: Uri,
    /// The request headers as `name:value\n` lines in one allocation (see [`Self::headers`]).
    headers: Box<[u8]>,
    /// Peer address of the TCP connection.
    pub remote_addr: SocketAddr,
}

impl HandshakeRequest {
    /// Copies what a session keeps of its handshake request. hyper parses headers and URI as
    /// slices of its 8 KiB read buffer; keeping those slices would keep the whole buffer alive
    /// for the session's lifetime, so the bytes are copied out. They are kept as one block of
    /// text rather than a `HeaderMap` (about 650 bytes for a handful of headers, kept by every
    /// session) and parsed again only when asked for. The HTTP layer refuses a request head over
    /// the engine's `max_header_size` (16 KiB by default) with 431, so no session keeps more.
    pub(crate) fn detached<B>(req: &http::Request<B>, remote_addr: SocketAddr) -> Self {
        let size = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum();
        let mut headers = Vec::with_capacity(size);
        for (name, value) in req.headers() {
            // Names hold no `:`; values hold no newline (hyper refuses both).
            headers.extend_from_slice(name.as_str().as_bytes());
            headers.push(b':');
            headers.extend_from_slice(value.as_bytes());
            headers.push(b'\n');
        }
        let uri = Uri::try_from(req.uri().to_string()).unwrap_or_default();
        Self { uri, headers: headers.into_boxed_slice(), remote_addr }
    }

    /// The request headers, in order (built on each call).
    pub fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.header_lines() {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        map
    }

    /// The first value of a header (`name` in lower case), without building a map.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_lines().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v)
    }

    fn header_lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.split(|&b| b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.uri.query()?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_survive_the_compact_form() {
        let req = http::Request::builder()
            .uri("/socket.io/?EIO=4&transport=polling")
            .header("host", "example")
            .header("x-many", "a")
            .header("x-many", "b:c")
            .header("user-agent", "test/1.0")
            .body(())
            .unwrap_or_default();
        let r = HandshakeRequest::detached(&req, SocketAddr::from(([127, 0, 0, 1], 1)));
        let map = r.headers();
        assert_eq!(map.len(), 4);
        let many: Vec<_> = map.get_all("x-many").iter().map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(many, vec![b"a".to_vec(), b"b:c".to_vec()]);
        assert_eq!(r.header("user-agent"), Some(&b"test/1.0"[..]));
        assert_eq!(r.header("x-many"), Some(&b"a"[..]));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.query("transport").as_deref(), Some("polling"));
    }
}
