//! Test support: real `redis-server` processes on free ports, and a plain connection to inspect them.
//!
//! A server is ready when it answers `PING` (no sleeps), prints its log if the test panics, and is
//! killed on drop. `kill`, `restart` (same port), `pause` and `resume` drive fault tests. A missing
//! binary fails loudly with the install command: these tests never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, missing_docs)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const BINARY: &str = "redis-server";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port (retrying on another port if the one picked was taken).
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-redis-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self { port, dir: dir.clone(), child: None };
            match server.spawn().await {
                Ok(()) => return server,
                Err(log) => last = log,
            }
        }
        panic!("redis-server did not start on 5 free ports; last log:\n{last}");
    }

    /// Starts several servers at once.
    pub async fn start_many(n: usize) -> Vec<Self> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Self::start().await);
        }
        out
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Kills the process (SIGKILL) and reaps it: a crash, as the clients see it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after `kill`).
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn().await {
                Ok(()) => return,
                Err(log) if Instant::now() >= deadline => panic!("redis-server did not restart:\n{log}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Freezes the process (SIGSTOP): a stalled server that keeps its connections open.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// A plain (RESP2) connection, as another program would open.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// `PUBSUB CHANNELS`: the channels with at least one subscriber, sorted.
    pub async fn channels(&self) -> Vec<String> {
        let mut conn = self.client().await;
        let mut channels: Vec<String> =
            redis::cmd("PUBSUB").arg("CHANNELS").query_async(&mut conn).await.unwrap();
        channels.sort();
        channels
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub async fn subscribers(&self, channel: &str) -> usize {
        let mut conn = self.client().await;
        let (_, n): (String, usize) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await.unwrap();
        n
    }

    /// `PUBLISH channel payload` from a plain connection; returns the receiver count.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> usize {
        let mut conn = self.client().await;
        redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn).await.unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("redis-{}.log", self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Spawns the process and waits for `PONG`; `Err(log)` if it exits or never answers.
    async fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(BINARY)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{BINARY}` not found: these tests need a real Redis. Install it with \
                 `sudo apt-get install redis-server` (Debian/Ubuntu)."
            ),
            Err(e) => panic!("cannot run `{BINARY}`: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("redis-server exited ({status}):\n{}", self.log()));
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("redis-server did not answer PING within 5 s:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- redis-server :{} log ---\n{}", self.port, self.log());
        }
        self.kill();
        let _ = std::fs::remove_file(self.log_path());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        (&buf == b"+PONG\r\n").then_some(())
    };
    matches!(tokio::time::timeout(Duration::from_millis(200), attempt).await, Ok(Some(())))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid} failed");
}
