//! What the gateway counts: refused connects by reason, webhook calls by route and result with
//! their latency, and API requests by endpoint and status. Routes and endpoints come from the
//! config and the code, so every label stays low-cardinality.

use prometheus::{Histogram, IntCounterVec};

use crate::metrics::{Registrar, Registry};

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// `switchboard_gateway_auth_failures_total{reason}`.
    pub auth_failures: IntCounterVec,
    /// `switchboard_gateway_webhook_requests_total{route, result}`.
    pub webhook_requests: IntCounterVec,
    /// `switchboard_gateway_webhook_seconds`: a call's time, waiting for a slot included.
    pub webhook_seconds: Histogram,
    /// `switchboard_gateway_api_requests_total{endpoint, status}`.
    pub api_requests: IntCounterVec,
}

impl GatewayMetrics {
    /// Creates the gateway's metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let reg = Registrar(registry);
        Self {
            auth_failures: reg.counter_vec(
                "switchboard_gateway_auth_failures_total",
                "Connects refused by the gateway (reason: missing, expired, signature, invalid)",
                &["reason"],
            ),
            webhook_requests: reg.counter_vec(
                "switchboard_gateway_webhook_requests_total",
                "Event webhook calls (route: namespace and event; result: ok or the error ack's code)",
                &["route", "result"],
            ),
            webhook_seconds: reg.histogram(
                "switchboard_gateway_webhook_seconds",
                "Time from an event's turn to the backend's answer (or the error)",
                &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            api_requests: reg.counter_vec(
                "switchboard_gateway_api_requests_total",
                "HTTP API requests (endpoint: the path, or `other`; status: the HTTP status)",
                &["endpoint", "status"],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_metric_is_registered_under_its_documented_name() {
        let registry = Registry::new();
        let metrics = GatewayMetrics::register(&registry);
        metrics.auth_failures.with_label_values(&["missing"]).inc();
        metrics.webhook_requests.with_label_values(&["/ message", "ok"]).inc();
        metrics.api_requests.with_label_values(&["/v1/emit", "200"]).inc();
        let text = crate::metrics::rendered(&registry);
        for name in [
            "switchboard_gateway_auth_failures_total",
            "switchboard_gateway_webhook_requests_total",
            "switchboard_gateway_webhook_seconds",
            "switchboard_gateway_api_requests_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from:\n{text}");
        }
    }
}
