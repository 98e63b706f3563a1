//! Figures over repeated runs, once: the median, the spread (min–max and the confidence
//! interval of the median) and the one test of whether two sets of runs differ beyond
//! their noise. `--repeat`, `compare`, `ab` and `--find-max-rate` all use these.
//!
//! The interval is the order-statistic CI of the median: with the runs sorted, the
//! interval [x(j), x(n+1−j)] covers the true median with probability
//! 1 − 2·P(Binomial(n, ½) < j). The widest j whose coverage is at least 95% is taken;
//! with fewer than 6 runs no interval reaches 95%, so min–max is taken and its coverage
//! (1 − 2⁻⁽ⁿ⁻¹⁾) is stated instead. Two sets of runs differ beyond the noise when their
//! intervals do not overlap: with up to 5 runs a side, when every run of one beats every
//! run of the other. One run stands apart from the others of its set only when it lies
//! beyond their range by more than their spread ([`stands_apart`]).
//!
//! Invariant: values that are not finite are left out of every figure (they have no
//! order); an empty set has the default (all zero) spread.

use serde::{Deserialize, Serialize};

/// One figure across runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median of the runs' values (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The confidence interval of the median: its lower end.
    pub ci_low: f64,
    /// Its upper end.
    pub ci_high: f64,
}

/// The finite values, sorted.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let v = sorted(values);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The order-statistic interval of the median for `n` runs: (j, coverage), the interval
/// being the j-th smallest to the j-th largest (1-based).
pub fn median_ci_rank(n: usize) -> (usize, f64) {
    if n < 2 {
        return (1, 0.0);
    }
    // P(Binomial(n, 1/2) <= k), summed exactly in f64 (n ≤ 1000: ab's most runs).
    let mut pmf = 0.5f64.powi(n.min(i32::MAX as usize) as i32);
    let mut cdf = Vec::with_capacity(n + 1);
    let mut acc = 0.0;
    for k in 0..=n {
        acc += pmf;
        cdf.push(acc);
        pmf = pmf * (n - k) as f64 / (k + 1) as f64;
    }
    let coverage = |j: usize| 1.0 - 2.0 * cdf[j - 1];
    let mut best = 1;
    for j in 1..=n.div_ceil(2) {
        if coverage(j) >= 0.95 {
            best = j;
        }
    }
    (best, coverage(best))
}

impl Spread {
    /// The spread of `values`.
    pub fn of(values: &[f64]) -> Spread {
        let v = sorted(values);
        if v.is_empty() {
            return Spread::default();
        }
        let (j, _) = median_ci_rank(v.len());
        Spread {
            median: median(&v),
            min: v[0],
            max: v[v.len() - 1],
            ci_low: v[j - 1],
            ci_high: v[v.len() - j],
        }
    }
}

/// Whether two sets of runs differ beyond their noise ([`differs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// A side has a single run: noise cannot be told from change.
    Unknown,
    /// The two medians' intervals overlap: within the noise the runs show.
    Within,
    /// The intervals are apart: the second set's is above the first's.
    Above,
    /// The intervals are apart: the second set's is below the first's.
    Below,
}

impl Difference {
    /// The difference is beyond the noise (either way).
    pub fn is_real(self) -> bool {
        matches!(self, Difference::Above | Difference::Below)
    }
}

/// The one noise test: how the runs behind `b` (`b_runs` of them) compare with those
/// behind `a` (`a_runs`): apart when the confidence intervals of the two medians do not
/// overlap; unknown when either side has fewer than two runs.
pub fn differs(a: &Spread, a_runs: usize, b: &Spread, b_runs: usize) -> Difference {
    if a_runs < 2 || b_runs < 2 {
        Difference::Unknown
    } else if b.ci_low > a.ci_high {
        Difference::Above
    } else if b.ci_high < a.ci_low {
        Difference::Below
    } else {
        Difference::Within
    }
}

/// The least factor by which one run must differ from the median of the others to stand
/// apart from them ([`stands_apart`]).
pub const APART_FACTOR: f64 = 1.25;

