//! End-to-end smoke test of `switchboard-loadtest cluster`: it starts a real `redis-server`, two
//! Switchboard nodes joined through it and then one in-memory node, with small sizes (50 receivers,
//! 20 broadcasts). Checks that both runs are complete without failures, that no delivery was lost and
//! that receivers on the second node got every broadcast published on the first.
//!
//! The server binary is looked up next to the loadtest binary, as in `smoke.rs`: with
//! `cargo test -p switchboard-loadtest` alone, run `cargo build -p switchboard` first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

mod common;

use common::{LOADTEST, server_binary};

/// A figure of a report, which must be present and a number.
fn figure(report: &Value, name: &str) -> f64 {
    report["figures"][name].as_f64().unwrap_or_else(|| panic!("figure {name} missing from {report}"))
}

#[test]
fn cluster_over_redis_delivers_everything_across_nodes() {
    let started = Instant::now();
    let log_dir = std::env::temp_dir().join(format!("switchboard-cluster-smoke-{}", std::process::id()));
    let bin = server_binary();
    let output = Command::new(LOADTEST)
        .args(["cluster", "--adapter", "redis", "--nodes", "2", "--receivers", "50", "--messages", "20"])
        .args(["--settle", "0.5", "--drain", "3", "--limit", "20", "--open-limit", "10"])
        .arg("--switchboard-bin")
        .arg(&bin)
        .arg("--log-dir")
        .arg(&log_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the loadtest binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context =
        format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- logs in {}", log_dir.display());
    assert!(output.status.success(), "loadtest exited with {}: {context}", output.status);

    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {context}")))
        .collect();
    assert_eq!(lines.len(), 3, "two runs and a summary: {context}");
    let (clustered, single, summary) = (&lines[0], &lines[1], &lines[2]);

    for (report, server) in [(clustered, "redis"), (single, "memory")] {
        assert_eq!(report["kind"], "run", "{context}");
        assert_eq!(report["scenario"], "cluster", "{context}");
        assert_eq!(report["server"], server, "{context}");
        assert_eq!(report["complete"], true, "{context}");
        for (kind, count) in report["failures"].as_object().expect("failures") {
            assert_eq!(count.as_u64(), Some(0), "{server}: failure {kind} = {count}: {context}");
        }
        assert_eq!(figure(report, "receivers"), 50.0, "{context}");
        assert_eq!(figure(report, "deliveries"), 50.0 * 20.0, "{context}");
        assert!(figure(report, "latency_p99_ms") > 0.0, "{context}");
    }
    // Round-robin over 2 nodes: 25 receivers on the publisher's node, 25 on the other.
    assert_eq!(figure(clustered, "nodes"), 2.0, "{context}");
    assert_eq!(figure(clustered, "same_node_deliveries"), 25.0 * 20.0, "{context}");
    assert_eq!(figure(clustered, "cross_node_receivers"), 25.0, "{context}");
    assert_eq!(figure(clustered, "cross_node_deliveries"), 25.0 * 20.0, "{context}");
    assert!(figure(clustered, "cross_node_latency_p99_ms") > 0.0, "{context}");
    assert!(clustered["figures"]["broker_cpu_s"].is_number(), "broker CPU read: {context}");
    assert_eq!(figure(single, "same_node_deliveries"), 50.0 * 20.0, "{context}");

    assert_eq!(summary["kind"], "cluster", "{context}");
    assert_eq!(summary["adapter"], "redis", "{context}");
    assert_eq!(summary["clean"], true, "{context}");
    assert!(summary["cross_minus_same_p99_ms"].is_number(), "{context}");
    let _ = std::fs::remove_dir_all(&log_dir);
    eprintln!("cluster smoke test: {:.2} s", started.elapsed().as_secs_f64());
}
