//! A real `nats-server` for tests: started on a port of its own choosing (`-p -1`, read from its
//! log), ready once it answers PING with PONG, killed on drop (its log printed if the test
//! failed), and restartable on the same port for fault tests. A missing binary fails loudly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY_WITHIN: Duration = Duration::from_secs(10);

/// One nats-server process (or none, between [`kill`](Self::kill) and [`restart`](Self::restart)).
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER").map(PathBuf::from) {
        assert!(
            path.is_file(),
            "NATS_SERVER={} is not a file. Unset it, or install nats-server with \
             `sudo apt-get install nats-server`.",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"].into_iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found (looked in $NATS_SERVER, $PATH, /usr/sbin, /usr/local/bin). \
         These tests run a real NATS server: install it with `sudo apt-get install nats-server`."
    );
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let mut server = Self { binary: binary(), port: 0, child: None, log: Arc::default() };
        server.spawn(None).unwrap_or_else(|e| panic!("nats-server did not start: {e}\n{}", server.log()));
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server logged so far (across restarts).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the server at once (SIGKILL): clients see their connection drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.log.lock().unwrap().push_str("---- killed ----\n");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("nats-server running").id();
        let status = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Starts the server again on the same port (retrying while the port is not free yet).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn(Some(self.port)) {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("nats-server restart on {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("nats-server did not restart on port {}: {e}\n{}", self.port, self.log()),
            }
        }
    }

    fn spawn(&mut self, port: Option<u16>) -> Result<(), String> {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_WITHIN;
        let mut listening = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("exited or hung before it was ready".to_owned());
                }
            };
            if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                listening = addr.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        let Some(port) = listening else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no client port in the log".to_owned());
        };
        self.port = port;
        self.child = Some(child);
        ping(port).map_err(|e| format!("no PONG on port {port}: {e}"))
    }
}

/// Waits for the protocol to answer: INFO, then PONG to our PING.
fn ping(port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(READY_WITHIN)).map_err(|e| e.to_string())?;
    stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"PONG") {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".to_owned());
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- nats-server log (port {}) ----\n{}", self.port, self.log());
        }
    }
}

/// A port nothing listens on now (bound then released: fine for "connection refused" tests).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string(Path::new("/proc/self/statm")).unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}
