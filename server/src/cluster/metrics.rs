//! The adapter's figures as Prometheus metrics, read from the [`Cluster`] at each scrape (the
//! adapter keeps its own atomic counters; nothing is counted twice on the hot path).

use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::Cluster;

/// A collector over one node's cluster link.
pub struct ClusterCollector {
    cluster: Arc<Cluster>,
    publishes: IntCounter,
    receives: IntCounter,
    errors: IntCounterVec,
    reconnects: IntCounter,
    connected: IntGauge,
    nodes: IntGauge,
    /// `switchboard_cluster_info{adapter, prefix}`: constant, set once.
    info: IntGaugeVec,
    /// Serialises scrapes: counters are advanced to the adapter's totals, which must not race.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCollector").finish_non_exhaustive()
    }
}

/// Error kinds of `switchboard_adapter_errors_total`.
const ERROR_KINDS: [&str; 7] =
    ["publish_failed", "publish_lost", "receive_dropped", "malformed", "forged", "unsupported", "unroutable"];

impl ClusterCollector {
    /// A collector for `cluster`; [`Cluster::register_metrics`] registers it.
    pub fn new(cluster: Arc<Cluster>) -> Result<Self, prometheus::Error> {
        Ok(Self {
            publishes: IntCounter::new(
                "switchboard_adapter_publishes_total",
                "Cluster messages handed to the broker transport",
            )?,
            receives: IntCounter::new(
                "switchboard_adapter_receives_total",
                "Cluster messages received from the broker",
            )?,
            errors: IntCounterVec::new(
                Opts::new("switchboard_adapter_errors_total", "Cluster messages dropped, by why"),
                &["kind"],
            )?,
            reconnects: IntCounter::new(
                "switchboard_adapter_reconnects_total",
                "Reconnections to the broker (all instances)",
            )?,
            connected: IntGauge::new("switchboard_adapter_connected", "1 while the broker link is up")?,
            nodes: IntGauge::new(
                "switchboard_cluster_nodes",
                "Nodes serving the main namespace, this one included",
            )?,
            info: {
                let info = IntGaugeVec::new(
                    Opts::new(
                        "switchboard_cluster_info",
                        "Always 1; the adapter and cluster prefix in the labels tell one cluster's nodes from another's",
                    ),
                    &["adapter", "prefix"],
                )?;
                info.with_label_values(&[cluster.backend_name(), cluster.prefix()]).set(1);
                info
            },
            cluster,
            scrape: Mutex::new(()),
        })
    }
}

/// Moves `counter` up to `total` (the adapter's monotonic count).
fn advance(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Collector for ClusterCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.publishes.desc(),
            self.receives.desc(),
            self.errors.desc(),
            self.reconnects.desc(),
            self.connected.desc(),
            self.nodes.desc(),
            self.info.desc(),
            self.cluster.publish_latency().desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _serial = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let h = self.cluster.health();
        advance(&self.publishes, h.stats.published);
        advance(&self.receives, h.stats.received);
        let errors = [
            h.stats.publish_failed,
            h.publish_lost,
            h.receive_dropped,
            h.stats.malformed,
            h.stats.forged,
            h.stats.unsupported,
            h.stats.unroutable,
        ];
        for (kind, total) in ERROR_KINDS.iter().zip(errors) {
            advance(&self.errors.with_label_values(&[kind]), total);
        }
        advance(&self.reconnects, h.reconnects);
        self.connected.set(i64::from(h.connected));
        self.nodes.set(i64::try_from(h.nodes).unwrap_or(i64::MAX));
        [
            self.publishes.collect(),
            self.receives.collect(),
            self.errors.collect(),
            self.reconnects.collect(),
            self.connected.collect(),
            self.nodes.collect(),
            self.info.collect(),
            self.cluster.publish_latency().collect(),
        ]
        .concat()
    }
}

/// Bounds of `switchboard_adapter_publish_duration_seconds`, from a local broker's tens of
/// microseconds to a stalled one's second.
const PUBLISH_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The publish latency histogram the transport observes (exported by [`ClusterCollector`]);
/// constant options, so building it cannot fail in practice.
pub(super) fn publish_latency() -> Histogram {
    let opts = HistogramOpts::new(
        "switchboard_adapter_publish_duration_seconds",
        "Time from a cluster message's publish to the broker taking it (Redis: the PUBLISH reply; NATS: the client's write queue)",
    )
    .buckets(PUBLISH_BUCKETS.to_vec());
    #[allow(clippy::expect_used)]
    Histogram::with_opts(opts).expect("constant histogram options are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Backend;

    #[tokio::test]
    async fn a_node_exports_its_cluster_link_and_which_cluster_it_is_in() {
        let cluster = Cluster::connect(&Backend::Memory, "n1", "blue", None).await.map(Arc::new);
        let Ok(cluster) = cluster else { panic!("the in-memory adapter always connects") };
        let registry = prometheus::Registry::new();
        assert!(cluster.register_metrics(&registry).is_ok());
        let text = crate::metrics::rendered(&registry);
        for line in [
            r#"switchboard_cluster_info{adapter="memory",prefix="blue"} 1"#,
            "switchboard_adapter_connected 1",
            "switchboard_cluster_nodes 1",
            "# TYPE switchboard_adapter_publishes_total counter",
            "# TYPE switchboard_adapter_errors_total counter",
            "# TYPE switchboard_adapter_publish_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
