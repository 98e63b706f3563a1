//! Service-level objectives: `p99<1ms,errors<0.1%` parsed into clauses, and the one
//! place a run's figures are judged against them. `--max-p99` and `--max-error-rate`
//! are sugar for a clause each ([`Slo::from_flags`]), so a threshold run and a
//! `--find-max-rate` step are checked by the same code.
//!
//! Invariant: a clause holds when the figure is at most its limit (`<` and `<=` read
//! the same: latency is recorded to a histogram bucket, so the difference cannot be
//! measured); every clause names itself in its failure message.

use crate::hist::Hist;
use std::fmt;
use std::time::Duration;

/// What a clause constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median latency from the intended send time.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest latency.
    Max,
    /// Failed messages ÷ (answered + failed).
    Errors,
    /// Lost datagrams ÷ datagrams sent.
    Loss,
}

impl Metric {
    /// The name as written in an SLO.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Max => "max",
            Metric::Errors => "errors",
            Metric::Loss => "loss",
        }
    }

    /// Whether the limit is a latency (ns) rather than a fraction.
    pub fn is_latency(self) -> bool {
        !matches!(self, Metric::Errors | Metric::Loss)
    }

    /// The quantile of a latency metric (1.0 for max).
    pub fn quantile(self) -> f64 {
        match self {
            Metric::P50 => 0.5,
            Metric::P90 => 0.9,
            Metric::P99 => 0.99,
            Metric::P999 => 0.999,
            _ => 1.0,
        }
    }

    fn parse(text: &str) -> Option<Metric> {
        Some(match text {
            "p50" | "median" => Metric::P50,
            "p90" => Metric::P90,
            "p99" => Metric::P99,
            "p99.9" | "p999" => Metric::P999,
            "max" => Metric::Max,
            "errors" | "error" | "error_rate" => Metric::Errors,
            "loss" => Metric::Loss,
            _ => return None,
        })
    }
}

/// One clause: `metric < limit`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Clause {
    /// What is constrained.
    pub metric: Metric,
    /// The limit: nanoseconds for latency, a fraction (0.001 = 0.1%) for errors and loss.
    pub limit: f64,
    /// The flag the clause came from (`--max-p99`), when it was not written in `--slo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flag {
            Some(flag) => write!(f, "{flag} {}", self.limit_text()),
            None => write!(f, "{}<{}", self.metric.name(), self.limit_text()),
        }
    }
}

impl Clause {
    fn limit_text(&self) -> String {
        if self.metric.is_latency() {
            crate::units::ns(self.limit)
        } else {
            crate::units::percent(self.limit)
        }
    }
}

/// An open loop's client is behind its schedule when it hands out more than 1% of its
/// messages later than this after their intended send time (the p99 of its send lag);
/// an SLO judges against a tenth of its tightest latency bound instead
/// ([`Slo::lag_limit`]). Its own delay is then in the latency figures, and they say more
/// of the client than of the target.
pub const LAG_LIMIT: Duration = Duration::from_micros(100);

/// How an open loop's client kept to its schedule: how late it handed its messages out
/// (p99 of the send lag, from each message's intended send time) against the limit it
/// is judged by ([`LAG_LIMIT`], or a tenth of an SLO's tightest latency bound, [`Slo::lag_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// p99 of the send lag, ns.
    pub lag_p99_ns: u64,
    /// The most p99 lag that still counts as keeping up, ns.
    pub limit_ns: u64,
}

impl Schedule {
    /// An open loop's schedule from the p99 of its send lag (ns), judged against `limit`.
    pub fn new(lag_p99_ns: u64, limit: Duration) -> Schedule {
        Schedule { lag_p99_ns, limit_ns: u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX) }
    }

    /// The one behind-schedule test: the client fell behind its schedule when the p99
    /// of its send lag passed the limit; its own delay is then in the latency figures.
    pub fn behind(&self) -> bool {
        self.lag_p99_ns > self.limit_ns
    }
}

/// The least send-lag limit an SLO sets ([`Slo::lag_limit`]): below this an idle
/// client's own timer wake-ups (5–20 µs at p99 on a quiet machine) would fail every step.
pub const MIN_LAG_LIMIT: Duration = Duration::from_micros(50);

/// A service-level objective: every clause must hold.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Slo {
    /// The clauses, in the order written.
    pub clauses: Vec<Clause>,
}

/// A bad `--slo`, naming the clause at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--slo: clause {clause:?}: {problem}")]
pub struct SloError {
    /// The clause as written.
    pub clause: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The figures a clause is judged on: one run's, or the medians of repeated runs'.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Median latency, ns.
    pub p50: f64,
    /// 90th percentile, ns.
    pub p90: f64,
    /// 99th percentile, ns.
    pub p99: f64,
    /// 99.9th percentile, ns.
    pub p999: f64,
    /// Largest, ns.
    pub max: f64,
    /// Failed ÷ (answered + failed).
    pub errors: f64,
    /// Lost datagrams ÷ sent (0 for streams).
    pub loss: f64,
}

