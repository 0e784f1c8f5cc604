//! Whether a series sampled over a long run (a server's RSS, its open file descriptors) still grows once
//! the warm-up is over: a least-squares line through the samples after the warm-up, its slope per
//! 10 minutes, and its rise from the warm-up's end to the last sample as a share of where it started.
//!
//! The fitted line, not the first and last samples, carries the verdict: a churning load makes single
//! samples jump by the connections in flight, while a leak shows as a slope that noise cannot fake over
//! hundreds of samples. The soak ([`crate::soak`]) compares the rise with its bounds.

use serde::Serialize;

/// Seconds in the slope's unit of time: rates per 10 minutes read better than per second.
const SLOPE_SPAN_S: f64 = 600.0;

/// How one series moved over a run; values are in the series' own unit (KiB, descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    /// The first sample at or after the end of the warm-up.
    pub at_warmup: f64,
    /// The last sample.
    pub at_end: f64,
    /// The largest sample of the whole run, warm-up included.
    pub max: f64,
    /// The largest sample after the warm-up.
    pub max_after_warmup: f64,
    /// Slope of the least-squares line through the samples after the warm-up, per 10 minutes.
    pub slope_per_10min: f64,
    /// Rise of that line from the first to the last sample after the warm-up, in % of its value at the
    /// first (infinite if it starts at zero and rises).
    pub growth_pct: f64,
    /// Samples after the warm-up the line was fitted to.
    pub samples: usize,
}

impl Drift {
    /// Whether the fitted rise stays at or under `bound_pct` per cent.
    pub fn within(&self, bound_pct: f64) -> bool {
        self.growth_pct <= bound_pct
    }
}

/// The drift of `points` (seconds since the start, value) after `warmup_s`; `None` when fewer than two
/// samples at distinct times follow the warm-up, which is too little to fit a line to.
pub fn drift(points: &[(f64, f64)], warmup_s: f64) -> Option<Drift> {
    let after: Vec<(f64, f64)> =
        points.iter().copied().filter(|&(t, v)| t >= warmup_s && t.is_finite() && v.is_finite()).collect();
    let &(t0, at_warmup) = after.first()?;
    let &(t1, at_end) = after.last()?;
    let (intercept, slope) = least_squares(&after)?;
    let fitted_start = intercept + slope * t0;
    let rise = slope * (t1 - t0);
    let growth_pct = if fitted_start > 0.0 {
        rise / fitted_start * 100.0
    } else if rise > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let max_of = |p: &[(f64, f64)]| p.iter().map(|&(_, v)| v).fold(f64::NEG_INFINITY, f64::max);
    Some(Drift {
        at_warmup,
        at_end,
        max: max_of(points),
        max_after_warmup: max_of(&after),
        slope_per_10min: slope * SLOPE_SPAN_S,
        growth_pct,
        samples: after.len(),
    })
}

/// The line `v = a + b·t` closest to the points in the least-squares sense, as `(a, b)`; `None` for
/// fewer than two distinct times.
pub fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    // Centred sums, which stay exact enough for hour-long runs sampled in seconds.
    let mean_t = points.iter().map(|&(t, _)| t).sum::<f64>() / n;
    let mean_v = points.iter().map(|&(_, v)| v).sum::<f64>() / n;
    let (mut stt, mut stv) = (0.0, 0.0);
    for &(t, v) in points {
        stt += (t - mean_t) * (t - mean_t);
        stv += (t - mean_t) * (v - mean_v);
    }
    if stt <= 0.0 {
        return None;
    }
    let slope = stv / stt;
    Some((mean_v - slope * mean_t, slope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    /// One sample every 10 s for an hour, from `value(t)`.
    fn hour(value: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=360).map(|i| f64::from(i) * 10.0).map(|t| (t, value(t))).collect()
    }

    #[test]
    fn fits_a_line_exactly() {
        let (a, b) = least_squares(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap_or_default();
        assert!(close(a, 1.0) && close(b, 2.0), "{a} {b}");
        assert_eq!(least_squares(&[(5.0, 1.0)]), None);
        assert_eq!(least_squares(&[(5.0, 1.0), (5.0, 2.0)]), None);
    }

    #[test]
    fn a_flat_series_with_churn_noise_does_not_grow() {
        // ±20 descriptors of connections in flight around 2,100, alternating.
        let points = hour(|t| 2_100.0 + if (t / 10.0) as u64 % 2 == 0 { 20.0 } else { -20.0 });
        let d = drift(&points, 300.0).unwrap_or_else(|| panic!("no drift"));
        assert!(d.growth_pct.abs() < 0.1, "{d:?}");
        assert!(d.within(1.0));
        assert_eq!(d.samples, 331);
        assert_eq!((d.max, d.max_after_warmup), (2_120.0, 2_120.0));
    }

    #[test]
    fn a_steady_leak_gives_its_slope_and_growth() {
        // 100 MiB at the warm-up's end, +1 MiB (1,024 KiB) every 10 minutes.
        let points = hour(|t| 102_400.0 + (t - 300.0) * 1_024.0 / 600.0);
        let d = drift(&points, 300.0).unwrap_or_else(|| panic!("no drift"));
        assert!(close(d.slope_per_10min, 1_024.0), "{d:?}");
        // 55 minutes after the warm-up: 5.5 MiB on 100 MiB.
        assert!(close(d.growth_pct, 5.5), "{d:?}");
        assert!(!d.within(5.0) && d.within(6.0));
        assert!(close(d.at_warmup, 102_400.0) && close(d.at_end, 102_400.0 + 5.5 * 1_024.0));
    }

    #[test]
    fn the_warm_up_is_left_out() {
        // Doubling during the warm-up (allocator and buffers filling up), flat afterwards.
        let points = hour(|t| if t < 300.0 { 50_000.0 + t * 200.0 } else { 110_000.0 });
        let d = drift(&points, 300.0).unwrap_or_else(|| panic!("no drift"));
        assert!(close(d.growth_pct, 0.0) && close(d.slope_per_10min, 0.0), "{d:?}");
        assert_eq!(d.max, 110_000.0);
        // Counting from the start instead would see the ramp.
        let from_start = drift(&points, 0.0).unwrap_or_else(|| panic!("no drift"));
        assert!(from_start.growth_pct > 10.0, "{from_start:?}");
    }

    #[test]
    fn too_few_samples_after_the_warm_up_give_no_verdict() {
        assert_eq!(drift(&[(0.0, 1.0), (10.0, 1.0), (300.0, 1.0)], 300.0), None);
        assert_eq!(drift(&[], 0.0), None);
    }

    #[test]
    fn growth_from_zero_is_unbounded() {
        let d = drift(&[(0.0, 0.0), (10.0, 1.0)], 0.0).unwrap_or_else(|| panic!("no drift"));
        assert!(d.growth_pct.is_infinite() && !d.within(1e9));
        let flat = drift(&[(0.0, 0.0), (10.0, 0.0)], 0.0).unwrap_or_else(|| panic!("no drift"));
        assert!(flat.within(0.0));
    }
}
