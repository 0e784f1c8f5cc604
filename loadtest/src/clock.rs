//! One monotonic clock for the whole process, in nanoseconds, so a timestamp the publisher writes into a
//! message can be compared with the time any receiver task reads it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the clock's origin (its first use in this process).
pub fn now_ns() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The tokio instant of a clock reading, to sleep until a scheduled time.
pub fn instant(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(origin() + Duration::from_nanos(ns))
}

/// A duration in clock nanoseconds (saturating), for adding to readings.
pub fn ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