impl Point {
    /// The figures of one run: its corrected latency histogram, error rate, and
    /// datagrams lost of those sent.
    pub fn of(latency: &Hist, error_rate: f64, lost: u64, sent: u64) -> Point {
        let q = |q: f64| latency.value_at_quantile(q) as f64;
        Point {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: latency.max() as f64,
            errors: error_rate,
            loss: if sent == 0 { 0.0 } else { lost as f64 / sent as f64 },
        }
    }

    /// The figure a metric names.
    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::P50 => self.p50,
            Metric::P90 => self.p90,
            Metric::P99 => self.p99,
            Metric::P999 => self.p999,
            Metric::Max => self.max,
            Metric::Errors => self.errors,
            Metric::Loss => self.loss,
        }
    }
}

impl Slo {
    /// The most send lag (p99) an open loop's client may show and still count as keeping
    /// to its schedule while this SLO is judged: a tenth of the tightest latency bound,
    /// so the client's own delay stays small beside what is measured, but never below
    /// [`MIN_LAG_LIMIT`] (a client's wake-up alone takes microseconds);
    /// [`LAG_LIMIT`] when no clause bounds latency.
    pub fn lag_limit(&self) -> Duration {
        self.clauses
            .iter()
            .filter(|c| c.metric.is_latency())
            .map(|c| c.limit)
            .reduce(f64::min)
            .map_or(LAG_LIMIT, |ns| Duration::from_nanos((ns / 10.0) as u64).max(MIN_LAG_LIMIT))
    }

