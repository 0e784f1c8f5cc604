//! What the Socket.IO layer counts: sockets per namespace, broadcasts and their deliveries, dropped
//! packets, ack timeouts, event handler latency, and connection state recovery's restores
//! (`docs/metrics.md`).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::metrics::{Registrar, Registry};

/// The Socket.IO layer's node-wide counters (each namespace holds a clone of the handles).
#[derive(Debug, Clone)]
pub struct SocketIoMetrics {
    /// Broadcasts emitted on this node.
    pub broadcasts: IntCounter,
    /// Packets broadcasts queued on this node's sockets, whichever node emitted them.
    pub deliveries: IntCounter,
    /// Volatile packets dropped because the transport could not take them.
    pub dropped_volatile: IntCounter,
    /// Packets refused by a full send queue (the slow client is disconnected).
    pub dropped_overflow: IntCounter,
    /// Acks that did not arrive in time (socket emits and broadcasts).
    pub ack_timeouts: IntCounter,
    /// Time from an event's arrival to the end of its handler.
    pub event_handler_seconds: Histogram,
    /// Connection state recovery's restores.
    pub recovery: RecoveryMetrics,
    sockets: IntGaugeVec,
}

/// What connection state recovery counts (`docs/recovery.md`): a client that presents a private
/// session id is an attempt, which ends restored or failed for one reason.
#[derive(Debug, Clone)]
pub struct RecoveryMetrics {
    /// CONNECTs that asked for a restore.
    pub attempts: IntCounter,
    /// Restores that succeeded (`socket.recovered` true).
    pub restored: IntCounter,
    /// Missed packets queued again by successful restores.
    pub replayed_packets: IntCounter,
    /// Time from a logged packet's append to the shared log (Redis) to its delivery here.
    pub log_lag: Histogram,
    /// Packets this node's copies of the shared logs hold, all namespaces.
    pub log_packets: IntGauge,
    failures: IntCounterVec,
}

impl RecoveryMetrics {
    /// Counts a failed restore under its reason ([`RestoreError::reason`](switchboard_adapter::RestoreError::reason)).
    pub fn failed(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
    }
}

/// Bounds of the recovery log's lag: from a local broker's fraction of a millisecond to a reader
/// seconds behind.
const LAG_BUCKETS: [f64; 10] = [0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// Bounds of the event handler histogram: from an inline handler's tens of microseconds to a
/// handler that waits on a database for seconds.
const HANDLER_BUCKETS: [f64; 12] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

impl SocketIoMetrics {
    /// Creates the Socket.IO layer's metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let reg = Registrar(registry);
        let dropped = reg.counter_vec(
            "switchboard_dropped_packets_total",
            "Packets not queued: volatile ones the transport could not take, or ones over a full queue",
            &["reason"],
        );
        let failures = reg.counter_vec(
            "switchboard_recovery_failures_total",
            "Restores that failed, so the client connected as a new socket, by reason",
            &["reason"],
        );
        for reason in switchboard_adapter::RestoreError::REASONS {
            failures.with_label_values(&[reason]);
        }
        Self {
            broadcasts: reg.counter("switchboard_broadcasts_total", "Broadcasts emitted on this node"),
            deliveries: reg.counter(
                "switchboard_deliveries_total",
                "Packets queued on this node's sockets by broadcasts, wherever they were emitted",
            ),
            dropped_volatile: dropped.with_label_values(&["volatile"]),
            dropped_overflow: dropped.with_label_values(&["overflow"]),
            ack_timeouts: reg.counter("switchboard_ack_timeouts_total", "Acks that did not arrive in time"),
            event_handler_seconds: reg.histogram(
                "switchboard_event_handler_duration_seconds",
                "Time from an event's arrival to the end of its handler",
                &HANDLER_BUCKETS,
            ),
            recovery: RecoveryMetrics {
                attempts: reg.counter(
                    "switchboard_recovery_attempts_total",
                    "CONNECTs that presented a private session id to restore",
                ),
                restored: reg.counter(
                    "switchboard_recovery_restored_total",
                    "Connection states restored: same socket id, rooms and data, missed packets replayed",
                ),
                replayed_packets: reg.counter(
                    "switchboard_recovery_replayed_packets_total",
                    "Missed packets queued again by successful restores",
                ),
                log_lag: reg.histogram(
                    "switchboard_recovery_log_lag_seconds",
                    "Time from a logged packet's append to the shared recovery log (the broker's clock) to its delivery on this node, per batch read",
                    &LAG_BUCKETS,
                ),
                log_packets: reg.gauge(
                    "switchboard_recovery_log_packets",
                    "Packets this node's copies of the shared recovery logs hold (all namespaces)",
                ),
                failures,
            },
            // `nsp`, not `namespace`: Prometheus targets on Kubernetes carry a `namespace` label.
            sockets: reg.gauge_vec("switchboard_sockets", "Socket.IO sockets connected now", &["nsp"]),
        }
    }

    /// Drops the `switchboard_sockets` series of a removed namespace, so names clients made up
    /// do not stay in every scrape.
    pub fn forget_namespace(&self, name: &str) {
        let _ = self.sockets.remove_label_values(&[name]);
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
    pub fn new(metrics: &SocketIoMetrics, name: &str) -> Self {
        Self { sockets: metrics.sockets.with_label_values(&[name]), node: metrics.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socketio_metric_is_registered_under_its_documented_name() {
        let registry = Registry::new();
        let m = SocketIoMetrics::register(&registry);
        NamespaceMetrics::new(&m, "/").sockets.inc();
        let text = crate::metrics::rendered(&registry);
        for name in [
            "switchboard_sockets",
            "switchboard_broadcasts_total",
            "switchboard_deliveries_total",
            "switchboard_dropped_packets_total",
            "switchboard_ack_timeouts_total",
            "switchboard_event_handler_duration_seconds",
            "switchboard_recovery_attempts_total",
            "switchboard_recovery_restored_total",
            "switchboard_recovery_replayed_packets_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"switchboard_sockets{nsp="/"} 1"#));
        m.recovery.failed("expired");
        let text = crate::metrics::rendered(&registry);
        assert!(text.contains(r#"switchboard_recovery_failures_total{reason="expired"} 1"#), "{text}");
        m.forget_namespace("/");
        assert!(!crate::metrics::rendered(&registry).contains(r#"nsp="/""#));
    }
}
