//! Latency histograms (HdrHistogram, microseconds, 3 significant digits) shared by every connection task:
//! a few shards, each behind its own mutex, so tasks on different worker threads rarely meet.

use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::SetupError;

/// Highest latency recorded as itself (an hour, in µs); larger values are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram that many tasks record into.
#[derive(Debug)]
pub struct Recorder {
    shards: Box<[Mutex<Histogram<u64>>]>,
}

impl Recorder {
    /// A recorder with `shards` histograms (one per worker thread or a few more is plenty).
    pub fn new(shards: usize) -> Result<Self, SetupError> {
        let shards = (0..shards.max(1))
            .map(|_| Histogram::new_with_bounds(1, MAX_MICROS, 3).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { shards: shards.into_boxed_slice() })
    }

    /// Records a latency in nanoseconds; `key` (e.g. the connection's rank) picks the shard.
    pub fn record(&self, key: usize, nanos: u64) {
        let shard = &self.shards[key % self.shards.len()];
        let micros = nanos.div_ceil(1_000).max(1);
        shard.lock().unwrap_or_else(PoisonError::into_inner).saturating_record(micros);
    }

    /// The merged percentiles.
    pub fn summary(&self) -> Summary {
        let mut merged: Option<Histogram<u64>> = None;
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            match merged.as_mut() {
                None => merged = Some(shard.clone()),
                Some(m) => {
                    // Same bounds everywhere, so adding cannot fail; a failure would only drop samples.
                    let _ = m.add(&*shard);
                }
            }
        }
        merged.map_or_else(Summary::default, |h| Summary::of(&h))
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1_000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_summary() -> Result<(), SetupError> {
        let recorder = Recorder::new(4)?;
        // 1..=1000 µs, spread over the shards.
        for (i, micros) in (1..=1000u64).enumerate() {
            recorder.record(i, micros * 1_000);
        }
        let s = recorder.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p99_ms - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.p999_ms - 0.999).abs() < 0.002, "{s:?}");
        assert!((s.max_ms - 1.0).abs() < 0.002, "{s:?}");
        assert_eq!(Recorder::new(1)?.summary(), Summary::default());
        Ok(())
    }

    #[test]
    fn sub_microsecond_samples_count_as_one_microsecond() -> Result<(), SetupError> {
        let recorder = Recorder::new(1)?;
        recorder.record(0, 10);
        assert_eq!(recorder.summary().max_ms, 0.001);
        Ok(())
    }
}