    /// Parses `p99<1ms,errors<0.1%`: clauses separated by commas, each `METRIC<LIMIT`
    /// (or `<=`); metrics p50, p90, p99, p99.9, max (a duration: `500us`, `1ms`), errors
    /// and loss (`0.1%` or `0.001`).
    pub fn parse(text: &str) -> Result<Slo, SloError> {
        let mut clauses = Vec::new();
        for raw in text.split(',') {
            let written = raw.trim();
            let bad = |problem: String| SloError { clause: written.to_owned(), problem };
            if written.is_empty() {
                return Err(bad("empty clause (write clauses as p99<1ms,errors<0.1%)".into()));
            }
            let (name, limit) = match written.split_once("<=").or_else(|| written.split_once('<')) {
                Some(parts) => parts,
                None if written.contains('>') => {
                    return Err(bad("an SLO is an upper bound: write METRIC<LIMIT".into()));
                }
                None => return Err(bad("expected METRIC<LIMIT, e.g. p99<1ms or errors<0.1%".into())),
            };
            let name = name.trim().to_ascii_lowercase();
            let metric = Metric::parse(&name).ok_or_else(|| {
                bad(format!("unknown metric {name:?} (known: p50, p90, p99, p99.9, max, errors, loss)"))
            })?;
            let limit = limit.trim();
            let value = if metric.is_latency() {
                let d = ringecho::units::parse_duration(limit)
                    .map_err(|_| bad(format!("{limit:?} is not a duration (e.g. 500us, 1ms, 2.5ms)")))?;
                if d.is_zero() {
                    return Err(bad("a latency limit must be above 0".into()));
                }
                d.as_nanos() as f64
            } else {
                crate::units::parse_fraction(limit)
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| bad(format!("{limit:?} is not a share between 0% and 100% (e.g. 0.1%)")))?
            };
            if clauses.iter().any(|c: &Clause| c.metric == metric) {
                return Err(bad(format!("{} is constrained twice", metric.name())));
            }
            clauses.push(Clause { metric, limit: value, flag: None });
        }
        Ok(Slo { clauses })
    }

    /// The clauses of `--max-p99` and `--max-error-rate`.
    pub fn from_flags(max_p99: Option<Duration>, max_error_rate: Option<f64>) -> Slo {
        let mut clauses = Vec::new();
        if let Some(d) = max_p99 {
            clauses.push(Clause {
                metric: Metric::P99,
                limit: d.as_nanos() as f64,
                flag: Some("--max-p99".into()),
            });
        }
        if let Some(r) = max_error_rate {
            clauses.push(Clause { metric: Metric::Errors, limit: r, flag: Some("--max-error-rate".into()) });
        }
        Slo { clauses }
    }

    /// This SLO and `other`'s clauses together (a metric in both keeps the stricter).
    pub fn and(mut self, other: Slo) -> Slo {
        for c in other.clauses {
            match self.clauses.iter_mut().find(|s| s.metric == c.metric) {
                Some(s) if c.limit < s.limit => *s = c,
                Some(_) => {}
                None => self.clauses.push(c),
            }
        }
        self
    }

    /// No clause at all.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// The clauses `point` breaks, each as a sentence (`p99 1.52ms > --max-p99 1.00ms`,
    /// `p99 1.52ms > p99<1.00ms`); empty when the SLO is met.
    pub fn breaches(&self, point: &Point) -> Vec<String> {
        self.clauses
            .iter()
            .filter(|c| point.get(c.metric) > c.limit)
            .map(|c| {
                let v = point.get(c.metric);
                let shown =
                    if c.metric.is_latency() { crate::units::ns(v) } else { crate::units::percent(v) };
                let sep = if c.flag.is_some() { " > " } else { " > SLO " };
                format!("{} {shown}{sep}{c}", c.metric.name())
            })
            .collect()
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> =
            self.clauses.iter().map(|c| Clause { flag: None, ..c.clone() }.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

/// clap's parser for `--slo`.
pub fn parse_slo(text: &str) -> Result<Slo, String> {
    Slo::parse(text).map_err(|e| e.to_string().trim_start_matches("--slo: ").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_parse() {
        let s = Slo::parse("p99<1ms,errors<0.1%").unwrap();
        assert_eq!(s.clauses.len(), 2);
        assert_eq!((s.clauses[0].metric, s.clauses[0].limit), (Metric::P99, 1e6));
        assert_eq!(s.clauses[1].metric, Metric::Errors);
        assert!((s.clauses[1].limit - 0.001).abs() < 1e-12);
        let s = Slo::parse(" p50 <= 200us , p99.9<5ms, max<1s, loss<1%, p90<2ms ").unwrap();
        let metrics: Vec<Metric> = s.clauses.iter().map(|c| c.metric).collect();
        assert_eq!(metrics, [Metric::P50, Metric::P999, Metric::Max, Metric::Loss, Metric::P90]);
        assert_eq!(s.clauses[0].limit, 200_000.0);
        assert_eq!(s.to_string(), "p50<200.0µs,p99.9<5.00ms,max<1.00s,loss<1%,p90<2.00ms");
    }

    #[test]
    fn the_lag_limit_is_a_tenth_of_the_tightest_latency_bound() {
        let limit = |t: &str| Slo::parse(t).unwrap().lag_limit();
        assert_eq!(limit("p99<1ms"), Duration::from_micros(100));
        assert_eq!(limit("p99.9<5ms,p50<800us,errors<1%"), Duration::from_micros(80));
        assert_eq!(limit("p99<200us"), MIN_LAG_LIMIT, "a tenth of 200 µs is below the floor");
        assert_eq!(limit("errors<0.1%"), LAG_LIMIT, "no latency bound");
    }

    #[test]
    fn bad_clauses_are_named() {
        for (text, clause, says) in [
            ("p99<1ms,p98<2ms", "p98<2ms", "unknown metric"),
            ("p99<fast", "p99<fast", "not a duration"),
            ("errors<lots", "errors<lots", "not a share"),
            ("errors<150%", "errors<150%", "not a share"),
            ("p99>1ms", "p99>1ms", "upper bound"),
            ("p99=1ms", "p99=1ms", "expected METRIC<LIMIT"),
            ("p99<1ms,", "", "empty clause"),
            ("p99<0ms", "p99<0ms", "above 0"),
            ("p99<1ms,p99<2ms", "p99<2ms", "twice"),
        ] {
            let e = Slo::parse(text).unwrap_err();
            assert_eq!(e.clause, clause, "{text}");
            assert!(e.problem.contains(says), "{text}: {e}");
            assert!(e.to_string().starts_with("--slo: clause"), "{e}");
        }
    }

    #[test]
    fn flags_are_clauses_and_judge_the_same() {
        let flags = Slo::from_flags(Some(Duration::from_millis(2)), Some(0.01));
        let point = Point { p99: 3e6, errors: 0.02, ..Point::default() };
        let b = flags.breaches(&point);
        assert_eq!(b, ["p99 3.00ms > --max-p99 2.00ms", "errors 2% > --max-error-rate 1%"]);
        let written = Slo::parse("p99<2ms").unwrap();
        assert_eq!(written.breaches(&point), ["p99 3.00ms > SLO p99<2.00ms"]);
        assert!(written.breaches(&Point { p99: 2e6, ..point }).is_empty(), "at the limit holds");
        let both = written.and(Slo::from_flags(Some(Duration::from_millis(1)), None));
        assert_eq!(both.clauses.len(), 1);
        assert_eq!(both.clauses[0].limit, 1e6, "the stricter limit wins");
    }

    proptest::proptest! {
        /// Any text parses or is refused naming a clause that is part of it; never a panic.
        #[test]
        fn any_text_parses_or_names_its_clause(text in "[ -~µ]{0,40}") {
            match Slo::parse(&text) {
                Ok(slo) => proptest::prop_assert!(!slo.clauses.is_empty()),
                Err(e) => proptest::prop_assert!(text.contains(e.clause.as_str())),
            }
        }
    }

    #[test]
    fn points_from_histograms() {
        let mut h = crate::hist::new();
        h.record_n(1_000, 99).unwrap();
        h.record(1_000_000).unwrap();
        let p = Point::of(&h, 0.0, 1, 100);
        assert!(p.p50 < 1_100.0 && p.max >= 999_000.0);
        assert_eq!(p.loss, 0.01);
    }
}
