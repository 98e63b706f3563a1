//! What the runs of `ringload ab` add up to: per side the median and the spread (min–max)
//! of each figure, B/A ratios with the spread of the run pairs and a verdict in words
//! (beyond the spread of the runs or within it), whether a client saturated, the
//! thresholds; rendered as text and as one JSON document that also carries every run's
//! own result document.
//!
//! Invariant: a ratio is called a difference only when the two sides' ranges over the
//! runs do not overlap (B's worst run beats A's best, or the reverse); with one run per
//! side nothing is called a difference.

use super::{AbPlan, RunRecord, Side};
use crate::plan::Model;
use crate::report::{ns, rate};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Version of the `ab` document's shape.
pub const AB_SCHEMA_VERSION: u64 = 1;
/// The `tool` of an `ab` document.
pub const AB_TOOL: &str = "ringload-ab";
/// Share of the client's CPUs busy over a run from which it counts as saturated (as in
/// a single run's `client_saturated` warning).
pub const SATURATED: f64 = 0.9;

/// The median and the range of one figure over a side's runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// Of `values`; all zero when there are none.
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Spread { median, min: v[0], max: v[n - 1] }
    }
}

/// One side's figures over its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideSummary {
    /// The server command.
    pub command: String,
    /// Runs that completed.
    pub runs: usize,
    /// Answered messages per second.
    pub msgs_per_s: Spread,
    /// Latency p50 from the intended send time, ns.
    pub p50_ns: Spread,
    /// Latency p99 from the intended send time, ns.
    pub p99_ns: Spread,
    /// Server CPU (utime + stime of its process group) per answered message, µs.
    pub server_cpu_us_per_msg: Spread,
    /// Share of the client's CPUs busy over the run.
    pub client_busy: Spread,
    /// Runs whose client limited them ([`super::RunRecord::client_saturated`]: at least
    /// 90% busy, or in an open loop behind its schedule): their figures are bounded by
    /// the client.
    pub client_saturated_runs: usize,
}

/// B against A for one figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// B's median ÷ A's median.
    pub ratio: f64,
    /// The smallest and largest B ÷ A of the runs paired in order (run i of B with run
    /// i of A): how much the ratio moves from run to run.
    pub pairs_min: f64,
    /// See `pairs_min`.
    pub pairs_max: f64,
    /// The two sides' ranges do not overlap: the difference is beyond the spread of the
    /// runs.
    pub beyond_spread: bool,
    /// The side that did better, when the difference is beyond the spread.
    pub better: Option<Side>,
    /// The verdict, in words.
    pub verdict: String,
}

/// B against A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Messages per second (higher is better).
    pub msgs_per_s: Ratio,
    /// Latency p50 (lower is better).
    pub p50: Ratio,
    /// Latency p99 (lower is better).
    pub p99: Ratio,
    /// Server CPU per message (lower is better).
    pub server_cpu_per_msg: Ratio,
}

/// One side of the document: its command, summary and every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideDoc {
    /// The figures over its runs.
    pub summary: SideSummary,
    /// Every run, in the order it ran.
    pub runs: Vec<RunRecord>,
}

/// The `ab` result document (`ringload ab --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbDocument {
    /// [`AB_SCHEMA_VERSION`].
    pub schema_version: u64,
    /// Always [`AB_TOOL`].
    pub tool: String,
    /// The version of ringload that wrote it.
    pub version: String,
    /// Runs planned per side.
    pub runs_planned: u32,
    /// CPUs each server was pinned to (none: not pinned).
    pub server_cpus: Option<Vec<usize>>,
    /// Side A.
    pub a: SideDoc,
    /// Side B.
    pub b: SideDoc,
    /// B against A (absent when a side has no run).
    pub comparison: Option<Comparison>,
    /// Thresholds that failed, as shown to a person.
    pub failed_checks: Vec<String>,
    /// Ctrl-C cut it short.
    pub interrupted: bool,
    /// The exit code: 0, 1 (a threshold failed) or 130 (interrupted).
    pub exit_code: i32,
}

