//! What the hostile-client tests (`tests/hostile_*.rs`) share: the real `switchboard` binary
//! started as operators run it (`--app bench`, default limits), its memory read from
//! `/proc/<pid>/status`, and a bystander: an honest websocket client whose acked echo must keep
//! answering while an attacker works on the same node.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The binary under attack, built by cargo for these tests.
const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// How long a node may take to answer its first handshake.
const START_WITHIN: Duration = Duration::from_secs(10);

/// A `switchboard --app bench` process on 127.0.0.1; killed when dropped.
pub struct Node {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    node_id: String,
}

impl Node {
    /// Starts a node with the default limits plus `extra` flags, on a free port.
    pub fn start(extra: &[&str]) -> Self {
        switchboard_testkit::with_free_port(|port| Self::try_start(port, extra))
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<Self, String> {
        let node_id = format!("hostile-{port}");
        let child = Command::new(BIN)
            .args([
                "--app",
                "bench",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--node-id",
                &node_id,
            ])
            .args(["--log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {BIN}: {e}"))?;
        let mut node = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), node_id };
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("the node exited at start ({status})"));
            }
            // Ours only if the sid it issues carries our node id (the port may be someone else's).
            if node.handshake_sid().is_some_and(|sid| sid.starts_with(&format!("{}.", node.node_id))) {
                return Ok(node);
            }
            if Instant::now() >= deadline {
                return Err(format!("no handshake on port {port} within {START_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sid of a fresh polling handshake, if the node answers one.
    fn handshake_sid(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request =
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let open = answer.split("\r\n\r\n").nth(1)?.strip_prefix('0')?;
        let json: serde_json::Value = serde_json::from_str(open).ok()?;
        json["sid"].as_str().map(str::to_owned)
    }

    /// The process's resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS for the node (did it exit?):\n{status}"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asserts the node still runs and its RSS grew by less than `bound_kib` since `before_kib`.
    pub fn assert_alive_and_bounded(&mut self, before_kib: u64, bound_kib: u64, attack: &str) {
        assert!(self.is_running(), "{attack}: the node died");
        let now = self.rss_kib();
        assert!(
            now < before_kib + bound_kib,
            "{attack}: RSS grew from {before_kib} KiB to {now} KiB (bound: +{bound_kib} KiB)"
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An honest socket.io client on the main namespace over websocket, answering the node's pings.
pub struct Bystander {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
}

impl Bystander {
    /// Connects and joins `/`.
    pub async fn connect(node: &Node) -> Self {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url))
            .await
            .expect("bystander: websocket within 5 s")
            .expect("bystander: websocket handshake");
        let mut me = Self { ws, next: 1 };
        me.send("40").await;
        let connected = me.next_message(Duration::from_secs(5), |m| m.starts_with('0')).await;
        assert!(connected.is_some(), "bystander: no CONNECT answer");
        me
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("bystander: send");
    }

    /// The next Engine.IO message matching `wanted` within `limit`; answers pings meanwhile.
    async fn next_message(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            let Message::Text(text) = frame else { continue };
            let text = text.as_str();
            if text == "2" {
                self.send("3").await;
            } else if let Some(message) = text.strip_prefix('4') {
                if wanted(message) {
                    return Some(message.to_owned());
                }
            }
        }
    }

    /// Sends an acked `echo` and returns how long the answer took; panics past `limit`.
    pub async fn echo_within(&mut self, limit: Duration) -> Duration {
        let id = self.next;
        self.next += 1;
        let started = Instant::now();
        self.send(&format!("42{id}[\"echo\",{id}]")).await;
        let answer = format!("3{id}[{id}]");
        let got = self.next_message(limit, |m| m == answer).await;
        assert!(got.is_some(), "bystander: echo {id} not answered within {limit:?}");
        started.elapsed()
    }
}