/// Whether one run (`value`) stands apart from `others` (the rest of its set): beyond
/// their range by more than the range's own width, and off their median by more than
/// [`APART_FACTOR`]; unknown with fewer than two others. "Outside the others' range" is
/// no test for one run: one of n like runs is the highest or lowest by chance 2 in n
/// times, and the range of two or three runs is often narrow (a third run falls beyond
/// two runs' range by its width one time in three). The factor keeps the noise of a
/// busy machine (a run 10–20% off) from being called apart, and keeps what this is for:
/// a first run 1.5–4× slower than the rest.
pub fn stands_apart(value: f64, others: &[f64]) -> Difference {
    let o = Spread::of(others);
    if !value.is_finite() || others.iter().filter(|x| x.is_finite()).count() < 2 || o.median <= 0.0 {
        return Difference::Unknown;
    }
    let width = o.max - o.min;
    if value > o.max + width && value > o.median * APART_FACTOR {
        Difference::Above
    } else if value < o.min - width && value < o.median / APART_FACTOR {
        Difference::Below
    } else {
        Difference::Within
    }
}

/// The coverage of the intervals [`differs`] compares, for `runs` runs (0 below two).
pub fn coverage(runs: usize) -> f64 {
    median_ci_rank(runs).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_order_statistic_intervals() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0, "what has no order is left out");
        assert_eq!(median(&[]), 0.0);
        // Five runs: min–max covers the median with 1 − 2/32.
        let (j, c) = median_ci_rank(5);
        assert_eq!(j, 1);
        assert!((c - 0.9375).abs() < 1e-12);
        // Six runs reach 96.9% with min–max; ten runs give the 2nd..9th (97.9%).
        assert!((median_ci_rank(6).1 - 0.96875).abs() < 1e-12);
        assert_eq!(median_ci_rank(10).0, 2);
        assert!(median_ci_rank(10).1 >= 0.95);
        assert_eq!(median_ci_rank(1), (1, 0.0));
        let s = Spread::of(&[5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0]);
        assert_eq!((s.median, s.min, s.max, s.ci_low, s.ci_high), (5.5, 1.0, 10.0, 2.0, 9.0));
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn a_difference_only_beyond_the_noise() {
        let of = |v: &[f64]| (Spread::of(v), v.len());
        let test = |a: &[f64], b: &[f64]| {
            let ((sa, na), (sb, nb)) = (of(a), of(b));
            differs(&sa, na, &sb, nb)
        };
        assert_eq!(test(&[100.0, 110.0], &[50.0, 55.0]), Difference::Below);
        assert_eq!(test(&[50.0, 55.0], &[100.0, 110.0]), Difference::Above);
        assert_eq!(test(&[100.0, 110.0, 90.0], &[105.0, 95.0, 112.0]), Difference::Within);
        assert_eq!(test(&[100.0], &[10.0]), Difference::Unknown, "one run shows no difference");
        // Ten runs a side: the 2nd..9th runs bound the median, so one outlier does not
        // hide a shift that min–max would.
        let a: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i)).collect();
        let mut b: Vec<f64> = (0..10).map(|i| 120.0 + f64::from(i)).collect();
        b[0] = 50.0;
        assert_eq!(test(&a, &b), Difference::Above);
        assert!(Difference::Below.is_real() && !Difference::Within.is_real());
    }

    #[test]
    fn one_run_stands_apart_only_beyond_the_others_spread() {
        // A first run 3× slower than four like runs, or 1.5× faster than two.
        assert_eq!(stands_apart(1000.0, &[3000.0, 3050.0, 2980.0, 3020.0]), Difference::Below);
        assert_eq!(stands_apart(4500.0, &[3000.0, 3050.0]), Difference::Above);
        // Beyond the others' range but within its width: chance.
        assert_eq!(stands_apart(2000.0, &[3000.0, 4500.0, 3500.0]), Difference::Within);
        // Beyond it by more than its width, but less than 1.25× off: the noise of a busy
        // machine, not a cold server.
        assert_eq!(stands_apart(2500.0, &[3000.0, 3010.0]), Difference::Within);
        assert_eq!(stands_apart(2390.0, &[3000.0, 3010.0]), Difference::Below);
        assert_eq!(stands_apart(1.0, &[3000.0]), Difference::Unknown, "one other run is no spread");
        assert_eq!(stands_apart(f64::NAN, &[1.0, 2.0]), Difference::Unknown);
        assert_eq!(stands_apart(1.0, &[0.0, 0.0]), Difference::Unknown, "no median to be off");
    }
}
