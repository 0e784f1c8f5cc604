//! A real broker for tests, whatever the broker ([`BrokerServer`]; [`RedisServer`](crate::RedisServer)
//! and [`NatsServer`](crate::NatsServer) say how theirs starts): its binary found on this machine
//! (or a panic naming the `apt-get` line: these tests never skip), its output kept as a log printed
//! if the test panics, ready once it answers `PING` with `PONG` (not after a sleep), killed,
//! restarted on the same port, frozen and thawed for fault tests, killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

/// How long a broker may take to start and answer.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Folders searched after `PATH`: Debian installs the brokers where a user's `PATH` may not look.
const SBIN: [&str; 4] = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];

/// The install line every "not found" panic gives.
const INSTALL: &str = "install them with `sudo apt-get install redis-server nats-server` (Debian/Ubuntu)";

/// How one kind of broker starts, with its options (passwords, TLS): implemented by
/// [`Redis`](crate::redis_server::Redis) and [`Nats`](crate::nats_server::Nats).
pub trait Broker: Default {
    /// The executable (`redis-server`).
    const PROGRAM: &'static str;
    /// The environment variable that may name the executable instead (`REDIS_SERVER`).
    const ENV: &'static str;

    /// The URL clients use to reach it on `port`, with the credentials and scheme its options
    /// call for.
    fn url(&self, port: u16) -> String;

    /// Starts `process` on `port`, or on a free port the first time (`None`), until it is ready;
    /// returns the port. Panics only when the broker cannot start at all.
    fn start(&self, process: &mut Process, port: Option<u16>) -> Result<u16, String>;
}

/// One broker process of kind `B` (or none, between [`kill`](Self::kill) and
/// [`restart`](Self::restart)), listening on 127.0.0.1; killed on drop, its log printed if the
/// test panicked. Starting blocks the calling thread for a few milliseconds.
pub struct BrokerServer<B: Broker> {
    process: Process,
    port: u16,
    broker: B,
}

impl<B: Broker> BrokerServer<B> {
    /// Starts a broker with the default options (no authentication, no TLS).
    ///
    /// Panics if it is not installed (naming the `apt-get` line), or does not start.
    pub fn start() -> Self {
        Self::start_with(B::default())
    }

    /// Starts a broker with `broker`'s options.
    ///
    /// Panics if it is not installed (naming the `apt-get` line), or does not start.
    pub fn start_with(broker: B) -> Self {
        let mut process = Process::find(B::PROGRAM, B::ENV);
        let port =
            broker.start(&mut process, None).unwrap_or_else(|e| panic!("{} did not start: {e}", B::PROGRAM));
        Self { process, port, broker }
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a client reaches it with, credentials included (`redis://127.0.0.1:<port>` without
    /// options).
    pub fn url(&self) -> String {
        self.broker.url(self.port)
    }

    /// Everything the broker printed so far, across restarts.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Kills the broker (SIGKILL): a crash, as its clients see it (their connections drop).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port (after [`kill`](Self::kill), or killing it first),
    /// retrying while the port is not free yet.
    pub fn restart(&mut self) {
        let port = self.port;
        let broker = &self.broker;
        self.process.restart(|process| broker.start(process, Some(port)).map(|_| ()));
    }

    /// Freezes the broker (SIGSTOP): its connections stay open and nothing is answered. Returns
    /// once every thread of it is stopped: `kill` returns before the signal took effect, and under
    /// load a thread that still runs could answer what the test sends next.
    pub fn pause(&self) {
        self.process.signal("-STOP");
        self.process.wait_stopped();
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }
}

impl<B: Broker> std::fmt::Debug for BrokerServer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerServer").field("program", &B::PROGRAM).field("port", &self.port).finish()
    }
}

