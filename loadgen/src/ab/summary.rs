//! What the runs of `ringload ab` add up to: per side the median and the spread of each
//! figure (`crate::stats`), B/A ratios with the spread of the run pairs and a verdict in
//! words (beyond the noise of the runs or within it), whether a client saturated, the
//! thresholds; one document (`crate::document::ab`) that also carries every run's own
//! result document.
//!
//! Invariant: a ratio is called a difference only by [`crate::stats::differs`], the test
//! `compare` and `--repeat` use: the two medians' confidence intervals apart (with up to
//! 5 runs a side, their ranges: B's worst run beats A's best, or the reverse); with one
//! run per side nothing is called a difference.

use super::plan::AbPlan;
use crate::document::ab::{
    AB_SCHEMA_VERSION, AB_TOOL, AbComparison, AbDocument, FirstRun, Ratio, RunRecord, Side, SideDoc,
    SideSummary,
};
use crate::plan::Stop;
use crate::stats::{Difference, Spread, differs, stands_apart};
use crate::units::cpu_list;

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
    // One rule with `compare`: a run whose figures measured something other than the
    // target (its client saturated or behind, errors, a shortfall…) makes the ratios not
    // meaningful, whichever side it is on.
    let not_meaningful: Vec<String> = a
        .runs
        .iter()
        .chain(&b.runs)
        .flat_map(|r| r.spoilers().map(move |w| format!("{} run {}: {w}", r.side, r.run)))
        .collect();
    let spoiled = !not_meaningful.is_empty();
    let comparison = (!a.runs.is_empty() && !b.runs.is_empty()).then(|| AbComparison {
        msgs_per_s: ratio(&a.runs, &b.runs, |r| r.msgs_per_s(), true, "msg/s", spoiled),
        p50: ratio(&a.runs, &b.runs, |r| r.result.latency.corrected.p50 as f64, false, "p50", spoiled),
        p99: ratio(&a.runs, &b.runs, |r| r.result.latency.corrected.p99 as f64, false, "p99", spoiled),
        server_cpu_per_msg: ratio(
            &a.runs,
            &b.runs,
            |r| r.server.cpu_us_per_msg,
            false,
            "server CPU/msg",
            spoiled,
        ),
        not_meaningful: not_meaningful.clone(),
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
    if comparison.is_some() && spoiled {
        // As `compare`: a difference that cannot be told from the client's own limits is
        // not a pass.
        failed_checks.push(format!(
            "the ratios are not meaningful: a run's figures do not measure its server alone ({})",
            not_meaningful.join(", ")
        ));
    }
    let exit_code = crate::exit::code(interrupted, false, !failed_checks.is_empty());
    let doc = AbDocument {
        schema_version: AB_SCHEMA_VERSION,
        tool: AB_TOOL.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        runs_planned: plan.runs,
        warmup_runs: plan.warmup_runs,
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
        first_run: first_run(runs),
    }
}

/// The first run's msg/s against the others', from 3 runs on (two others at least give
/// a spread): the one test of a run apart, [`stands_apart`].
fn first_run(runs: &[RunRecord]) -> Option<FirstRun> {
    let (first, others) = runs.split_first()?;
    if others.len() < 2 {
        return None;
    }
    let others: Vec<f64> = others.iter().map(RunRecord::msgs_per_s).collect();
    let median = Spread::of(&others).median;
    Some(FirstRun {
        ratio: if median > 0.0 { first.msgs_per_s() / median } else { f64::NAN },
        apart: stands_apart(first.msgs_per_s(), &others).is_real(),
    })
}

fn ratio(
    a: &[RunRecord],
    b: &[RunRecord],
    f: impl Fn(&RunRecord) -> f64,
    higher_is_better: bool,
    what: &str,
    spoiled: bool,
) -> Ratio {
    let av: Vec<f64> = a.iter().map(&f).collect();
    let bv: Vec<f64> = b.iter().map(&f).collect();
    let mut r = compare_values(&av, &bv, higher_is_better, what);
    if spoiled {
        r.better = None;
        r.beyond_spread = false;
        if r.ratio.is_finite() {
            r.verdict = format!(
                "{what}: B/A {:.3}× — not meaningful: a run's figures do not measure its server alone (see the warnings)",
                r.ratio
            );
        }
    }
    r
}

/// B against A from each side's values, run by run in the order they ran.
pub fn compare_values(av: &[f64], bv: &[f64], higher_is_better: bool, what: &str) -> Ratio {
    let (sa, sb) = (Spread::of(av), Spread::of(bv));
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
    let pairs = Spread::of(&av.iter().zip(bv).map(|(x, y)| div(*y, *x)).collect::<Vec<f64>>());
    let ratio = div(sb.median, sa.median);
    let difference = differs(&sa, av.len(), &sb, bv.len());
    let better = match difference {
        Difference::Above if higher_is_better => Some(Side::B),
        Difference::Below if !higher_is_better => Some(Side::B),
        Difference::Above | Difference::Below => Some(Side::A),
        Difference::Unknown | Difference::Within => None,
    };
    // Below 6 runs a side the intervals are the ranges of the runs: say it that way.
    let ranges = av.len() < 6 && bv.len() < 6;
    let verdict = match (ratio.is_finite(), difference, better) {
        (false, ..) => format!("{what}: no ratio (A's median is 0)"),
        (true, Difference::Unknown, _) => {
            format!("{what}: B/A {ratio:.3}×; one run on a side cannot tell noise from a difference (--runs)")
        }
        (true, _, Some(side)) if ranges => {
            let (dir, order) =
                if difference == Difference::Above { ("above", "lowest") } else { ("below", "highest") };
            format!(
                "{what}: B/A {ratio:.3}× — beyond the spread of the runs (every B run is {dir} every A run, B's {order} run included): {side} is better"
            )
        }
        (true, _, Some(side)) => format!(
            "{what}: B/A {ratio:.3}× — beyond the noise of the runs (the 95% confidence intervals of the two medians are apart): {side} is better"
        ),
        (true, _, None) if ranges => format!(
            "{what}: B/A {ratio:.3}× — within the spread of the runs (A's and B's ranges overlap; the run pairs give {:.3}–{:.3}×): no difference shown",
            pairs.min, pairs.max
        ),
        (true, _, None) => format!(
            "{what}: B/A {ratio:.3}× — within the noise of the runs (the confidence intervals of the two medians overlap; the run pairs give {:.3}–{:.3}×): no difference shown",
            pairs.min, pairs.max
        ),
    };
    Ratio {
        ratio,
        pairs_min: pairs.min,
        pairs_max: pairs.max,
        beyond_spread: difference.is_real(),
        better,
        verdict,
    }
}

fn plan_line(plan: &AbPlan) -> String {
    let p = &plan.load;
    let stop = match p.stop {
        Stop::Duration(d) => format!("{:.2} s", d.as_secs_f64()),
        Stop::Requests(n) => format!("{n} messages"),
    };
    format!(
        "{}, {stop} (+{:.2} s warm-up) per run; client on CPU {}, servers on {}",
        crate::text::load_words(p),
        p.warmup.as_secs_f64(),
        cpu_list(&p.cpus),
        plan.server_cpus.as_deref().map_or("any CPU (not pinned)".into(), |c| format!("CPU {}", cpu_list(c)))
    )
}

impl AbResult {
    /// The exit code ([`crate::exit::code`]): interrupted, or a threshold failed.
    pub fn exit_code(&self) -> i32 {
        self.doc.exit_code
    }

    /// The human report (`crate::text::ab`).
    pub fn text(&self) -> String {
        crate::text::ab::report(&self.doc, &self.plan_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ab::Address;
    use crate::document::ab::{ClientLimit, ServerFigures};
    use crate::warning::Warning;
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
        let mut result = crate::report::testing::full_report().document();
        result.throughput.msgs_per_s = msgs;
        result.latency.corrected.p50 = p50_us * 1000;
        result.latency.corrected.p99 = p99_us * 1000;
        result.failed_checks.clear();
        result.warnings.clear();
        RunRecord {
            side,
            run,
            server: ServerFigures {
                pid: 4242,
                target: "tcp://127.0.0.1:7100".into(),
                cpu_s: 1.0,
                cpu_us_per_msg: cpu_us,
                killed: false,
                strays: Vec::new(),
                strays_unlisted: 0,
            },
            client_busy: busy,
            warmup_msgs_per_s: Vec::new(),
            result,
        }
    }

    fn plan() -> AbPlan {
        let mut load = crate::report::testing::full_report().plan;
        load.cpus = vec![1];
        AbPlan {
            servers: ["ringecho --backend uring".into(), "ringecho --backend epoll".into()],
            server_cpus: Some(vec![0]),
            address: Address::Printed,
            load,
            runs: 2,
            warmup_runs: 1,
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
        // The busy B run also fell behind its open-loop schedule: its client limited it,
        // which makes the ratios not meaningful (as `compare` would say).
        records[1].result.latency.send_lag.as_mut().expect("an open loop's lag").p99 = 300_000;
        let behind = Warning::ClientBehind { lag_p99_ns: 300_000, limit_ns: 100_000, busy: 0.95 };
        records[1].result.warnings.push((&behind).into());
        // The runs' own warnings: a kernel counter on A in both runs, a pinning on B.
        let counter = |grew| Warning::KernelCounter { counter: "udp_rcvbuf_errors".into(), grew };
        records[0].result.warnings.push((&counter(12)).into());
        records[3].result.warnings.push((&counter(3)).into());
        records[3].result.warnings.push((&Warning::Interrupted).into());
        records[2]
            .result
            .warnings
            .push((&Warning::PinFailed { cpu: 1, cause: "Invalid argument".into() }).into());
        // Each run's warm-up run against its fresh server.
        for (r, warm) in records.iter_mut().zip([40_000.0, 30_000.0, 31_000.0, 60_000.0]) {
            r.warmup_msgs_per_s = vec![warm];
        }
        let result = summarize(&plan(), records, false);
        assert_eq!(result.exit_code(), 1);
        let text = result.text();
        let expected = include_str!("testdata/text.snap");
        assert_eq!(text, expected, "\n{text}");
    }

    /// A run's client limited it when its own report said so: behind its schedule in
    /// an open loop (whatever its CPU), saturated in a closed loop; the text says which
    /// rule fired.
    #[test]
    fn a_client_is_saturated_by_its_schedule_in_an_open_loop_by_its_cpu_in_a_closed_one() {
        let busy_on_time = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.97);
        assert!(!busy_on_time.client_saturated(), "a busy client on time limited nothing");
        let mut late = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.5);
        let behind = Warning::ClientBehind { lag_p99_ns: 312_000, limit_ns: 100_000, busy: 0.5 };
        late.result.warnings.push((&behind).into());
        assert_eq!(
            late.client_limit(),
            Some(ClientLimit::Behind(crate::slo::Schedule { lag_p99_ns: 312_000, limit_ns: 100_000 }))
        );
        let mut closed = record(Side::A, 1, 1000.0, 20, 100, 5.0, 0.9);
        closed.result.latency.send_lag = None;
        closed.result.warnings.push((&Warning::ClientSaturated { busy: 0.9 }).into());
        assert_eq!(closed.client_limit(), Some(ClientLimit::Busy(0.9)));
        let mut idle = record(Side::B, 1, 1000.0, 20, 100, 5.0, 0.5);
        idle.result.latency.send_lag = None;
        assert!(!idle.client_saturated());
        // The open loop at 50% busy: its schedule, not its CPU, is named.
        let text =
            summarize(&plan(), vec![late.clone(), record(Side::B, 1, 1000.0, 20, 100, 5.0, 0.5)], false)
                .text();
        assert!(
            text.contains("warning: A's client fell behind its schedule in 1 of 1 run (send lag p99 312.0µs > limit 100.0µs)"),
            "{text}"
        );
        assert!(!text.contains("CPU busy,") && !text.contains("or in an open loop"), "{text}");
        let text = summarize(&plan(), vec![closed, idle], false).text();
        assert!(
            text.contains("warning: A's client was saturated in 1 of 1 run (90% of its CPU busy, ≥85%)"),
            "{text}"
        );
        assert!(!text.contains("schedule"), "{text}");
    }

    /// A side's first run well below its others is named, with the hint; one within their
    /// spread, or with fewer than 3 runs, is not.
    #[test]
    fn a_first_run_apart_from_the_others_is_named() {
        let side = |msgs: &[f64]| -> Vec<RunRecord> {
            msgs.iter().zip(1..).map(|(m, run)| record(Side::A, run, *m, 20, 100, 5.0, 0.5)).collect()
        };
        let b = side(&[3000.0, 3010.0, 2990.0]).into_iter().map(|mut r| {
            r.side = Side::B;
            r
        });
        let cold = summarize(
            &plan(),
            side(&[1000.0, 3000.0, 3050.0, 2980.0]).into_iter().chain(b.clone()).collect(),
            false,
        );
        let first = cold.doc.a.summary.first_run.expect("4 runs");
        assert!(first.apart && (first.ratio - 1000.0 / 3000.0).abs() < 1e-9, "{first:?}");
        assert!(
            cold.text().contains("warning: A's first run was 3.0× slower than its others (1.00K msg/s against a median of 3.00K msg/s): the server may need more warm-up (--warmup-runs, 1 now), or the machine was busy then"),
            "{}",
            cold.text()
        );
        assert!(!cold.doc.b.summary.first_run.unwrap().apart);
        let warm = summarize(&plan(), side(&[2950.0, 3000.0, 3050.0]).into_iter().chain(b).collect(), false);
        assert!(!warm.doc.a.summary.first_run.unwrap().apart);
        assert!(!warm.text().contains("first run"), "{}", warm.text());
        assert_eq!(
            summarize(&plan(), side(&[1.0, 3000.0]), false).doc.a.summary.first_run,
            None,
            "2 runs: no spread"
        );
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

    /// Issue 24: `ab` and `compare` judge the same runs by one rule. A's client saturated
    /// in every run: `ab` names no better side and exits 1, as `compare` of A's and B's
    /// results does; with clean runs both pass.
    #[test]
    fn ab_and_compare_agree_on_a_saturated_pair() {
        let saturated = Warning::ClientSaturated { busy: 0.97 };
        let runs = |spoil: bool| {
            let mut records = Vec::new();
            for i in 1..=3u32 {
                for (side, msgs, p99) in [(Side::A, 179_000, 100_000), (Side::B, 100_000, 200_000)] {
                    let mut r = record(side, i, 0.0, 0, 0, 5.0, 0.5);
                    r.result =
                        crate::saved::testing::fake(&format!("{side}{i}"), msgs + u64::from(i), 1.0, p99).doc;
                    if spoil && side == Side::A {
                        r.result.warnings.push((&saturated).into());
                    }
                    records.push(r);
                }
            }
            records
        };
        let compare_first = |records: &[RunRecord]| {
            let saved = |r: &RunRecord| {
                let bytes = serde_json::to_vec(&r.result).unwrap();
                crate::saved::Saved::from_bytes(format!("{}.json", r.side), &bytes).unwrap()
            };
            crate::compare::compare(&saved(&records[0]), &saved(&records[1]), 0.05)
        };
        let spoiled = runs(true);
        let c = compare_first(&spoiled);
        assert!(!c.meaningful());
        let ab = summarize(&plan_without_checks(), spoiled, false);
        let cmp = ab.doc.comparison.as_ref().unwrap();
        assert_eq!(
            cmp.not_meaningful,
            ["A run 1: client saturated", "A run 2: client saturated", "A run 3: client saturated"]
        );
        assert_eq!(cmp.msgs_per_s.better, None, "{}", cmp.msgs_per_s.verdict);
        assert!(cmp.msgs_per_s.verdict.contains("not meaningful"), "{}", cmp.msgs_per_s.verdict);
        assert_eq!(ab.exit_code(), c.exit_code());
        assert_eq!(ab.exit_code(), crate::exit::CHECK_FAILED);
        let clean = runs(false);
        let c = compare_first(&clean);
        assert!(c.meaningful());
        let ab = summarize(&plan_without_checks(), clean, false);
        assert!(ab.doc.comparison.as_ref().unwrap().not_meaningful.is_empty());
        assert_eq!(ab.doc.comparison.as_ref().unwrap().msgs_per_s.better, Some(Side::A));
        assert_eq!(ab.exit_code(), 0);
    }

    fn plan_without_checks() -> AbPlan {
        let mut p = plan();
        p.max_slowdown = None;
        p
    }
}
