//! The one Prometheus registry a node exports on `/metrics` (`switchboard_*`, listed in
//! `docs/metrics.md`), and the helper each layer registers its own metrics with.
//!
//! Each layer owns its metrics (`engine::metrics`, `socketio::metrics`, `http::metrics`,
//! `cluster::metrics`) and registers them into the registry its engine was built with, so a
//! process with several engines (tests) never shares counters. Labels are low-cardinality only
//! (transport, close reason, error code, namespace): nothing per socket or room. Hot paths hold
//! pre-resolved label children, so counting is one atomic add.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};

pub use prometheus::Registry;

/// The text exposition of every metric in `registry`, as `/metrics` serves it.
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * 1024);
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

/// Creates metrics and registers them in one registry.
///
/// Names, help texts and labels are constants, so building a metric can only fail on a
/// programming error (a bad name), which each layer's unit test hits on every metric: hence
/// `expect`. Registering fails when the name is already taken in the registry (one layer built
/// twice on one engine): the metric then still counts but is not exported, and a warning says so.
pub(crate) struct Registrar<'a>(pub(crate) &'a Registry);

#[allow(clippy::expect_used)]
impl Registrar<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        if let Err(e) = self.0.register(Box::new(c.clone())) {
            tracing::warn!(error = %e, "a metric is registered twice: the second copy is not exported");
        }
        c
    }

    /// A counter without labels.
    pub(crate) fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    /// A gauge without labels.
    pub(crate) fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"))
    }

    /// A counter with `labels`.
    pub(crate) fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A gauge with `labels`.
    pub(crate) fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A histogram with these bucket bounds.
    pub(crate) fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric"),
        )
    }
}

/// Test support: the rendered registry as text, and whether a metric family is in it.
#[cfg(test)]
pub(crate) fn rendered(registry: &Registry) -> String {
    String::from_utf8(render(registry)).unwrap_or_default()
}
