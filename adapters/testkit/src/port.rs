//! Loopback ports for servers under test.
//!
//! A port found free by binding `127.0.0.1:0` and releasing it can be taken by another process
//! before the server binds it (tests run in parallel). So a server is started through
//! [`with_free_port`], which tries another port when the start fails; [`closed_port`] is only for
//! tests that need a port nothing listens on.

use std::fmt::Display;
use std::net::{Ipv4Addr, TcpListener};

/// Ports [`with_free_port`] tries before it gives up: a start failing this often is not a race.
const TRIES: usize = 5;

/// Runs `start` on a loopback port that was free a moment ago, and again on another one while it
/// fails, at most 5 times; panics with the last error after that.
///
/// `start` must fail (not hang) when the port is taken, e.g. when the server exits with "address
/// in use" before it answers.
pub fn with_free_port<T, E: Display>(mut start: impl FnMut(u16) -> Result<T, E>) -> T {
    let mut errors = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        let port = closed_port();
        match start(port) {
            Ok(started) => return started,
            Err(e) => errors.push(format!("port {port}: {e}")),
        }
    }
    panic!("nothing started on {TRIES} free ports:\n{}", errors.join("\n"));
}

/// A loopback port nothing listens on now (bound, then released): for connection-refused tests.
/// To start a server on it, use [`with_free_port`].
pub fn closed_port() -> u16 {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port());
    port.unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_on_another_port_until_the_start_succeeds() {
        let mut tried = Vec::new();
        let port = with_free_port(|port| {
            tried.push(port);
            if tried.len() < 3 { Err("taken") } else { Ok(port) }
        });
        assert_eq!(tried.len(), 3);
        assert_eq!(Some(&port), tried.last());
        assert!(port > 0);
    }

    #[test]
    #[should_panic(expected = "nothing started on 5 free ports")]
    fn gives_up_after_five_failures() {
        with_free_port(|_| Err::<(), _>("always taken"));
    }

    #[test]
    fn a_closed_port_refuses_connections() {
        let port = closed_port();
        assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