/// The summary of the runs.
pub struct AbResult {
    /// The document (every run, the summary, the comparison).
    pub doc: AbDocument,
    plan_line: String,
}

/// Sums up `records` (both sides, in the order they ran).
pub fn summarize(plan: &AbPlan, records: Vec<RunRecord>, interrupted: bool) -> AbResult {
    let (a_runs, b_runs): (Vec<RunRecord>, Vec<RunRecord>) =
        records.into_iter().partition(|r| r.side == Side::A);
    let a = SideDoc { summary: side_summary(&plan.servers[0], &a_runs), runs: a_runs };
    let b = SideDoc { summary: side_summary(&plan.servers[1], &b_runs), runs: b_runs };
    let comparison = (!a.runs.is_empty() && !b.runs.is_empty()).then(|| Comparison {
        msgs_per_s: ratio(&a.runs, &b.runs, |r| r.msgs_per_s(), true, "msg/s"),
        p50: ratio(&a.runs, &b.runs, |r| r.result.latency.corrected.p50 as f64, false, "p50"),
        p99: ratio(&a.runs, &b.runs, |r| r.result.latency.corrected.p99 as f64, false, "p99"),
        server_cpu_per_msg: ratio(&a.runs, &b.runs, |r| r.server.cpu_us_per_msg, false, "server CPU/msg"),
    });
    let mut failed_checks: Vec<String> = a
        .runs
        .iter()
        .chain(&b.runs)
        .flat_map(|r| r.result.failed_checks.iter().map(move |f| format!("{} run {}: {f}", r.side, r.run)))
        .collect();
    if let (Some(limit), Some(c)) = (plan.max_slowdown, &comparison) {
        if !c.msgs_per_s.ratio.is_finite() || !c.p99.ratio.is_finite() {
            failed_checks.push("--max-slowdown cannot be judged: A's median msg/s or p99 is 0".into());
        }
        if c.msgs_per_s.ratio < 1.0 - limit {
            failed_checks.push(format!(
                "B's median msg/s is {:.1}% below A's, more than --max-slowdown {:.1}%",
                (1.0 - c.msgs_per_s.ratio) * 100.0,
                limit * 100.0
            ));
        }
        if c.p99.ratio > 1.0 + limit {
            failed_checks.push(format!(
                "B's median p99 is {:.1}% above A's, more than --max-slowdown {:.1}%",
                (c.p99.ratio - 1.0) * 100.0,
                limit * 100.0
            ));
        }
    }
    let exit_code = if interrupted {
        130
    } else if failed_checks.is_empty() {
        0
    } else {
        1
    };
    let doc = AbDocument {
        schema_version: AB_SCHEMA_VERSION,
        tool: AB_TOOL.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        runs_planned: plan.runs,
        server_cpus: plan.server_cpus.clone(),
        a,
        b,
        comparison,
        failed_checks,
        interrupted,
        exit_code,
    };
    AbResult { doc, plan_line: plan_line(plan) }
}

fn side_summary(command: &str, runs: &[RunRecord]) -> SideSummary {
    let of = |f: &dyn Fn(&RunRecord) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<f64>>());
    SideSummary {
        command: command.to_owned(),
        runs: runs.len(),
        msgs_per_s: of(&|r| r.msgs_per_s()),
        p50_ns: of(&|r| r.result.latency.corrected.p50 as f64),
        p99_ns: of(&|r| r.result.latency.corrected.p99 as f64),
        server_cpu_us_per_msg: of(&|r| r.server.cpu_us_per_msg),
        client_busy: of(&|r| r.client_busy),
        client_saturated_runs: runs.iter().filter(|r| r.client_saturated()).count(),
    }
}

