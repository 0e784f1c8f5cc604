//! End-to-end smoke test of the load generator against the real server.
//!
//! Starts `switchboard --app bench` on a free loopback port, then runs the `switchboard-loadtest`
//! binary with small sizes (`connect`, `echo` open and closed loop, `fanout`, `polling`), parses the JSON line each run
//! prints on stdout and checks that the run is complete, that no failure of any kind was counted and
//! that the key figures are there and make sense. The whole test takes a few seconds.
//!
//! The server binary is looked up next to the loadtest binary: `cargo test --workspace` builds every
//! member's binaries before running tests. With `cargo test -p switchboard-loadtest` alone, run
//! `cargo build -p switchboard` first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_testkit::with_free_port;

mod common;

use common::{LOADTEST, server_binary};

/// A running server; dropping it kills it.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the server on a free port, retrying with another port if it cannot bind, and returns
    /// once the port accepts TCP connections.
    fn start() -> Self {
        let bin = server_binary();
        with_free_port(|port| {
            let log =
                std::env::temp_dir().join(format!("switchboard-smoke-{}-{port}.log", std::process::id()));
            let out = File::create(&log).expect("create the server log");
            let err = out.try_clone().expect("clone the server log handle");
            let child = Command::new(&bin)
                .args(["--app", "bench", "--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = Self { child, port, log };
            // On failure, dropping `server` kills it; `with_free_port` tries another port.
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => Ok(server),
                Err(e) => Err(format!("{e}\n--- server log ---\n{}", server.log_text())),
            }
        })
    }

    /// Polls the port until it accepts a connection; fails if the server exits or time runs out.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("server exited before listening: {status}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Still ours? (Another process could have taken the port in between.)
                if self.child.try_wait().map_err(|e| e.to_string())?.is_none() {
                    return Ok(());
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(format!("port {} not accepting connections within {timeout:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs one loadtest scenario against the server and returns its JSON report, after checking the
/// exit status, completeness, the scenario name, the pid and that every failure count is zero.
fn run(server: &Server, scenario: &str, args: &[&str]) -> Value {
    let port = server.port.to_string();
    let pid = server.pid().to_string();
    let started = Instant::now();
    let output = Command::new(LOADTEST)
        .arg(scenario)
        .args(["--host", "127.0.0.1", "--port", &port, "--server-pid", &pid])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the loadtest binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!(
        "{scenario} {args:?} ({:.1} s)\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- server log ---\n{}",
        started.elapsed().as_secs_f64(),
        server.log_text()
    );
    assert!(output.status.success(), "loadtest exited with {}: {context}", output.status);

    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line on stdout: {context}"));
    let report: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line ({e}): {context}"));

    assert_eq!(report["kind"], "run", "{context}");
    assert_eq!(report["scenario"], scenario, "{context}");
    assert_eq!(report["server_pid"], server.pid(), "{context}");
    assert_eq!(report["complete"], true, "run incomplete: {context}");
    let failures = report["failures"].as_object().unwrap_or_else(|| panic!("no failures object: {context}"));
    assert!(!failures.is_empty(), "empty failures object: {context}");
    for (kind, count) in failures {
        assert_eq!(count.as_u64(), Some(0), "failure {kind} = {count}: {context}");
    }
    assert!(report["first_error"].is_null(), "first_error set: {context}");
    eprintln!("{scenario}: ok in {:.2} s", started.elapsed().as_secs_f64());
    report
}

/// A figure of a report, which must be present and a number.
fn figure(report: &Value, name: &str) -> f64 {
    report["figures"][name].as_f64().unwrap_or_else(|| panic!("figure {name} missing from {report}"))
}

#[test]
fn connect_echo_fanout_and_polling_against_the_real_server() {
    let started = Instant::now();
    let server = Server::start();

    // connect: 200 connections, held 1 s.
    let connections = 200;
    let report = run(
        &server,
        "connect",
        &["--connections", "200", "--hold", "1", "--settle", "0.5", "--open-limit", "10"],
    );
    assert_eq!(figure(&report, "connections"), f64::from(connections), "{report}");
    assert_eq!(figure(&report, "connected"), f64::from(connections), "{report}");
    assert!(figure(&report, "connect_time_s") > 0.0, "{report}");
    assert!(figure(&report, "connect_p50_ms") > 0.0, "{report}");
    assert!(figure(&report, "connect_p99_ms") > 0.0, "{report}");
    assert!(figure(&report, "held_s") >= 1.0, "{report}");
    // Read from /proc thanks to --server-pid.
    assert!(figure(&report, "rss_after_kib") > 0.0, "{report}");

    // echo: 4 connections, 200/s for 2 s after a 0.5 s warm-up.
    let report = run(
        &server,
        "echo",
        &["--connections", "4", "--rate", "200", "--duration", "2", "--warmup", "0.5", "--open-limit", "10"],
    );
    assert_eq!(figure(&report, "connections"), 4.0, "{report}");
    let acked = figure(&report, "acked");
    assert!(acked > 0.0, "{report}");
    assert_eq!(figure(&report, "sent"), acked, "every measured echo acked: {report}");
    assert!(figure(&report, "throughput_per_s") > 0.0, "{report}");
    assert!(figure(&report, "latency_p50_ms") > 0.0, "{report}");
    assert!(figure(&report, "latency_p99_ms") > 0.0, "{report}");
    assert!(figure(&report, "rtt_p99_ms") > 0.0, "{report}");

    // echo, closed loop: 4 connections, each sending the next request on the ack, for 1 s; the
    // rate is what the server answers, far above the paced 200/s, and nothing is left unanswered.
    let report = run(
        &server,
        "echo",
        &["--closed-loop", "--connections", "4", "--duration", "1", "--warmup", "0.3", "--open-limit", "10"],
    );
    assert_eq!(report["params"]["closed_loop"], true, "{report}");
    let acked = figure(&report, "acked");
    assert_eq!(figure(&report, "sent"), acked, "every measured echo acked: {report}");
    assert!(figure(&report, "throughput_per_s") > 400.0, "{report}");
    assert!(figure(&report, "latency_p99_ms") > 0.0, "{report}");
    assert_eq!(figure(&report, "latency_p50_ms"), figure(&report, "rtt_p50_ms"), "{report}");

    // fanout: 50 receivers × 50 broadcasts.
    let (receivers, messages) = (50_u32, 50_u32);
    let report = run(
        &server,
        "fanout",
        &["--connections", "50", "--messages", "50", "--drain", "3", "--limit", "10", "--open-limit", "10"],
    );
    let expected = f64::from(receivers * messages);
    assert_eq!(figure(&report, "receivers"), f64::from(receivers), "{report}");
    assert_eq!(figure(&report, "published"), f64::from(messages), "{report}");
    assert_eq!(figure(&report, "publish_acked"), f64::from(messages), "{report}");
    assert_eq!(figure(&report, "expected_deliveries"), expected, "{report}");
    assert_eq!(figure(&report, "deliveries"), expected, "{report}");
    assert_eq!(report["failures"]["lost_deliveries"], 0, "{report}");
    assert!(figure(&report, "latency_p50_ms") > 0.0, "{report}");
    assert!(figure(&report, "latency_p99_ms") > 0.0, "{report}");

    // polling: the echo of above on 4 long-polling sessions (8 HTTP connections).
    let report = run(
        &server,
        "polling",
        &["--connections", "4", "--rate", "200", "--duration", "2", "--warmup", "0.5", "--open-limit", "10"],
    );
    assert_eq!(report["url"], format!("http://127.0.0.1:{}/socket.io/", server.port), "{report}");
    assert_eq!(figure(&report, "connections"), 4.0, "{report}");
    let acked = figure(&report, "acked");
    assert!(acked > 0.0, "{report}");
    assert_eq!(figure(&report, "sent"), acked, "every measured echo acked: {report}");
    assert!(figure(&report, "latency_p50_ms") > 0.0, "{report}");
    assert!(figure(&report, "rtt_p99_ms") > 0.0, "{report}");
    // Read from /proc thanks to --server-pid (its 10 ms ticks may round a short run's CPU to 0).
    if figure(&report, "server_cpu_s") > 0.0 {
        assert!(figure(&report, "round_trips_per_server_cpu_s") > 0.0, "{report}");
    }

    drop(server);
    eprintln!("smoke test: {:.2} s", started.elapsed().as_secs_f64());
}
