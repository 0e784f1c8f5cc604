//! The SVG charts drawn from the loadtest's JSON lines: one file per charted scenario, medians across
//! repeats, values and ratios on the bars, unknown scenarios skipped, and a clear error when nothing can
//! be charted.
//!
//! `SAMPLE` holds lines captured from a small real `compare` (500 connections, echo 3 s, fanout 200 × 100):
//! runs 1 and 2 of `connect` and `fanout` on both servers, the `echo` summary line, and the first `echo`
//! run of each server relabelled `polling`, standing in for that scenario's echo-like lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::{Value, json};
use switchboard_loadtest::chart::{self, ChartError};

const SAMPLE: &str = r#"{"kind":"run","scenario":"connect","server":"switchboard","repeat":1,"url":"ws://127.0.0.1:3921/socket.io/","server_pid":4475,"timestamp":"2026-11-25T13:24:33Z","params":{"connections":500,"hold":2.0,"in_flight":100,"limit":60.0,"rate":null,"settle":2.0,"timeout":10.0},"figures":{"connections":500,"connected":500,"connect_time_s":0.1137,"connects_per_s":4398.9916,"connect_p50_ms":16.527,"connect_p99_ms":33.055,"connect_max_ms":33.119,"rss_before_kib":5204,"rss_after_kib":9756,"rss_per_connection_kib":9.104,"server_cpu_s_connecting":0.07,"client_cpu_s_connecting":0.06,"held_s":2.0018},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"connect","server":"node","repeat":1,"url":"ws://127.0.0.1:3922/socket.io/","server_pid":4500,"timestamp":"2026-11-25T13:24:36Z","params":{"connections":500,"hold":2.0,"in_flight":100,"limit":60.0,"rate":null,"settle":2.0,"timeout":10.0},"figures":{"connections":500,"connected":500,"connect_time_s":0.5045,"connects_per_s":991.0238,"connect_p50_ms":92.735,"connect_p99_ms":125.823,"connect_max_ms":128.703,"rss_before_kib":55660,"rss_after_kib":69324,"rss_per_connection_kib":27.328,"server_cpu_s_connecting":0.61,"client_cpu_s_connecting":0.09,"held_s":2.0028},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"connect","server":"switchboard","repeat":2,"url":"ws://127.0.0.1:3921/socket.io/","server_pid":4570,"timestamp":"2026-11-25T13:24:43Z","params":{"connections":500,"hold":2.0,"in_flight":100,"limit":60.0,"rate":null,"settle":2.0,"timeout":10.0},"figures":{"connections":500,"connected":500,"connect_time_s":0.0877,"connects_per_s":5702.0986,"connect_p50_ms":12.679,"connect_p99_ms":34.719,"connect_max_ms":35.327,"rss_before_kib":5136,"rss_after_kib":9940,"rss_per_connection_kib":9.608,"server_cpu_s_connecting":0.06,"client_cpu_s_connecting":0.06,"held_s":2.0025},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"connect","server":"node","repeat":2,"url":"ws://127.0.0.1:3922/socket.io/","server_pid":4535,"timestamp":"2026-11-25T13:24:40Z","params":{"connections":500,"hold":2.0,"in_flight":100,"limit":60.0,"rate":null,"settle":2.0,"timeout":10.0},"figures":{"connections":500,"connected":500,"connect_time_s":0.4749,"connects_per_s":1052.8647,"connect_p50_ms":91.967,"connect_p99_ms":124.159,"connect_max_ms":128.511,"rss_before_kib":56160,"rss_after_kib":69900,"rss_per_connection_kib":27.48,"server_cpu_s_connecting":0.6,"client_cpu_s_connecting":0.08,"held_s":2.0029},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"fanout","server":"switchboard","repeat":1,"url":"ws://127.0.0.1:3921/socket.io/","server_pid":4820,"timestamp":"2026-11-25T13:25:27Z","params":{"ack_timeout":5.0,"connections":200,"drain":5.0,"in_flight":100,"limit":120.0,"messages":100,"payload":64,"rate":null,"room":"fanout","timeout":10.0,"window":16},"figures":{"receivers":200,"published":100,"publish_acked":100,"expected_deliveries":20000,"deliveries":20000,"deliveries_per_s":340387.5476,"publish_s":0.0568,"latency_p50_ms":9.567,"latency_p99_ms":21.711,"latency_p999_ms":21.823,"latency_max_ms":22.431,"latency_mean_ms":10.7174,"publish_ack_p50_ms":6.883,"server_cpu_s":0.04,"server_cpu_s_per_million_deliveries":2.0,"client_cpu_s":0.03,"rss_kib":9028},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"join_failed":0,"publisher_failed":0,"publish_ack_timeouts":0,"lost_deliveries":0,"extra_deliveries":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"fanout","server":"node","repeat":1,"url":"ws://127.0.0.1:3922/socket.io/","server_pid":4829,"timestamp":"2026-11-25T13:25:27Z","params":{"ack_timeout":5.0,"connections":200,"drain":5.0,"in_flight":100,"limit":120.0,"messages":100,"payload":64,"rate":null,"room":"fanout","timeout":10.0,"window":16},"figures":{"receivers":200,"published":100,"publish_acked":100,"expected_deliveries":20000,"deliveries":20000,"deliveries_per_s":48820.3291,"publish_s":0.4099,"latency_p50_ms":33.407,"latency_p99_ms":173.695,"latency_p999_ms":187.135,"latency_max_ms":188.671,"latency_mean_ms":43.2947,"publish_ack_p50_ms":59.903,"server_cpu_s":0.53,"server_cpu_s_per_million_deliveries":26.5,"client_cpu_s":0.19,"rss_kib":77304},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"join_failed":0,"publisher_failed":0,"publish_ack_timeouts":0,"lost_deliveries":0,"extra_deliveries":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"fanout","server":"switchboard","repeat":2,"url":"ws://127.0.0.1:3921/socket.io/","server_pid":4885,"timestamp":"2026-11-25T13:25:30Z","params":{"ack_timeout":5.0,"connections":200,"drain":5.0,"in_flight":100,"limit":120.0,"messages":100,"payload":64,"rate":null,"room":"fanout","timeout":10.0,"window":16},"figures":{"receivers":200,"published":100,"publish_acked":100,"expected_deliveries":20000,"deliveries":20000,"deliveries_per_s":782119.1911,"publish_s":0.0231,"latency_p50_ms":4.531,"latency_p99_ms":10.631,"latency_p999_ms":10.903,"latency_max_ms":10.927,"latency_mean_ms":4.8495,"publish_ack_p50_ms":3.211,"server_cpu_s":0.02,"server_cpu_s_per_million_deliveries":1,"client_cpu_s":0.02,"rss_kib":8120},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"join_failed":0,"publisher_failed":0,"publish_ack_timeouts":0,"lost_deliveries":0,"extra_deliveries":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"fanout","server":"node","repeat":2,"url":"ws://127.0.0.1:3922/socket.io/","server_pid":4862,"timestamp":"2026-11-25T13:25:29Z","params":{"ack_timeout":5.0,"connections":200,"drain":5.0,"in_flight":100,"limit":120.0,"messages":100,"payload":64,"rate":null,"room":"fanout","timeout":10.0,"window":16},"figures":{"receivers":200,"published":100,"publish_acked":100,"expected_deliveries":20000,"deliveries":20000,"deliveries_per_s":39875.4637,"publish_s":0.5019,"latency_p50_ms":49.407,"latency_p99_ms":146.815,"latency_p999_ms":155.391,"latency_max_ms":156.415,"latency_mean_ms":53.9785,"publish_ack_p50_ms":71.231,"server_cpu_s":0.6,"server_cpu_s_per_million_deliveries":30.0,"client_cpu_s":0.21,"rss_kib":76056},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"join_failed":0,"publisher_failed":0,"publish_ack_timeouts":0,"lost_deliveries":0,"extra_deliveries":0},"first_error":null,"complete":true}
{"kind":"compare","scenario":"echo","repeats":3,"timestamp":"2026-11-25T13:25:27Z","switchboard":{"connections":50,"sent":15000,"acked":15000,"throughput_per_s":5000,"latency_p50_ms":0.154,"latency_p99_ms":1.173,"latency_p999_ms":2.883,"latency_max_ms":4.339,"latency_mean_ms":0.1823,"rtt_p50_ms":0.079,"rtt_p99_ms":0.477,"rtt_p999_ms":2.473,"send_lag_max_ms":3.4522,"server_cpu_s":0.67,"server_cpu_s_per_million":44.6667,"client_cpu_s":0.87,"rss_kib":6096},"node":{"connections":50,"sent":15000,"acked":15000,"throughput_per_s":5000,"latency_p50_ms":0.189,"latency_p99_ms":1.957,"latency_p999_ms":6.003,"latency_max_ms":6.951,"latency_mean_ms":0.3041,"rtt_p50_ms":0.115,"rtt_p99_ms":1.541,"rtt_p999_ms":4.219,"send_lag_max_ms":4.5831,"server_cpu_s":1.41,"server_cpu_s_per_million":94.0,"client_cpu_s":0.89,"rss_kib":65884},"ratio":{"connections":1,"sent":1,"acked":1,"throughput_per_s":1,"latency_p50_ms":0.8148,"latency_p99_ms":0.5994,"latency_p999_ms":0.4803,"latency_max_ms":0.6242,"latency_mean_ms":0.5994,"rtt_p50_ms":0.687,"rtt_p99_ms":0.3095,"rtt_p999_ms":0.5862,"send_lag_max_ms":0.7532,"server_cpu_s":0.4752,"server_cpu_s_per_million":0.4752,"client_cpu_s":0.9775,"rss_kib":0.0925},"failures":{"switchboard":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"ack_timeouts":0,"unsent":0,"unexpected_acks":0,"bad_acks":0},"node":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"ack_timeouts":0,"unsent":0,"unexpected_acks":0,"bad_acks":0}},"incomplete_runs":{"switchboard":0,"node":0}}
{"kind":"run","scenario":"polling","server":"switchboard","repeat":1,"url":"ws://127.0.0.1:3921/socket.io/","server_pid":4599,"timestamp":"2026-11-25T13:24:51Z","params":{"ack_timeout":5.0,"connections":50,"duration":3.0,"in_flight":100,"limit":60.0,"payload":64,"rate":5000.0,"timeout":10.0,"warmup":2.0},"figures":{"connections":50,"sent":15000,"acked":15000,"throughput_per_s":5000,"latency_p50_ms":0.156,"latency_p99_ms":0.387,"latency_p999_ms":2.883,"latency_max_ms":4.339,"latency_mean_ms":0.1685,"rtt_p50_ms":0.08,"rtt_p99_ms":0.199,"rtt_p999_ms":1.503,"send_lag_max_ms":3.4522,"server_cpu_s":0.69,"server_cpu_s_per_million":46.0,"client_cpu_s":0.87,"rss_kib":6196},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"ack_timeouts":0,"unsent":0,"unexpected_acks":0,"bad_acks":0},"first_error":null,"complete":true}
{"kind":"run","scenario":"polling","server":"node","repeat":1,"url":"ws://127.0.0.1:3922/socket.io/","server_pid":4607,"timestamp":"2026-11-25T13:24:57Z","params":{"ack_timeout":5.0,"connections":50,"duration":3.0,"in_flight":100,"limit":60.0,"payload":64,"rate":5000.0,"timeout":10.0,"warmup":2.0},"figures":{"connections":50,"sent":15000,"acked":15000,"throughput_per_s":5000,"latency_p50_ms":0.184,"latency_p99_ms":1.957,"latency_p999_ms":18.719,"latency_max_ms":20.847,"latency_mean_ms":0.3041,"rtt_p50_ms":0.111,"rtt_p99_ms":1.541,"rtt_p999_ms":18.255,"send_lag_max_ms":15.7094,"server_cpu_s":1.41,"server_cpu_s_per_million":94.0,"client_cpu_s":0.86,"rss_kib":65432},"failures":{"refused":0,"connect_timed_out":0,"connect_failed":0,"closed":0,"protocol_errors":0,"not_attempted":0,"ack_timeouts":0,"unsent":0,"unexpected_acks":0,"bad_acks":0},"first_error":null,"complete":true}
"#;

