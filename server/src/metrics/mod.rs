//! Prometheus metrics of one node (`switchboard_*`, listed in `docs/metrics.md`).
//!
//! One [`Metrics`] per engine, shared by its sessions, transports and the Socket.IO layer. Labels
//! are low-cardinality only (transport, close reason, error code, namespace): nothing per socket
//! or room. Hot paths add once per read, write or broadcast, never per recipient, and hold
//! pre-resolved label children so counting is one atomic add.

pub mod cluster;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::engine::CloseReason;

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

/// The Socket.IO layer's counters, node-wide (each namespace holds a clone of the handles).
#[derive(Debug, Clone)]
pub struct SocketIoMetrics {
    /// Broadcasts emitted on this node.
    pub broadcasts: IntCounter,
    /// Packets those broadcasts queued on this node's sockets.
    pub deliveries: IntCounter,
    /// Volatile packets dropped because the transport could not take them.
    pub dropped_volatile: IntCounter,
    /// Packets refused by a full send queue (the slow client is disconnected).
    pub dropped_overflow: IntCounter,
    /// Acks that did not arrive in time (socket emits and broadcasts).
    pub ack_timeouts: IntCounter,
    /// Time from an event's arrival to the end of its handler.
    pub event_handler_seconds: Histogram,
}

/// What forwarding one kind of request (`polling` or `websocket`) ended in.
#[derive(Debug, Clone)]
pub struct ForwardCounters {
    /// The owner answered (whatever it answered).
    pub ok: IntCounter,
    /// No live owner with an address: answered here with Engine.IO's 400.
    pub unknown_owner: IntCounter,
    /// The owner was unreachable or did not answer in time: the client got a 400.
    pub failed: IntCounter,
}

/// `switchboard_forwarded_requests_total`, by kind and result, resolved once.
#[derive(Debug, Clone)]
pub struct ForwardMetrics {
    /// Long-polling GETs and POSTs.
    pub polling: ForwardCounters,
    /// Websocket upgrades.
    pub websocket: ForwardCounters,
}

/// Every metric of a node, registered in its own registry (so tests and several engines in one
/// process do not share counters).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
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
    /// What the Socket.IO layer counts.
    pub socketio: SocketIoMetrics,
    sockets: IntGaugeVec,
    /// 1 while `/readyz` answers 200.
    pub ready: IntGauge,
    /// 1 from SIGTERM until exit.
    pub draining: IntGauge,
    /// Requests for other nodes' sessions passed to their owners.
    pub forwarded: ForwardMetrics,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let sessions = reg.gauge_vec("switchboard_sessions", "Engine.IO sessions open now", "transport");
        let accepted = reg.counter_vec(
            "switchboard_connections_accepted_total",
            "Engine.IO handshakes accepted",
            "transport",
        );
        let packets_in =
            reg.counter_vec("switchboard_packets_received_total", "Engine.IO packets received", "transport");
        let packets_out =
            reg.counter_vec("switchboard_packets_sent_total", "Engine.IO packets sent", "transport");
        let bytes_in = reg.counter_vec(
            "switchboard_bytes_received_total",
            "Bytes of Engine.IO packets received, before framing and compression",
            "transport",
        );
        let bytes_out = reg.counter_vec(
            "switchboard_bytes_sent_total",
            "Bytes of Engine.IO packets sent, before framing and compression",
            "transport",
        );
        let transport = |name: &str| TransportMetrics {
            sessions: sessions.with_label_values(&[name]),
            accepted: accepted.with_label_values(&[name]),
            packets_in: packets_in.with_label_values(&[name]),
            packets_out: packets_out.with_label_values(&[name]),
            bytes_in: bytes_in.with_label_values(&[name]),
            bytes_out: bytes_out.with_label_values(&[name]),
        };
        let (polling, websocket) = (transport("polling"), transport("websocket"));
        let closed_vec = reg.counter_vec(
            "switchboard_connections_closed_total",
            "Engine.IO sessions closed, by socket.io's reason",
            "reason",
        );
        let closed = CLOSE_REASONS.map(|r| closed_vec.with_label_values(&[r.as_str()]));
        let dropped = reg.counter_vec(
            "switchboard_dropped_packets_total",
            "Packets not queued: volatile ones the transport could not take, or ones over a full queue",
            "reason",
        );
        let polling_requests =
            reg.counter_vec("switchboard_polling_requests_total", "HTTP long-polling requests", "method");
        let handshake_errors = reg.counter_vec(
            "switchboard_handshake_errors_total",
            "Engine.IO requests refused, by Engine.IO error code (socket.io's connection_error)",
            "code",
        );
        // Every code exported from the start, so a rate over them works before the first error.
        for code in HANDSHAKE_CODES {
            handshake_errors.with_label_values(&[code]);
        }
        let forwarded = reg.counter_vec_labeled(
            "switchboard_forwarded_requests_total",
            "Requests for sessions of other nodes, passed to their owner (kind: polling or websocket; result: ok, unknown_owner, failed)",
            &["kind", "result"],
        );
        let forward = |kind: &str| ForwardCounters {
            ok: forwarded.with_label_values(&[kind, "ok"]),
            unknown_owner: forwarded.with_label_values(&[kind, "unknown_owner"]),
            failed: forwarded.with_label_values(&[kind, "failed"]),
        };
        let forwarded = ForwardMetrics { polling: forward("polling"), websocket: forward("websocket") };
        let build = reg.gauge_vec("switchboard_build_info", "Always 1; the version is the label", "version");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            polling,
            websocket,
            closed,
            handshake_errors,
            upgrades: reg.counter("switchboard_upgrades_total", "Polling to websocket upgrades completed"),
            polling_gets: polling_requests.with_label_values(&["GET"]),
            polling_posts: polling_requests.with_label_values(&["POST"]),
            socketio: SocketIoMetrics {
                broadcasts: reg.counter("switchboard_broadcasts_total", "Broadcasts emitted on this node"),
                deliveries: reg.counter(
                    "switchboard_deliveries_total",
                    "Packets queued on this node's sockets by broadcasts emitted here",
                ),
                dropped_volatile: dropped.with_label_values(&["volatile"]),
                dropped_overflow: dropped.with_label_values(&["overflow"]),
                ack_timeouts: reg
                    .counter("switchboard_ack_timeouts_total", "Acks that did not arrive in time"),
                event_handler_seconds: reg.histogram(
                    "switchboard_event_handler_duration_seconds",
                    "Time from an event's arrival to the end of its handler",
                    vec![
                        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5,
                        2.5,
                    ],
                ),
            },
            sockets: reg.gauge_vec("switchboard_sockets", "Socket.IO sockets connected now", "namespace"),
            ready: reg.gauge("switchboard_ready", "1 while the node is ready for new clients (/readyz)"),
            draining: reg.gauge("switchboard_draining", "1 while the node drains before exiting"),
            forwarded,
            registry,
        }
    }

    /// The registry, to add collectors (the cluster adapter's) to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric, as `/metrics` serves it.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
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

    /// The gauge of sockets connected to `namespace` (resolve it once per namespace).
    pub fn sockets(&self, namespace: &str) -> IntGauge {
        self.sockets.with_label_values(&[namespace])
    }
}

