//! What the Engine.IO layer counts: sessions and bytes per transport, closes by reason, refused
//! requests by code, upgrades and polling requests (`docs/metrics.md`); and the build's version,
//! since every node has exactly one engine per registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge};

use super::CloseReason;
use crate::metrics::{Registrar, Registry};
use crate::version;

/// The counters of one transport (`polling` or `websocket`).
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    /// Sessions on this transport now.
    pub sessions: IntGauge,
    /// Handshakes accepted on this transport.
    pub accepted: IntCounter,
    /// Engine.IO packets received.
    pub packets_in: IntCounter,
    /// Engine.IO packets sent.
    pub packets_out: IntCounter,
    /// Bytes of Engine.IO packets received (before any framing or compression).
    pub bytes_in: IntCounter,
    /// Bytes of Engine.IO packets sent (before any framing or compression).
    pub bytes_out: IntCounter,
}

/// The engine's metrics, shared by its sessions and transports.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Polling transport.
    pub polling: TransportMetrics,
    /// WebSocket transport.
    pub websocket: TransportMetrics,
    closed: [IntCounter; CLOSE_REASONS.len()],
    /// Engine.IO requests refused, by error code (socket.io's `connection_error`).
    handshake_errors: IntCounterVec,
    /// Polling → websocket upgrades completed.
    pub upgrades: IntCounter,
    /// Long-poll GETs.
    pub polling_gets: IntCounter,
    /// Polling POSTs.
    pub polling_posts: IntCounter,
}

/// Engine.IO's error codes, as label values.
const HANDSHAKE_CODES: [&str; 6] = ["0", "1", "2", "3", "4", "5"];

/// Every close reason, in the order of the `closed` counters.
const CLOSE_REASONS: [CloseReason; 6] = [
    CloseReason::TransportClose,
    CloseReason::TransportError,
    CloseReason::PingTimeout,
    CloseReason::ParseError,
    CloseReason::ForcedClose,
    CloseReason::ServerShuttingDown,
];

impl EngineMetrics {
    /// Creates the engine's metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let reg = Registrar(registry);
        let per_transport = |name: &str, help: &str| reg.counter_vec(name, help, &["transport"]);
        let sessions = reg.gauge_vec("switchboard_sessions", "Engine.IO sessions open now", &["transport"]);
        let accepted =
            per_transport("switchboard_connections_accepted_total", "Engine.IO handshakes accepted");
        let packets_in = per_transport("switchboard_packets_received_total", "Engine.IO packets received");
        let packets_out = per_transport("switchboard_packets_sent_total", "Engine.IO packets sent");
        let bytes_in = per_transport(
            "switchboard_bytes_received_total",
            "Bytes of Engine.IO packets received, before framing and compression",
        );
        let bytes_out = per_transport(
            "switchboard_bytes_sent_total",
            "Bytes of Engine.IO packets sent, before framing and compression",
        );
        let transport = |name: &str| TransportMetrics {
            sessions: sessions.with_label_values(&[name]),
            accepted: accepted.with_label_values(&[name]),
            packets_in: packets_in.with_label_values(&[name]),
            packets_out: packets_out.with_label_values(&[name]),
            bytes_in: bytes_in.with_label_values(&[name]),
            bytes_out: bytes_out.with_label_values(&[name]),
        };
        let closed = reg.counter_vec(
            "switchboard_connections_closed_total",
            "Engine.IO sessions closed, by socket.io's reason",
            &["reason"],
        );
        let polling_requests =
            reg.counter_vec("switchboard_polling_requests_total", "HTTP long-polling requests", &["method"]);
        let handshake_errors = reg.counter_vec(
            "switchboard_handshake_errors_total",
            "Engine.IO requests refused, by Engine.IO error code (socket.io's connection_error)",
            &["code"],
        );
        // The version and commit as labels, so a dashboard tells the builds of a rollout apart.
        reg.gauge_vec(
            "switchboard_build_info",
            "Always 1; the build is in the labels",
            &["version", "commit"],
        )
        .with_label_values(&[version::VERSION, version::COMMIT])
        .set(1);
        // Every code exported from the start, so a rate over them works before the first error.
        for code in HANDSHAKE_CODES {
            handshake_errors.with_label_values(&[code]);
        }
        Self {
            polling: transport("polling"),
            websocket: transport("websocket"),
            closed: CLOSE_REASONS.map(|r| closed.with_label_values(&[r.as_str()])),
            handshake_errors,
            upgrades: reg.counter("switchboard_upgrades_total", "Polling to websocket upgrades completed"),
            polling_gets: polling_requests.with_label_values(&["GET"]),
            polling_posts: polling_requests.with_label_values(&["POST"]),
        }
    }

    /// A session closed for `reason`.
    pub fn closed(&self, reason: CloseReason) {
        if let Some(i) = CLOSE_REASONS.iter().position(|r| *r == reason) {
            self.closed[i].inc();
        }
    }

    /// An Engine.IO request was refused with `code`.
    pub fn handshake_error(&self, code: u8) {
        if let Some(code) = HANDSHAKE_CODES.get(usize::from(code)) {
            self.handshake_errors.with_label_values(&[code]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_metric_is_registered_under_its_documented_name() {
        let registry = Registry::new();
        let m = EngineMetrics::register(&registry);
        m.closed(CloseReason::PingTimeout);
        m.handshake_error(1);
        let text = crate::metrics::rendered(&registry);
        for name in [
            "switchboard_build_info",
            "switchboard_sessions",
            "switchboard_connections_accepted_total",
            "switchboard_connections_closed_total",
            "switchboard_handshake_errors_total",
            "switchboard_packets_received_total",
            "switchboard_packets_sent_total",
            "switchboard_bytes_received_total",
            "switchboard_bytes_sent_total",
            "switchboard_upgrades_total",
            "switchboard_polling_requests_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"switchboard_connections_closed_total{reason="ping timeout"} 1"#));
        assert!(text.contains(r#"switchboard_handshake_errors_total{code="1"} 1"#));
        let build = format!(
            r#"switchboard_build_info{{commit="{}",version="{}"}} 1"#,
            version::COMMIT,
            version::VERSION
        );
        assert!(text.contains(&build), "{build} missing from:\n{text}");
        assert_ne!(version::COMMIT, "unknown", "built from a git checkout, the commit is known");
    }
}