fn ratio(
    a: &[RunRecord],
    b: &[RunRecord],
    f: impl Fn(&RunRecord) -> f64,
    higher_is_better: bool,
    what: &str,
) -> Ratio {
    let av: Vec<f64> = a.iter().map(&f).collect();
    let bv: Vec<f64> = b.iter().map(&f).collect();
    compare_values(&av, &bv, higher_is_better, what)
}

/// B against A from each side's values, run by run in the order they ran.
pub fn compare_values(av: &[f64], bv: &[f64], higher_is_better: bool, what: &str) -> Ratio {
    let (sa, sb) = (Spread::of(av), Spread::of(bv));
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
    let pairs = Spread::of(&av.iter().zip(bv).map(|(x, y)| div(*y, *x)).collect::<Vec<f64>>());
    let ratio = div(sb.median, sa.median);
    let enough = av.len() >= 2 && bv.len() >= 2;
    let b_above = sb.min > sa.max;
    let b_below = sb.max < sa.min;
    let beyond_spread = enough && (b_above || b_below);
    let better = match (beyond_spread, b_above == higher_is_better) {
        (false, _) => None,
        (true, true) => Some(Side::B),
        (true, false) => Some(Side::A),
    };
    let verdict = if !ratio.is_finite() {
        format!("{what}: no ratio (A's median is 0)")
    } else if !enough {
        format!("{what}: B/A {ratio:.3}×; one run on a side cannot tell noise from a difference (--runs)")
    } else if let Some(side) = better {
        let (dir, order) = if b_above { ("above", "lowest") } else { ("below", "highest") };
        format!(
            "{what}: B/A {ratio:.3}× — beyond the spread of the runs (every B run is {dir} every A run, B's {order} run included): {side} is better"
        )
    } else {
        format!(
            "{what}: B/A {ratio:.3}× — within the spread of the runs (A's and B's ranges overlap; the run pairs give {:.3}–{:.3}×): no difference shown",
            pairs.min, pairs.max
        )
    };
    Ratio { ratio, pairs_min: pairs.min, pairs_max: pairs.max, beyond_spread, better, verdict }
}

fn plan_line(plan: &AbPlan) -> String {
    let p = &plan.load;
    let model = match p.model {
        Model::Closed { depth } => format!("closed loop, {} connections × depth {depth}", p.connections),
        Model::Open { rate: r } => format!("open loop at {}, {} connections", rate(r), p.connections),
    };
    let size = if p.size.min == p.size.max {
        format!("{} B", p.size.min)
    } else {
        format!("{}..{} B", p.size.min, p.size.max)
    };
    let stop = match p.stop {
        crate::plan::Stop::Duration(d) => format!("{:.2} s", d.as_secs_f64()),
        crate::plan::Stop::Requests(n) => format!("{n} messages"),
    };
    let cpus = |c: &[usize]| c.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    format!(
        "{model}, {size} messages, {stop} (+{:.2} s warm-up) per run; client on CPU {}, servers on {}",
        p.warmup.as_secs_f64(),
        cpus(&p.cpus),
        plan.server_cpus.as_deref().map_or("any CPU (not pinned)".into(), |c| format!("CPU {}", cpus(c)))
    )
}

impl AbResult {
    /// The exit code: 130 interrupted, 1 a threshold failed, else 0.
    pub fn exit_code(&self) -> i32 {
        self.doc.exit_code
    }