/// One broker's process, running or not, and its log across restarts.
pub struct Process {
    program: &'static str,
    binary: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// The broker `program`, from `$env` if set, else from `PATH` or the sbin folders; not started.
    fn find(program: &'static str, env: &str) -> Self {
        let binary = match std::env::var_os(env).map(PathBuf::from) {
            Some(path) => {
                assert!(path.is_file(), "{env}={} is not a file: unset it, or {INSTALL}", path.display());
                path
            }
            None => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let found = std::env::split_paths(&path)
                    .chain(SBIN.map(PathBuf::from))
                    .map(|dir| dir.join(program))
                    .find(|candidate| candidate.is_file());
                found.unwrap_or_else(|| {
                    panic!(
                        "`{program}` not found (looked in ${env}, $PATH, {}). These tests run real brokers: {INSTALL}.",
                        SBIN.join(", ")
                    )
                })
            }
        };
        Self { program, binary, child: None, log: Arc::default() }
    }

    /// Starts the broker with `args` (killing a previous run) and waits until it is ready: a line
    /// of its output for which `listening` returns the port it bound (so the port is this
    /// process's, not another one's), then, with a `hello`, a `PONG` answering it on that port
    /// (a broker that takes no plain-text command, TLS only, is ready on its log line). `Err` (the
    /// broker killed) if it exits first or is not ready within [`READY_WITHIN`].
    pub(crate) fn start(
        &mut self,
        args: &[String],
        mut listening: impl FnMut(&str) -> Option<u16>,
        hello: Option<&[u8]>,
    ) -> Result<u16, String> {
        self.kill();
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let (lines_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let (log, lines_tx) = (self.log.clone(), lines_tx.clone());
            // Reads for the process's whole life, so its pipes never fill up.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    push(&log, &line);
                    let _ = lines_tx.send(line);
                }
            });
        }
        drop(lines_tx);
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = listening(&line) {
                        break port;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(format!("not listening within {READY_WITHIN:?}"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.kill();
                    return Err(format!("{} exited before listening", self.program));
                }
            }
        };
        let Some(hello) = hello else { return Ok(port) };
        loop {
            if let Some(exited) = self.exited() {
                return Err(exited);
            }
            if pong(port, hello) {
                return Ok(port);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("no PONG on port {port} within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `start` until it succeeds, for [`READY_WITHIN`] (a restart on the same port can find
    /// it still held for a moment); panics with the log after that.
    fn restart(&mut self, mut start: impl FnMut(&mut Self) -> Result<(), String>) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match start(self) {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    push(&self.log, &format!("---- restart failed ({e}); retrying ----"));
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{} did not restart: {e}\n{}", self.program, self.log()),
            }
        }
    }

    /// `Some(reason)` once the process has exited (it is then forgotten).
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        let reason = match child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => format!("{} exited ({status})", self.program),
            Err(e) => format!("cannot wait for {}: {e}", self.program),
        };
        self.child = None;
        Some(reason)
    }

    /// Kills the process (SIGKILL) and reaps it: a crash, as its clients see it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            push(&self.log, &format!("---- {} killed ----", self.program));
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the running process.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id);
        let pid = pid.unwrap_or_else(|| panic!("{} is not running", self.program));
        let status = Command::new("kill").args([signal, &pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} {pid} failed");
    }

    /// Waits until every thread of the process is in state `T` (stopped), per `/proc/<pid>/task`;
    /// panics after [`READY_WITHIN`].
    fn wait_stopped(&self) {
        let pid = self.child.as_ref().map(Child::id);
        let pid = pid.unwrap_or_else(|| panic!("{} is not running", self.program));
        let deadline = Instant::now() + READY_WITHIN;
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "{} ({pid}) not stopped within {READY_WITHIN:?}",
                self.program
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Everything the broker printed so far, across restarts.
    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.program, self.log());
        }
    }
}

fn push(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    log.push_str(line);
    log.push('\n');
}

/// Whether a connection to `port` answers `hello` with a `PONG` within a fraction of a second.
fn pong(port: u16, hello: &[u8]) -> bool {
    let patience = Duration::from_millis(200);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, patience) else { return false };
    if stream.set_read_timeout(Some(patience)).is_err() || stream.write_all(hello).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"PONG") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Whether every thread of `pid` is stopped (`T` in the state field of its `stat`, which follows
/// the command name in parentheses).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { return false };
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        any = true;
    }
    any
}
