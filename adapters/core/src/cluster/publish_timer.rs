//! [`PublishTimer`]: how a transport reports how long its published messages waited before the
//! broker took them, so a node can export a publish latency histogram without the adapter crates
//! depending on a metrics library.

use std::sync::Arc;
use std::time::Duration;

/// Called once per published message with the time from [`Transport::publish`](super::Transport::publish)
/// to the broker taking it (what that means is the transport's to document). Cheap to clone; the
/// default observes nothing.
#[derive(Clone, Default)]
pub struct PublishTimer(Option<Arc<dyn Fn(Duration) + Send + Sync>>);

impl std::fmt::Debug for PublishTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PublishTimer").field(&self.0.is_some()).finish()
    }
}

impl PublishTimer {
    /// A timer that hands every observation to `observe` (a histogram's `observe`, say).
    pub fn new(observe: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(observe)))
    }

    /// Whether anything listens: a transport skips reading the clock when nothing does.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Reports one message's publish latency.
    pub fn observe(&self, latency: Duration) {
        if let Some(observe) = &self.0 {
            observe(latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn hands_observations_to_its_callback_and_the_default_drops_them() {
        let total = Arc::new(AtomicU64::new(0));
        let sum = total.clone();
        let timer = PublishTimer::new(move |d| {
            sum.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        });
        assert!(timer.is_enabled());
        timer.clone().observe(Duration::from_micros(250));
        timer.observe(Duration::from_micros(50));
        assert_eq!(total.load(Ordering::Relaxed), 300);
        let none = PublishTimer::default();
        assert!(!none.is_enabled());
        none.observe(Duration::from_secs(1));
        assert_eq!(format!("{none:?}"), "PublishTimer(false)");
    }
}
