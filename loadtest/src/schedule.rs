//! The open-model schedule: send times fixed in advance at a constant total rate, spread over the
//! connections, so a slow answer never delays the next request (no coordinated omission). Latency is
//! measured from these times, not from when the send actually happened.

/// One planned send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When it should leave, in [`crate::clock`] nanoseconds.
    pub at: u64,
    /// Whether it falls in the measured window (after the warm-up).
    pub measured: bool,
}

/// The send times of one connection: the global sequence `start + n / rate` for `n < rate × length`,
/// dealt round-robin, so connection `rank` of `slots` takes `n = rank, rank + slots, …`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: u64,
    interval_ns: f64,
    slots: u64,
    next: u64,
    warmup_end: u64,
    end: u64,
}

impl Schedule {
    /// The schedule of connection `rank` among `slots`, at `rate` sends per second in total, from `start`
    /// for `warmup_ns` (not measured) then `duration_ns` (measured).
    pub fn new(start: u64, rate: f64, slots: u64, rank: u64, warmup_ns: u64, duration_ns: u64) -> Self {
        Self {
            start,
            interval_ns: 1e9 / rate,
            slots: slots.max(1),
            next: rank,
            warmup_end: start.saturating_add(warmup_ns),
            end: start.saturating_add(warmup_ns).saturating_add(duration_ns),
        }
    }

    /// The next planned send, or `None` once the schedule has run out.
    pub fn peek(&self) -> Option<Planned> {
        let at = self.start.saturating_add((self.next as f64 * self.interval_ns) as u64);
        (at < self.end).then_some(Planned { at, measured: at >= self.warmup_end })
    }

    /// Moves past the send [`Schedule::peek`] returned.
    pub fn advance(&mut self) {
        self.next += self.slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut s: Schedule) -> Vec<Planned> {
        let mut out = Vec::new();
        while let Some(p) = s.peek() {
            out.push(p);
            s.advance();
        }
        out
    }

    #[test]
    fn connections_share_one_evenly_spaced_sequence() {
        // 1000/s over 3 connections for 0.1 s warm-up + 0.2 s: 300 sends, 1 ms apart, 200 measured.
        let (start, ms) = (5_000_000_000, 1_000_000);
        let mut times: Vec<Planned> =
            (0..3).flat_map(|rank| all(Schedule::new(start, 1000.0, 3, rank, 100 * ms, 200 * ms))).collect();
        times.sort_by_key(|p| p.at);
        assert_eq!(times.len(), 300);
        for (n, p) in times.iter().enumerate() {
            assert_eq!(p.at, start + n as u64 * ms);
            assert_eq!(p.measured, n >= 100);
        }
    }

    #[test]
    fn each_connection_sends_at_its_own_pace() {
        let mine = all(Schedule::new(0, 100.0, 4, 1, 0, 1_000_000_000));
        assert_eq!(mine.len(), 25);
        assert_eq!(mine[0].at, 10_000_000);
        assert!(mine.windows(2).all(|w| w[1].at - w[0].at == 40_000_000));
        assert!(all(Schedule::new(0, 100.0, 4, 1, 0, 0)).is_empty());
    }
}
