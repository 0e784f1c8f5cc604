//! Where the clients connect: one socket address and the Engine.IO path. Only loopback addresses are
//! accepted unless the caller allows others, so a typo cannot point a load at someone else's machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::SetupError;

/// The server under load: its address, and the request every WebSocket upgrade sends.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    path: String,
    request_uri: String,
    polling_uri: String,
}

impl Target {
    /// Checks the host (an IP address or `localhost`) and normalises the path to `/…/`.
    pub fn new(host: &str, port: u16, path: &str, allow_non_loopback: bool) -> Result<Self, SetupError> {
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().map_err(|_| SetupError::Host(host.to_owned()))?
        };
        if !ip.is_loopback() && !allow_non_loopback {
            return Err(SetupError::NotLoopback(ip));
        }
        let mut path = path.trim_matches('/').to_owned();
        path = if path.is_empty() { "/".to_owned() } else { format!("/{path}/") };
        let request_uri = format!("{path}?EIO=4&transport=websocket");
        let polling_uri = format!("{path}?EIO=4&transport=polling");
        Ok(Self { addr: SocketAddr::new(ip, port), path, request_uri, polling_uri })
    }

    /// The address every connection goes to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upgrade request's path and query (Engine.IO v4, websocket transport from the start).
    pub fn request_uri(&self) -> &str {
        &self.request_uri
    }

    /// The long-polling handshake's path and query (Engine.IO v4, polling only); later requests add `&sid=`.
    pub fn polling_uri(&self) -> &str {
        &self.polling_uri
    }

    /// The URL, for reports.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }

    /// The URL long-polling clients use, for reports.
    pub fn http_url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(Target::new("127.0.0.1", 1, "/socket.io/", false).is_ok());
        assert!(Target::new("localhost", 1, "/socket.io/", false).is_ok());
        assert!(Target::new("::1", 1, "/socket.io/", false).is_ok());
        assert!(matches!(Target::new("10.0.0.1", 1, "/", false), Err(SetupError::NotLoopback(_))));
        assert!(Target::new("10.0.0.1", 1, "/", true).is_ok());
        assert!(matches!(Target::new("example.invalid", 1, "/", true), Err(SetupError::Host(_))));
    }

    #[test]
    fn path_is_normalised() -> Result<(), SetupError> {
        let t = Target::new("127.0.0.1", 3000, "socket.io", false)?;
        assert_eq!(t.request_uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(t.url(), "ws://127.0.0.1:3000/socket.io/");
        assert_eq!(t.polling_uri(), "/socket.io/?EIO=4&transport=polling");
        assert_eq!(t.http_url(), "http://127.0.0.1:3000/socket.io/");
        assert_eq!(Target::new("127.0.0.1", 3000, "/", false)?.request_uri(), "/?EIO=4&transport=websocket");
        Ok(())
    }
}
