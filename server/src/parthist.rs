//! The server's timed parts (`--timestamps`) as histograms with fixed buckets: four per octave from 256 ns to
//! 2³² ns (about 4.3 s), then one unbounded bucket. The bounds are [`BOUNDS_NS`], defined
//! once here; `--metrics` exposes them as `le` labels, and ringload reads a scrape back
//! against the same constant, so two readings always subtract bucket by bucket.
//!
//! A quantile read from such buckets is an estimate: linear within the bucket it falls
//! in, so it is off by at most the bucket's width, 19% of its value (2^¼ − 1). The mean
//! is exact (the sum is kept in nanoseconds).
//!
//! Invariant: a [`Histogram`] has exactly [`BUCKETS`] counts; one built from untrusted
//! figures ([`Histogram::from_parts`]) is refused otherwise, and a difference of two
//! ([`Histogram::since`]) is refused when any count went back.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets per octave (a doubling).
pub const PER_OCTAVE: u32 = 4;
/// The first bound is 2^8 ns.
const FIRST_OCTAVE: u32 = 8;
/// The last finite bound is 2^32 ns.
const LAST_OCTAVE: u32 = 32;

/// Finite bounds.
pub const FINITE: usize = ((LAST_OCTAVE - FIRST_OCTAVE) * PER_OCTAVE + 1) as usize;

/// Buckets: one per finite bound, and the last, unbounded one.
pub const BUCKETS: usize = FINITE + 1;

/// Each bucket's upper bound (inclusive), ns: 2^(8 + k/4) rounded, k = 0..=96
/// (256, 304, 362, 431, 512, …, 4,294,967,296). Bucket `i < FINITE` holds values above
/// `BOUNDS_NS[i - 1]` (above 0 for the first) up to `BOUNDS_NS[i]`; bucket `FINITE` the
/// rest.
pub const BOUNDS_NS: [u64; FINITE] = bounds();

const fn bounds() -> [u64; FINITE] {
    // 2^(f/4) in 2^30 fixed point, f = 0..3.
    const STEP: [u128; 4] = [1_073_741_824, 1_276_901_417, 1_518_500_250, 1_805_811_301];
    let mut out = [0u64; FINITE];
    let mut k = 0;
    while k < FINITE {
        let octave = FIRST_OCTAVE + k as u32 / PER_OCTAVE;
        let scaled = (1u128 << octave) * STEP[k % PER_OCTAVE as usize];
        out[k] = ((scaled + (1 << 29)) >> 30) as u64;
        k += 1;
    }
    out
}

/// The bucket a value of `ns` falls in.
pub fn bucket(ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// Why figures are no histogram of these buckets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistError {
    /// Not one count per bucket.
    #[error("{0} bucket counts, not {BUCKETS}")]
    Buckets(usize),
    /// A later reading has fewer in a bucket (or a smaller sum) than an earlier one.
    #[error("bucket {0} went back between two readings")]
    WentBack(usize),
    /// Counts too large to add up.
    #[error("the counts overflow")]
    Overflow,
}

/// Counts per bucket and the exact sum, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    counts: Vec<u64>,
    sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], sum_ns: 0 }
    }
}

impl Histogram {
    /// Counts (one per bucket, in [`BOUNDS_NS`] order, the unbounded one last) and their
    /// sum, as read from elsewhere (untrusted): refused unless there is one per bucket.
    pub fn from_parts(counts: Vec<u64>, sum_ns: u64) -> Result<Histogram, HistError> {
        if counts.len() != BUCKETS {
            return Err(HistError::Buckets(counts.len()));
        }
        counts.iter().try_fold(0u64, |a, c| a.checked_add(*c)).ok_or(HistError::Overflow)?;
        Ok(Histogram { counts, sum_ns })
    }

    /// Counts one value.
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// The counts, one per bucket.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The sum of every value counted, ns (saturating).
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// Adds `other` in (saturating).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// What was counted after `earlier`: refused when any count (or the sum) went back,
    /// which no reading of one server does.
    pub fn since(&self, earlier: &Histogram) -> Result<Histogram, HistError> {
        let counts = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .enumerate()
            .map(|(i, (b, a))| b.checked_sub(*a).ok_or(HistError::WentBack(i)))
            .collect::<Result<Vec<u64>, HistError>>()?;
        let sum_ns = self.sum_ns.checked_sub(earlier.sum_ns).ok_or(HistError::WentBack(BUCKETS))?;
        Histogram::from_parts(counts, sum_ns)
    }

    /// The value at quantile `q` (0..=1), ns, estimated from the buckets: linear within
    /// the bucket holding it, so within that bucket's width (19%) of the truth. A
    /// quantile in the unbounded bucket reads as its lower bound (at least 4.3 s).
    /// `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 || !q.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BOUNDS_NS[i - 1] as f64 };
                let Some(&upper) = BOUNDS_NS.get(i) else { return Some(lower) };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper as f64 - lower) * within);
            }
            below += n;
        }
        None
    }

    /// The exact mean, ns; `None` when nothing was counted.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ns as f64 / n as f64)
    }
}

