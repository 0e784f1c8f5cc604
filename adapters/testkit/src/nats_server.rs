//! [`NatsServer`]: a real `nats-server` for tests, on a port of its own choosing.

use crate::broker::{Broker, BrokerServer, Process};

/// What a client sends to check the server answers: the protocol's handshake, then a ping.
const PING: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\n";

/// How `nats-server` starts: with `-p -1` the first time, so it picks a free port itself and names
/// it in its log (no port race), on that port again after a restart; ready once it answered `PING`.
#[derive(Debug)]
pub struct Nats;

/// A real `nats-server`; see [`BrokerServer`] for what every broker offers.
pub type NatsServer = BrokerServer<Nats>;

impl Broker for Nats {
    const PROGRAM: &'static str = "nats-server";
    const ENV: &'static str = "NATS_SERVER";
    const SCHEME: &'static str = "nats";

    fn start(process: &mut Process, port: Option<u16>) -> Result<u16, String> {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        process.start(&["-a", "127.0.0.1", "-p", &port].map(String::from), listening, PING)
    }
}

/// The port in nats-server's "Listening for client connections on 127.0.0.1:4222" line.
fn listening(line: &str) -> Option<u16> {
    let address = line.split("Listening for client connections on ").nth(1)?;
    address.trim().rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::listening;

    #[test]
    fn reads_the_port_from_the_log_line() {
        let line = "[1] 2026/01/01 00:00:00.000000 [INF] Listening for client connections on 127.0.0.1:41234";
        assert_eq!(listening(line), Some(41234));
        assert_eq!(listening("[INF] Server is ready"), None);
    }
}