fn sample() -> Vec<Value> {
    SAMPLE.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("switchboard-chart-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The text of every `<text>` element, in order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_owned()))
        .collect()
}

fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg "), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
}

#[test]
fn writes_one_svg_per_charted_scenario() {
    let mut lines = sample();
    lines.push(json!({"kind": "run", "scenario": "soak", "server": "switchboard", "figures": {"hours": 1}}));
    lines.push(json!({"kind": "error", "message": "not a run"}));
    let dir = TempDir::new("all");

    let paths = chart::write_charts(&lines, &dir.0).unwrap();

    let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["connect.svg", "echo.svg", "polling.svg", "fanout.svg"]);
    for path in &paths {
        let svg = std::fs::read_to_string(path).unwrap();
        assert_well_formed(&svg);
        let texts = texts(&svg);
        for series in ["Switchboard", "Node socket.io"] {
            assert!(texts.iter().any(|t| t == series), "{}: no legend entry {series}", path.display());
        }
        assert!(texts.iter().any(|t| t.starts_with("ratio ")), "{}: no ratio", path.display());
        assert!(texts.iter().any(|t| t.contains("per server")), "{}: no footnote", path.display());
    }
    assert!(!dir.0.join("soak.svg").exists());
}

#[test]
fn bars_show_the_median_of_the_runs_and_the_ratio() {
    let charts = chart::render(&sample()).unwrap();
    let texts = |scenario: &str| texts(&charts.iter().find(|c| c.scenario == scenario).unwrap().svg);

    // connect, runs 1 and 2: RSS per connection 9.104 and 9.608 KiB on Switchboard, 27.328 and 27.48 on
    // Node; the median of two is their mean.
    let connect = texts("connect");
    assert!(connect.contains(&"9.36".to_owned()), "{connect:?}");
    assert!(connect.contains(&"27.4".to_owned()), "{connect:?}");
    assert!(connect.contains(&"ratio 0.34".to_owned()), "{connect:?}");
    assert!(connect.contains(&"500 connections, held 2 s".to_owned()), "{connect:?}");
    assert!(connect.iter().any(|t| t.contains("median of 2 runs per server")), "{connect:?}");

    // fanout: deliveries/s 340,388 and 782,119 → 561k; Node 48,820 and 39,875 → 44.3k.
    let fanout = texts("fanout");
    for label in ["561k", "44.3k", "ratio 12.7", "p50", "p99", "p99.9", "deliveries/s", "ms"] {
        assert!(fanout.iter().any(|t| t.starts_with(label)), "fanout: no {label} in {fanout:?}");
    }

    // echo comes from the compare summary alone: its medians and its repeat count.
    let echo = texts("echo");
    for label in ["44.7", "94", "0.154", "0.189", "ratio 0.48", "CPU seconds"] {
        assert!(echo.contains(&label.to_owned()), "echo: no {label} in {echo:?}");
    }
    assert!(echo.iter().any(|t| t.contains("median of 3 runs per server")), "{echo:?}");
}