/// A [`Histogram`] that one thread writes and any thread reads: each count is stored with
/// a relaxed load and store (a single writer needs no read-modify-write), so recording
/// costs what a plain increment does.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

impl AtomicHistogram {
    /// Counts one value; only the owning thread calls this.
    pub fn record(&self, ns: u64) {
        bump(&self.counts[bucket(ns)], 1);
        bump(&self.sum_ns, ns);
    }

    /// The counts now (each consistent by itself, not with the others).
    pub fn load(&self) -> Histogram {
        Histogram {
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// Adds `by` to a counter that only the calling thread writes.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).saturating_add(by), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounds_are_quarter_octaves() {
        assert_eq!(BUCKETS, 98);
        assert_eq!(BOUNDS_NS[..5], [256, 304, 362, 431, 512]);
        assert_eq!(BOUNDS_NS[FINITE - 1], 1 << 32);
        for (k, &b) in BOUNDS_NS.iter().enumerate() {
            let exact = 2f64.powf(8.0 + k as f64 / 4.0);
            assert!((b as f64 - exact).abs() <= 1.0, "{k}: {b} vs {exact}");
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn values_land_in_their_bucket() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(256), 0);
        assert_eq!(bucket(257), 1);
        assert_eq!(bucket(304), 1);
        assert_eq!(bucket(1 << 32), FINITE - 1);
        assert_eq!(bucket((1 << 32) + 1), FINITE);
        assert_eq!(bucket(u64::MAX), FINITE);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let mut h = Histogram::default();
        assert_eq!((h.quantile(0.5), h.mean()), (None, None));
        // 100 values in (431, 512]: the median is halfway through that bucket.
        for _ in 0..100 {
            h.record(500);
        }
        assert_eq!(h.quantile(0.5), Some(431.0 + 81.0 * 0.5));
        assert_eq!(h.quantile(1.0), Some(512.0));
        assert_eq!(h.mean(), Some(500.0));
        h.record(10_000_000_000);
        assert_eq!(h.quantile(1.0), Some((1u64 << 32) as f64), "the unbounded bucket reads as its floor");
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(f64::NAN), None);
    }

    #[test]
    fn differences_refuse_counts_that_went_back() {
        let mut a = Histogram::default();
        a.record(1000);
        let mut b = a.clone();
        b.record(2000);
        let d = b.since(&a).unwrap();
        assert_eq!((d.count(), d.sum_ns()), (1, 2000));
        assert_eq!(a.since(&b), Err(HistError::WentBack(bucket(2000))));
        assert_eq!(Histogram::from_parts(vec![1; 3], 0), Err(HistError::Buckets(3)));
        let mut huge = vec![0; BUCKETS];
        huge[0] = u64::MAX;
        huge[1] = 1;
        assert_eq!(Histogram::from_parts(huge, 0), Err(HistError::Overflow));
    }

    #[test]
    fn atomic_histogram_loads_what_was_recorded() {
        let a = AtomicHistogram::default();
        let mut h = Histogram::default();
        for v in [0, 300, 300, 5_000, 1 << 40] {
            a.record(v);
            h.record(v);
        }
        assert_eq!(a.load(), h);
    }

    proptest! {
        /// Every estimate lies in the bucket of the true quantile, so within 19% of it
        /// (or within 256 ns below the first bound).
        #[test]
        fn estimates_are_within_a_bucket(mut values in proptest::collection::vec(0u64..10_000_000_000, 1..400),
                                         q in 0.0f64..=1.0) {
            let mut h = Histogram::default();
            values.iter().for_each(|v| h.record(*v));
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let truth = values[rank - 1];
            let estimate = h.quantile(q).unwrap();
            let i = bucket(truth);
            let lower = if i == 0 { 0.0 } else { BOUNDS_NS[i - 1] as f64 };
            let upper = BOUNDS_NS.get(i).map_or(f64::INFINITY, |b| *b as f64);
            prop_assert!(estimate >= lower && estimate <= upper, "{estimate} outside ({lower}, {upper}] of {truth}");
            prop_assert_eq!(h.mean().unwrap(), values.iter().sum::<u64>() as f64 / values.len() as f64);
        }

        /// a.since(b) after merging b into a gives b back.
        #[test]
        fn merge_then_since(xs in proptest::collection::vec(0u64..u64::from(u32::MAX), 0..50),
                            ys in proptest::collection::vec(0u64..u64::from(u32::MAX), 0..50)) {
            let (mut a, mut b) = (Histogram::default(), Histogram::default());
            xs.iter().for_each(|v| a.record(*v));
            ys.iter().for_each(|v| b.record(*v));
            let mut both = a.clone();
            both.merge(&b);
            prop_assert_eq!(both.since(&a).unwrap(), b);
        }
    }
}
