//! [`RedisServer`]: a real `redis-server` for tests, without persistence, on a free port; and a
//! plain connection to inspect it as another program would.

use std::path::PathBuf;

use crate::broker::{Broker, BrokerServer, Process};
use crate::port::with_free_port;
use crate::tls::TestCa;

/// What a client sends to check the server answers (an inline command).
const PING: &[u8] = b"PING\r\n";

/// How `redis-server` starts: on a free port (another one if that was taken meanwhile), ready once
/// it logged that it accepts connections (so the port is its own) and answered `PING`; with
/// options: a password for the default user (`requirepass`), ACL users, TLS only.
#[derive(Debug, Default, Clone)]
pub struct Redis {
    password: Option<String>,
    users: Vec<(String, String)>,
    tls: Option<RedisTls>,
}

#[derive(Debug, Clone)]
struct RedisTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    verify_clients: bool,
}

/// A real `redis-server`; see [`BrokerServer`] for what every broker offers.
pub type RedisServer = BrokerServer<Redis>;

impl Redis {
    /// The default user needs this password (`requirepass`); [`RedisServer::url`] carries it.
    pub fn with_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// An ACL user `name` with `password`, allowed every channel and command.
    pub fn with_user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Serves TLS only (no plain-text port), with `ca`'s server certificate; with
    /// `verify_clients`, clients must present a certificate `ca` signed (`tls-auth-clients yes`).
    /// [`RedisServer::url`] is then `rediss://localhost:<port>`, and the plain-connection helpers
    /// ([`RedisServer::client`] and those using it) do not apply.
    pub fn with_tls(mut self, ca: &TestCa, verify_clients: bool) -> Self {
        let (cert, key) = (ca.server_cert(), ca.server_key());
        self.tls = Some(RedisTls { cert, key, ca: ca.ca(), verify_clients });
        self
    }
}

impl Broker for Redis {
    const PROGRAM: &'static str = "redis-server";
    const ENV: &'static str = "REDIS_SERVER";

    fn url(&self, port: u16) -> String {
        let credentials = self.password.as_ref().map(|p| format!(":{p}@")).unwrap_or_default();
        match self.tls {
            Some(_) => format!("rediss://{credentials}localhost:{port}"),
            None => format!("redis://{credentials}127.0.0.1:{port}"),
        }
    }

    fn start(&self, process: &mut Process, port: Option<u16>) -> Result<u16, String> {
        // No persistence, and the temp folder as working directory: nothing lands in the source tree.
        let dir = std::env::temp_dir().to_string_lossy().into_owned();
        let hello = match &self.password {
            Some(password) => format!("AUTH {password}\r\nPING\r\n"),
            None => String::from_utf8_lossy(PING).into_owned(),
        };
        let mut on = |port: u16| {
            let port_arg = port.to_string();
            let mut args: Vec<String> =
                ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from).to_vec();
            args.extend(["--dir".to_owned(), dir.clone()]);
            if let Some(password) = &self.password {
                args.extend(["--requirepass".to_owned(), password.clone()]);
            }
            for (name, password) in &self.users {
                args.extend(
                    ["--user", name, "on", &format!(">{password}"), "~*", "&*", "+@all"].map(String::from),
                );
            }
            let ready = |line: &str| line.contains("Ready to accept connections").then_some(port);
            match &self.tls {
                None => {
                    args.extend(["--port".to_owned(), port_arg]);
                    process.start(&args, ready, Some(hello.as_bytes()))
                }
                Some(tls) => {
                    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
                    args.extend(["--port".to_owned(), "0".to_owned(), "--tls-port".to_owned(), port_arg]);
                    args.extend([
                        "--tls-cert-file".to_owned(),
                        path(&tls.cert),
                        "--tls-key-file".to_owned(),
                        path(&tls.key),
                    ]);
                    args.extend([
                        "--tls-ca-cert-file".to_owned(),
                        path(&tls.ca),
                        "--tls-auth-clients".to_owned(),
                        if tls.verify_clients { "yes" } else { "no" }.to_owned(),
                    ]);
                    // No plain-text PING on a TLS port: ready once it says it accepts connections.
                    process.start(&args, ready, None)
                }
            }
        };
        match port {
            Some(port) => on(port),
            None => Ok(with_free_port(on)),
        }
    }
}

impl RedisServer {
    /// Starts `n` servers, for a sharded transport.
    pub fn start_many(n: usize) -> Vec<Self> {
        (0..n).map(|_| Self::start()).collect()
    }

    /// A plain (RESP2) connection, as another program would open.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap_or_else(|e| panic!("{}: {e}", self.url()));
        let connection = client.get_multiplexed_async_connection().await;
        connection.unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    /// `PUBSUB CHANNELS`: the channels with at least one subscriber, sorted.
    pub async fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.query(redis::cmd("PUBSUB").arg("CHANNELS")).await;
        channels.sort();
        channels
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub async fn subscribers(&self, channel: &str) -> usize {
        let (_, n): (String, usize) = self.query(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel)).await;
        n
    }

    /// `PUBLISH channel payload` from a plain connection; returns the receiver count.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        self.query(redis::cmd("PUBLISH").arg(channel).arg(payload)).await
    }

    /// `PUBLISH channel payload` for each payload, in order, over one connection (pipelined);
    /// returns the receiver count of each.
    pub async fn publish_all(&self, channel: &str, payloads: &[bytes::Bytes]) -> Vec<usize> {
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]);
        }
        let mut connection = self.client().await;
        let reply = pipe.query_async(&mut connection).await;
        reply.unwrap_or_else(|e| panic!("PUBLISH ×{} on {}: {e}", payloads.len(), self.url()))
    }

    /// `SUBSCRIBE channel` on a connection of its own, confirmed when this returns: what is
    /// published there from now on, as another program reads it.
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        let client = redis::Client::open(self.url()).unwrap_or_else(|e| panic!("{}: {e}", self.url()));
        let mut pubsub = client.get_async_pubsub().await.unwrap_or_else(|e| panic!("{}: {e}", self.url()));
        pubsub.subscribe(channel).await.unwrap_or_else(|e| panic!("SUBSCRIBE {channel}: {e}"));
        Subscription { messages: Box::pin(pubsub.into_on_message()) }
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let mut connection = self.client().await;
        let reply = command.query_async(&mut connection).await;
        reply.unwrap_or_else(|e| panic!("{command:?} on {}: {e}", self.url()))
    }
}

/// A channel's messages ([`RedisServer::subscribe`]); unsubscribed when dropped.
pub struct Subscription {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message's payload, if one comes within `limit`.
    pub async fn next(&mut self, limit: std::time::Duration) -> Option<bytes::Bytes> {
        use futures_util::StreamExt as _;
        let message = tokio::time::timeout(limit, self.messages.next()).await.ok()??;
        Some(bytes::Bytes::copy_from_slice(message.get_payload_bytes()))
    }
}