    /// The human report.
    pub fn text(&self) -> String {
        let d = &self.doc;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "ringload ab: {} of {} runs per side, A and B interleaved (A B, B A, …), a fresh server each run",
            d.a.runs.len().min(d.b.runs.len()),
            d.runs_planned
        );
        let _ = writeln!(o, "A           {}", d.a.summary.command);
        let _ = writeln!(o, "B           {}", d.b.summary.command);
        let _ = writeln!(o, "load        {}", self.plan_line);
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<16} {:>28}  {:>28}  {:>8}  {:>15}",
            "", "A median (min–max)", "B median (min–max)", "B/A", "run pairs"
        );
        let rows: [Row<'_>; 5] = [
            ("msg/s", |s| s.msgs_per_s, rate_short, d.comparison.as_ref().map(|c| &c.msgs_per_s)),
            ("p50", |s| s.p50_ns, |v| ns(v), d.comparison.as_ref().map(|c| &c.p50)),
            ("p99", |s| s.p99_ns, |v| ns(v), d.comparison.as_ref().map(|c| &c.p99)),
            (
                "server CPU/msg",
                |s| s.server_cpu_us_per_msg,
                |v| ns(v * 1e3),
                d.comparison.as_ref().map(|c| &c.server_cpu_per_msg),
            ),
            ("client CPU busy", |s| s.client_busy, |v| format!("{:.0}%", v * 100.0), None),
        ];
        for (name, get, unit, r) in rows {
            let cell = |s: &SideSummary| {
                if s.runs == 0 {
                    "—".to_owned()
                } else {
                    let sp = get(s);
                    format!("{} ({}–{})", unit(sp.median), unit(sp.min), unit(sp.max))
                }
            };
            let (ratio, pairs) = match r {
                Some(r) if r.ratio.is_finite() => {
                    (format!("{:.3}×", r.ratio), format!("{:.3}–{:.3}×", r.pairs_min, r.pairs_max))
                }
                _ => (String::new(), String::new()),
            };
            let _ = writeln!(
                o,
                "{name:<16} {:>28}  {:>28}  {ratio:>8}  {pairs:>15}",
                cell(&d.a.summary),
                cell(&d.b.summary)
            );
        }
        let _ = writeln!(o);
        if let Some(c) = &d.comparison {
            for r in [&c.msgs_per_s, &c.p50, &c.p99, &c.server_cpu_per_msg] {
                let _ = writeln!(o, "{}", r.verdict);
            }
        }
        for (side, s) in [("A", &d.a.summary), ("B", &d.b.summary)] {
            if s.client_saturated_runs > 0 {
                let _ = writeln!(
                    o,
                    "warning: {side}'s client was saturated (≥{:.0}% of its CPU busy, or in an open loop behind its schedule) in {} of {} runs: those figures are bounded by the client, not the server; give it more CPUs (--cpus) or fewer connections",
                    SATURATED * 100.0,
                    s.client_saturated_runs,
                    s.runs
                );
            }
        }
        if d.a.summary.client_saturated_runs == 0 && d.b.summary.client_saturated_runs == 0 {
            let _ = writeln!(
                o,
                "client      not saturated on either side (median {:.0}% busy for A, {:.0}% for B)",
                d.a.summary.client_busy.median * 100.0,
                d.b.summary.client_busy.median * 100.0
            );
        }
        for r in d.a.runs.iter().chain(&d.b.runs).filter(|r| r.server.killed) {
            let _ = writeln!(
                o,
                "warning: server {} did not exit within --stop-timeout of SIGTERM after run {}: killed",
                r.side, r.run
            );
        }
        if d.interrupted {
            let _ =
                writeln!(o, "warning: interrupted: the figures cover the runs that finished before Ctrl-C");
        }
        for f in &d.failed_checks {
            let _ = writeln!(o, "FAILED: {f}");
        }
        o
    }
}

/// A row of the text table: its name, the figure of a side, its unit, its ratio.
type Row<'a> = (&'a str, fn(&SideSummary) -> Spread, fn(f64) -> String, Option<&'a Ratio>);

