//! A few seconds of `switchboard-loadtest soak` against the real server binary, with tiny sizes: the
//! run starts its own node, every base client gets every broadcast of its audience exactly once, the
//! churning clients (websocket and long-polling) leave with a DISCONNECT and the node lets them go at
//! once (0 sockets and sessions afterwards, no more descriptors than before the first client), and the samples,
//! summary and chart are written. Bounds are set out of reach: a 4-second run is all warm-up, and the
//! verdict itself is unit-tested in `soak.rs` and `drift.rs`.
//!
//! Not part of `cargo test` (the soak stays out of CI, and this runs a timed load for about 6 s):
//! `cargo build -p switchboard && cargo test -p switchboard-loadtest --test soak -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

mod common;

use common::{LOADTEST, server_binary};

#[test]
#[ignore = "a timed soak run, kept out of CI: cargo test -p switchboard-loadtest --test soak -- --ignored"]
fn a_short_soak_delivers_everything_and_leaves_the_node_idle() {
    let dir = std::env::temp_dir().join(format!("switchboard-soak-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let (out, chart) = (dir.join("soak.jsonl"), dir.join("soak.svg"));
    let run = Command::new(LOADTEST)
        .args(["soak", "--switchboard-bin"])
        .arg(server_binary())
        .arg("--log-dir")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--chart")
        .arg(&chart)
        .args(["--base", "20", "--rooms", "2", "--duration", "4", "--warmup", "1", "--sample-every", "1"])
        .args(["--churn-rate", "20", "--churn-hold", "0.2", "--polling-every", "2", "--abrupt-every", "0"])
        .args(["--broadcast-rate", "10", "--all-every", "2", "--rss-bound", "1000", "--fd-bound", "1000"])
        .output()
        .expect("run switchboard-loadtest soak");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "soak failed: {stderr}");

    let text = std::fs::read_to_string(&out).expect("read the JSON lines");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let samples = lines.iter().filter(|l| l["kind"] == "soak_sample").count();
    assert_eq!(samples, 5, "one sample a second from 0 to 4 s");
    let summary = lines.iter().find(|l| l["kind"] == "soak").expect("a summary line");
    assert_eq!(summary["passed"], true, "{summary}");

    let figure = |name: &str| summary["figures"][name].as_f64().unwrap_or_else(|| panic!("no figure {name}"));
    assert_eq!(figure("base_ready"), 20.0);
    assert!(figure("published") >= 30.0, "{summary}");
    assert!(figure("base_expected_deliveries") > 0.0);
    assert_eq!(figure("base_deliveries"), figure("base_expected_deliveries"), "{summary}");
    assert!(figure("churn_opened") >= 60.0, "{summary}");
    assert!(figure("churn_clean_disconnects") >= 50.0, "{summary}");
    assert_eq!(figure("churn_dropped"), 0.0);
    let failures: Vec<(&String, &Value)> =
        summary["failures"].as_object().expect("failures").iter().filter(|(_, n)| **n != 0).collect();
    assert!(failures.is_empty(), "failures: {failures:?}, first error {}", summary["first_error"]);

    // Clean leaves end the sessions at once: the node is idle again, with its idle descriptors.
    let (before, after) = (&summary["idle_before"], &summary["idle_after"]);
    assert_eq!(after["sockets"], 0.0, "{after}");
    assert_eq!(after["sessions"], 0.0, "{after}");
    // No more descriptors than before the first client (a node still starting up may hold a file
    // or two more then).
    let fds = |idle: &Value| idle["fds"].as_u64().unwrap_or_else(|| panic!("no fds in {idle}"));
    assert!(fds(after) <= fds(before), "descriptors before {before}, after {after}");
    // Not the 45 s ping timeout of an abandoned polling session (plus the second the reading waits).
    assert!(figure("idle_wait_s") < 10.0, "{summary}");

    let svg = std::fs::read_to_string(&chart).expect("read the chart");
    assert!(svg.contains("server RSS") && svg.contains("passed"), "chart without its panels or verdict");
    let _ = std::fs::remove_dir_all(&dir);
}