/// What one Socket.IO namespace counts: its socket gauge resolved once, plus the node-wide
/// handles, so the hot paths never look a label up.
#[derive(Debug, Clone)]
pub struct NamespaceMetrics {
    /// Sockets connected to this namespace now.
    pub sockets: IntGauge,
    /// The node-wide Socket.IO counters.
    pub node: SocketIoMetrics,
}

impl NamespaceMetrics {
    /// The counters of namespace `name`.
    pub fn new(metrics: &Metrics, name: &str) -> Self {
        Self { sockets: metrics.sockets(name), node: metrics.socketio.clone() }
    }
}

/// Creates metrics and registers them. Names, help texts and labels are constants, so the only
/// possible failure is a programming error (a bad or duplicate name), which the unit test below
/// would hit on every metric: hence `expect`, not an error path.
struct Registrar<'a>(&'a Registry);

#[allow(clippy::expect_used)]
impl Registrar<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0.register(Box::new(c.clone())).expect("metric names are unique");
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    fn counter_vec(&self, name: &str, help: &str, label: &str) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
    }

    fn counter_vec_labeled(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge_vec(&self, name: &str, help: &str, label: &str) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_under_its_documented_name() {
        let m = Metrics::new();
        m.closed(CloseReason::PingTimeout);
        m.handshake_error(1);
        m.sockets("/").inc();
        let text = String::from_utf8(m.render()).unwrap_or_default();
        for name in [
            "switchboard_build_info",
            "switchboard_sessions",
            "switchboard_sockets",
            "switchboard_connections_accepted_total",
            "switchboard_connections_closed_total",
            "switchboard_handshake_errors_total",
            "switchboard_packets_received_total",
            "switchboard_packets_sent_total",
            "switchboard_bytes_received_total",
            "switchboard_bytes_sent_total",
            "switchboard_upgrades_total",
            "switchboard_polling_requests_total",
            "switchboard_broadcasts_total",
            "switchboard_deliveries_total",
            "switchboard_dropped_packets_total",
            "switchboard_ack_timeouts_total",
            "switchboard_event_handler_duration_seconds",
            "switchboard_ready",
            "switchboard_draining",
            "switchboard_forwarded_requests_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"switchboard_connections_closed_total{reason="ping timeout"} 1"#));
        assert!(text.contains(r#"switchboard_handshake_errors_total{code="1"} 1"#));
    }
}
