//! What the HTTP layer counts: readiness, draining and requests forwarded to other nodes
//! (`docs/metrics.md`).

use prometheus::{IntCounter, IntGauge};

use crate::metrics::{Registrar, Registry};

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

/// The HTTP layer's metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// 1 while `/readyz` answers 200.
    pub ready: IntGauge,
    /// 1 from SIGTERM until exit.
    pub draining: IntGauge,
    /// Requests for other nodes' sessions passed to their owners.
    pub forwarded: ForwardMetrics,
}

impl HttpMetrics {
    /// Creates the HTTP layer's metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let reg = Registrar(registry);
        let forwarded = reg.counter_vec(
            "switchboard_forwarded_requests_total",
            "Requests for sessions of other nodes, passed to their owner (kind: polling or websocket; result: ok, unknown_owner, failed)",
            &["kind", "result"],
        );
        let forward = |kind: &str| ForwardCounters {
            ok: forwarded.with_label_values(&[kind, "ok"]),
            unknown_owner: forwarded.with_label_values(&[kind, "unknown_owner"]),
            failed: forwarded.with_label_values(&[kind, "failed"]),
        };
        Self {
            ready: reg.gauge("switchboard_ready", "1 while the node is ready for new clients (/readyz)"),
            draining: reg.gauge("switchboard_draining", "1 while the node drains before exiting"),
            forwarded: ForwardMetrics { polling: forward("polling"), websocket: forward("websocket") },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_metric_is_registered_under_its_documented_name() {
        let registry = Registry::new();
        HttpMetrics::register(&registry);
        let text = crate::metrics::rendered(&registry);
        for name in ["switchboard_ready", "switchboard_draining", "switchboard_forwarded_requests_total"] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
    }
}
