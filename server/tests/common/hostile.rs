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

/// Serialises the tests of one test binary that call it: each attack gets the machine's cores to
/// itself (two attacks at once on a 2-core runner would starve each other's bystander, and the
/// 1 s echo bound would measure the test's own contention instead of the node).
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    // tokio's: held across the test's awaits, and not poisoned by a test that failed with it.
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ALONE.lock().await
}

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

/// A raw websocket client of the bench contract on `/`, sending what its test chooses and
/// reading only when told to (an attacker, or the base of an honest client).
pub struct Raw {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Raw {
    /// Connects over websocket and joins `/`.
    pub async fn connect(node: &Node) -> Self {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket within 5 s")
            .expect("websocket handshake");
        let mut me = Self { ws };
        me.send("40").await;
        let connected = me.next_message(Duration::from_secs(5), |m| m.starts_with("0{")).await;
        assert!(connected.is_some(), "no CONNECT answer");
        me
    }

    /// Sends a text frame; `false` once the server has closed the connection.
    pub async fn send(&mut self, text: &str) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    /// Sends a binary frame; `false` once the server has closed the connection.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> bool {
        self.ws.send(Message::binary(data)).await.is_ok()
    }

    /// The next Socket.IO message (an Engine.IO `4…` without its `4`) matching `wanted` within
    /// `limit`, answering pings meanwhile; `None` past the limit or once the connection is gone.
    pub async fn next_message(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            let Message::Text(text) = frame else { continue };
            if text.as_str() == "2" {
                self.send("3").await;
            } else if let Some(message) = text.as_str().strip_prefix('4') {
                if wanted(message) {
                    return Some(message.to_owned());
                }
            }
        }
    }

    /// Whether the server closes the connection within `limit` (reading, and dropping, whatever
    /// it still had queued for us first).
    pub async fn closed_by_server_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// An honest socket.io client on the main namespace over websocket, answering the node's pings.
pub struct Bystander {
    raw: Raw,
    next: u64,
}

impl Bystander {
    /// Connects and joins `/`.
    pub async fn connect(node: &Node) -> Self {
        Self { raw: Raw::connect(node).await, next: 1 }
    }

    /// Emits `event` with `arg` (JSON) and returns the ack's arguments (`[…]`); `None` past `limit`.
    pub async fn emit_acked(&mut self, event: &str, arg: &str, limit: Duration) -> Option<String> {
        let id = self.next;
        self.next += 1;
        assert!(self.raw.send(&format!("42{id}[\"{event}\",{arg}]")).await, "{event}: connection closed");
        let ack = format!("3{id}");
        let got =
            self.raw.next_message(limit, |m| m.starts_with(&ack) && m[ack.len()..].starts_with('[')).await;
        got.map(|m| m[ack.len()..].to_owned())
    }

    /// Sends an acked `echo` and returns how long the answer took; panics past `limit`.
    pub async fn echo_within(&mut self, limit: Duration) -> Duration {
        let id = self.next;
        let started = Instant::now();
        let answer = self.emit_acked("echo", &id.to_string(), limit).await;
        assert_eq!(answer, Some(format!("[{id}]")), "bystander: echo {id} not answered within {limit:?}");
        started.elapsed()
    }

    /// Sends a text frame as it is; `false` once the server has closed the connection.
    pub async fn send(&mut self, text: &str) -> bool {
        self.raw.send(text).await
    }

    /// The next Socket.IO message matching `wanted` within `limit` (see [`Raw::next_message`]).
    pub async fn next_message(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        self.raw.next_message(limit, wanted).await
    }
}