fn rate_short(v: f64) -> String {
    rate(v).trim_end_matches(" msg/s").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::{Address, ServerFigures};
    use std::time::Duration;

    fn record(
        side: Side,
        run: u32,
        msgs: f64,
        p50_us: u64,
        p99_us: u64,
        cpu_us: f64,
        busy: f64,
    ) -> RunRecord {
        let mut result = crate::document::testing::full_report().document();
        result.throughput.msgs_per_s = msgs;
        result.latency.corrected.p50 = p50_us * 1000;
        result.latency.corrected.p99 = p99_us * 1000;
        result.failed_checks.clear();
        RunRecord {
            side,
            run,
            server: ServerFigures {
                pid: 4242,
                target: "tcp://127.0.0.1:7100".into(),
                cpu_s: 1.0,
                cpu_us_per_msg: cpu_us,
                killed: false,
            },
            client_busy: busy,
            result,
        }
    }

    fn plan() -> AbPlan {
        let mut load = crate::document::testing::full_report().plan;
        load.cpus = vec![1];
        AbPlan {
            servers: ["ringecho --backend uring".into(), "ringecho --backend epoll".into()],
            server_cpus: Some(vec![0]),
            address: Address::Printed,
            load,
            runs: 2,
            start_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
            max_p99: None,
            max_error_rate: None,
            max_slowdown: Some(0.05),
        }
    }

    /// The text report, whole: a snapshot.
    #[test]
    fn text_snapshot() {
        let mut records = vec![
            record(Side::A, 1, 100_000.0, 20, 100, 5.0, 0.5),
            record(Side::B, 1, 50_000.0, 40, 90, 5.1, 0.95),
            record(Side::B, 2, 55_000.0, 38, 130, 4.9, 0.5),
            record(Side::A, 2, 110_000.0, 22, 120, 5.2, 0.5),
        ];
        records[3].result.failed_checks.push("p99 120.0µs > --max-p99 110.0µs".into());
        // The busy B run also fell behind its open-loop schedule: its client limited it.
        records[1].result.latency.send_lag.as_mut().expect("an open loop's lag").p99 = 300_000;
        let result = summarize(&plan(), records, false);
        assert_eq!(result.exit_code(), 1);
        let text = result.text();
        let expected = include_str!("testdata/text.snap");
        assert_eq!(text, expected, "\n{text}");
    }

    /// An open-loop run's client limited it when it fell behind its schedule, whatever
    /// its CPU; a closed-loop run's when its CPU was busy.
    #[test]
    fn a_client_is_saturated_by_its_schedule_in_an_open_loop_by_its_cpu_in_a_closed_one() {
        let busy_on_time = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.97);
        assert!(busy_on_time.result.latency.send_lag.as_ref().unwrap().p99 < 100_000);
        assert!(!busy_on_time.client_saturated());
        let mut late = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.3);
        late.result.latency.send_lag.as_mut().unwrap().p99 = 100_001;
        assert!(late.client_saturated());
        let mut closed = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.95);
        closed.result.latency.send_lag = None;
        assert!(closed.client_saturated());
        closed.client_busy = 0.5;
        assert!(!closed.client_saturated());
    }

    #[test]
    fn spread_median_min_max() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Spread { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).median, 5.0);
    }

    #[test]
    fn a_difference_only_beyond_the_spread() {
        let faster = compare_values(&[100.0, 110.0], &[50.0, 55.0], true, "msg/s");
        assert!(faster.beyond_spread);
        assert_eq!(faster.better, Some(Side::A));
        assert!((faster.ratio - 0.5).abs() < 1e-9, "{}", faster.ratio);
        assert!(faster.verdict.contains("beyond the spread"), "{}", faster.verdict);
        let lower = compare_values(&[100.0, 110.0], &[50.0, 55.0], false, "p99");
        assert_eq!(lower.better, Some(Side::B));
        let overlap = compare_values(&[100.0, 110.0, 90.0], &[105.0, 95.0, 112.0], true, "msg/s");
        assert!(!overlap.beyond_spread);
        assert_eq!(overlap.better, None);
        assert!(overlap.verdict.contains("within the spread"), "{}", overlap.verdict);
        let one = compare_values(&[100.0], &[10.0], true, "msg/s");
        assert!(!one.beyond_spread, "one run per side shows no difference");
        assert!(one.verdict.contains("one run"));
        assert!(!compare_values(&[0.0, 0.0], &[1.0, 1.0], true, "x").ratio.is_finite());
    }
}
