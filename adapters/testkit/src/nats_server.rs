//! [`NatsServer`]: a real `nats-server` for tests, on a port of its own choosing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::broker::{Broker, BrokerServer, Process};
use crate::tls::TestCa;

/// What a client sends to check the server answers: the protocol's handshake, then a ping.
const PING: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\n";

/// How `nats-server` starts: with `-p -1` the first time, so it picks a free port itself and names
/// it in its log (no port race), on that port again after a restart; ready once it answered `PING`.
/// With options (authentication, TLS) it reads a config file written beside its certificates, and
/// is ready once it logged "Server is ready" (a plain `PING` would not be let in).
#[derive(Debug, Default, Clone)]
pub struct Nats {
    auth: NatsAuth,
    tls: Option<NatsTls>,
}

/// How clients must authenticate.
#[derive(Debug, Default, Clone)]
enum NatsAuth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
    /// The public key (`U…`) of a user nkey.
    Nkey(String),
}

#[derive(Debug, Clone)]
struct NatsTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    verify_clients: bool,
    config_dir: PathBuf,
}

/// A real `nats-server`; see [`BrokerServer`] for what every broker offers.
pub type NatsServer = BrokerServer<Nats>;

/// A fresh NATS user nkey: the seed a client signs with, the public key a server lists.
#[derive(Debug, Clone)]
pub struct NkeyUser {
    /// `SU…`: the secret a node is given (`--nats-nkey`).
    pub seed: String,
    /// `U…`: what [`Nats::with_nkey`] lets in.
    pub public_key: String,
}

impl NkeyUser {
    /// Generates one.
    pub fn new() -> Self {
        let pair = nkeys::KeyPair::new_user();
        Self { seed: pair.seed().expect("a new user key has a seed"), public_key: pair.public_key() }
    }
}

impl Default for NkeyUser {
    fn default() -> Self {
        Self::new()
    }
}

impl Nats {
    /// Clients must give this user and password; [`NatsServer::url`] carries them.
    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.auth = NatsAuth::UserPassword(user.to_owned(), password.to_owned());
        self
    }

    /// Clients must give this token; [`NatsServer::url`] carries it.
    pub fn with_token(mut self, token: &str) -> Self {
        self.auth = NatsAuth::Token(token.to_owned());
        self
    }

    /// Clients must sign with the nkey whose public key (`U…`) this is.
    pub fn with_nkey(mut self, public_key: &str) -> Self {
        self.auth = NatsAuth::Nkey(public_key.to_owned());
        self
    }

    /// Serves TLS only (`tls://localhost:<port>`) with `ca`'s server certificate; with
    /// `verify_clients`, clients must present a certificate `ca` signed (mutual TLS).
    pub fn with_tls(mut self, ca: &TestCa, verify_clients: bool) -> Self {
        let tls = NatsTls {
            cert: ca.server_cert(),
            key: ca.server_key(),
            ca: ca.ca(),
            verify_clients,
            config_dir: ca.dir().to_owned(),
        };
        self.tls = Some(tls);
        self
    }

    fn is_plain(&self) -> bool {
        matches!(self.auth, NatsAuth::None) && self.tls.is_none()
    }

    /// The server's config file: the `authorization` and `tls` blocks.
    fn config(&self) -> String {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let mut config = match &self.auth {
            NatsAuth::None => String::new(),
            NatsAuth::UserPassword(user, password) => {
                format!("authorization {{ user: {}, password: {} }}\n", quoted(user), quoted(password))
            }
            NatsAuth::Token(token) => format!("authorization {{ token: {} }}\n", quoted(token)),
            NatsAuth::Nkey(public) => {
                format!("authorization {{ users: [ {{ nkey: {} }} ] }}\n", quoted(public))
            }
        };
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| quoted(&p.to_string_lossy());
            config.push_str(&format!(
                "tls {{ cert_file: {}, key_file: {}, ca_file: {}, verify: {}, timeout: 5 }}\n",
                path(&tls.cert),
                path(&tls.key),
                path(&tls.ca),
                tls.verify_clients
            ));
        }
        config
    }
}

impl Broker for Nats {
    const PROGRAM: &'static str = "nats-server";
    const ENV: &'static str = "NATS_SERVER";

    fn url(&self, port: u16) -> String {
        let credentials = match &self.auth {
            NatsAuth::UserPassword(user, password) => format!("{user}:{password}@"),
            NatsAuth::Token(token) => format!("{token}@"),
            NatsAuth::None | NatsAuth::Nkey(_) => String::new(),
        };
        match self.tls {
            Some(_) => format!("tls://{credentials}localhost:{port}"),
            None => format!("nats://{credentials}127.0.0.1:{port}"),
        }
    }

    fn start(&self, process: &mut Process, port: Option<u16>) -> Result<u16, String> {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut args = ["-a", "127.0.0.1", "-p", &port].map(String::from).to_vec();
        if self.is_plain() {
            return process.start(&args, listening, Some(PING));
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.tls.as_ref().map_or_else(std::env::temp_dir, |t| t.config_dir.clone());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = dir.join(format!("nats-{}-{n}.conf", std::process::id()));
        std::fs::write(&file, self.config()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        args.extend(["-c".to_owned(), file.to_string_lossy().into_owned()]);
        // The port comes in one line, readiness in a later one.
        let mut bound = None;
        let ready = move |line: &str| {
            bound = bound.or_else(|| listening(line));
            if line.contains("Server is ready") { bound } else { None }
        };
        process.start(&args, ready, None)
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