#[test]
fn failures_are_shown() {
    let mut lines = sample();
    for line in &mut lines {
        if line["scenario"] == "fanout" && line["server"] == "node" {
            line["failures"]["lost_deliveries"] = json!(7);
            line["complete"] = json!(false);
        }
    }
    let charts = chart::render(&lines).unwrap();
    let fanout = texts(&charts.iter().find(|c| c.scenario == "fanout").unwrap().svg);
    assert!(fanout.iter().any(|t| t == "FAILURES: Node 14, 2 incomplete"), "{fanout:?}");
}

#[test]
fn a_single_server_without_compare_is_named_by_its_address() {
    let line = sample().into_iter().find(|l| l["scenario"] == "connect").unwrap();
    let mut line = line;
    line.as_object_mut().unwrap().remove("server");
    line.as_object_mut().unwrap().remove("repeat");
    let charts = chart::render(&[line]).unwrap();
    assert_eq!(charts.len(), 1);
    let texts = texts(&charts[0].svg);
    assert!(texts.contains(&"connect: 127.0.0.1:3921".to_owned()), "{texts:?}");
    assert!(!texts.iter().any(|t| t.starts_with("ratio")), "{texts:?}");
}

#[test]
fn nothing_to_chart_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("empty");
    let err = chart::write_charts(&[], &dir.0).unwrap_err();
    assert!(matches!(err, ChartError::NoData(_)), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(!dir.0.exists());

    let unknown = [json!({"kind": "run", "scenario": "soak", "server": "node", "figures": {"hours": 1}})];
    let err = chart::write_charts(&unknown, &dir.0).unwrap_err();
    assert!(err.to_string().contains("soak"), "{err}");
    assert!(!dir.0.exists());
}

#[test]
fn reads_json_lines_and_names_the_bad_line() {
    let dir = TempDir::new("input");
    std::fs::create_dir_all(&dir.0).unwrap();
    let good = dir.0.join("results.jsonl");
    std::fs::write(&good, format!("{SAMPLE}\n\n")).unwrap();
    assert_eq!(chart::read_json_lines(&good).unwrap().len(), SAMPLE.lines().count());

    let bad = dir.0.join("bad.jsonl");
    std::fs::write(&bad, "{\"kind\":\"run\"}\n\nconnect switchboard #1: connected=500\n").unwrap();
    let err = chart::read_json_lines(&bad).unwrap_err();
    assert!(matches!(err, ChartError::Parse { line: 3, .. }), "{err}");

    let err = chart::read_json_lines(&dir.0.join("missing.jsonl")).unwrap_err();
    assert!(matches!(err, ChartError::Read { .. }), "{err}");
}
