//! Merging: sums, refusals, carried warnings, windows that must overlap.

use super::*;
use crate::saved::testing::fake;

#[test]
fn merge_sums_and_refuses_mixed_transports() {
    let a = fake("a", 1000, 10.0, 50_000);
    let b = fake("b", 3000, 9.0, 150_000);
    let (m, warnings) = merge(&[a.clone(), b.clone()], false).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(m.counters.completed, 4000);
    assert_eq!(m.elapsed_s, 10.0);
    assert_eq!(m.throughput.msgs_per_s, 400.0);
    let mut both = a.doc.latency.corrected.histogram();
    both.add(b.doc.latency.corrected.histogram()).unwrap();
    assert_eq!(m.latency.corrected.p99, both.value_at_quantile(0.99));
    assert_eq!(m.latency.corrected.histogram(), both);
    assert_eq!(m.label.as_deref(), Some("merged (2)"));
    assert_eq!(m.merged_from, Some(vec!["a".to_string(), "b".to_string()]));
    let mut udp = b.clone();
    udp.doc.transport = "udp".into();
    assert!(matches!(merge(&[a, udp], false), Err(MergeError::MixedTransports { .. })));
    assert!(matches!(merge(&[], false), Err(MergeError::NoResults)));
}

/// Open-loop send lags add up; one input without a lag (a closed loop, an older
/// document) leaves the merge without one; the worst `client_behind` is carried.
#[test]
fn send_lags_add_up_only_when_every_input_has_one() {
    let lag = |values: &[u64]| {
        let mut h = hist::new();
        values.iter().for_each(|&v| hist::record(&mut h, v));
        Some(crate::document::Summary::of(&h))
    };
    let mut a = fake("a", 1000, 10.0, 50_000);
    a.doc.latency.send_lag = lag(&[10_000, 20_000]);
    a.doc
        .warnings
        .push((&Warning::ClientBehind { lag_p99_ns: 150_000, limit_ns: 100_000, busy: 0.9 }).into());
    let mut b = fake("b", 1000, 10.0, 50_000);
    b.doc.latency.send_lag = lag(&[30_000]);
    b.doc
        .warnings
        .push((&Warning::ClientBehind { lag_p99_ns: 400_000, limit_ns: 100_000, busy: 0.7 }).into());
    let (m, _) = merge(&[a.clone(), b], false).unwrap();
    let merged = m.latency.send_lag.expect("both had one");
    assert_eq!((merged.count, merged.max), (3, 30_015));
    let behind: Vec<_> =
        m.warnings.iter().filter(|w| matches!(w.warning, Warning::ClientBehind { .. })).collect();
    assert_eq!(behind.len(), 1);
    assert!(matches!(behind[0].warning, Warning::ClientBehind { lag_p99_ns: 400_000, .. }));
    let closed = fake("c", 1000, 10.0, 50_000);
    let (m, _) = merge(&[a.clone(), closed], false).unwrap();
    assert!(m.latency.send_lag.is_none());
    // Pooled repeats: the same rule, one warning for the furthest behind.
    let mut c = a.clone();
    c.doc.warnings[0] = (&Warning::ClientBehind { lag_p99_ns: 900_000, limit_ns: 100_000, busy: 0.8 }).into();
    let pooled = crate::repeat::pool(vec![a.doc.clone(), c.doc]);
    assert_eq!(pooled.latency.send_lag.as_ref().map(|l| l.count), Some(4));
    let behind: Vec<_> =
        pooled.warnings.iter().filter(|w| matches!(w.warning, Warning::ClientBehind { .. })).collect();
    assert_eq!(behind.len(), 1, "{:?}", pooled.warnings);
    assert!(matches!(behind[0].warning, Warning::ClientBehind { lag_p99_ns: 900_000, .. }));
    let mut old = fake("d", 1000, 10.0, 50_000).doc;
    old.latency.send_lag = None;
    assert!(crate::repeat::pool(vec![a.doc, old]).latency.send_lag.is_none());
}

#[test]
fn different_plans_merge_with_a_warning() {
    let a = fake("a", 1000, 10.0, 50_000);
    let mut b = fake("b", 1000, 10.0, 50_000);
    if let Some(p) = b.doc.plan.as_mut() {
        p.model = crate::plan::Model::Open { rate: 100.0 };
    }
    let (_, warnings) = merge(&[a, b], false).unwrap();
    assert_eq!(
        warnings,
        [MergeWarning::PlanDiffers { first: "a".into(), other: "b".into(), field: "model" }]
    );
    assert_eq!(warnings[0].to_string(), "a and b differ in plan.model; merged anyway");
}

/// Lost datagrams count as failed in a merge too: the one definition.
#[test]
fn merged_failed_is_counters_failed() {
    let mut a = fake("a", 1000, 10.0, 50_000);
    a.doc.counters.lost = 7;
    a.doc.counters.failed_messages = 3;
    let mut b = fake("b", 1000, 10.0, 50_000);
    b.doc.counters.unanswered_at_end = 2;
    b.doc.counters.backlog_overflow = 1;
    b.doc.counters.mismatched_messages = 4;
    let (m, _) = merge(&[a, b], false).unwrap();
    assert_eq!(m.failed, m.counters.failed());
    assert_eq!(m.failed, 17);
    assert_eq!(m.error_rate, 17.0 / 2017.0);
}

/// Huge counters saturate at u64::MAX instead of wrapping (or panicking), and the
/// figures derived from them stay finite; the merged document reads back.
#[test]
fn huge_counters_saturate() {
    let mut a = fake("a", 1000, 10.0, 50_000);
    let mut b = fake("b", 1000, 10.0, 50_000);
    for c in [&mut a.doc.counters, &mut b.doc.counters] {
        c.lost = u64::MAX / 2 + 1;
        c.failed_messages = u64::MAX / 2 + 1;
        c.bytes_echoed = u64::MAX;
        c.sent = u64::MAX - 1;
    }
    let (m, _) = merge(&[a, b], false).unwrap();
    assert_eq!(m.counters.completed, 2000);
    assert_eq!(m.counters.lost, u64::MAX);
    assert_eq!(m.counters.bytes_echoed, u64::MAX);
    assert_eq!(m.counters.sent, u64::MAX);
    assert_eq!(m.failed, u64::MAX);
    assert!(m.error_rate.is_finite() && m.throughput.msgs_per_s.is_finite());
    let again = Saved::from_doc("m".into(), serde_json::to_value(&m).unwrap()).unwrap();
    assert_eq!(again.doc, m);
}

/// Histograms whose samples together pass what V2 carries are refused, not
/// saturated (hdrhistogram would, and every percentile would be wrong).
#[test]
fn histograms_past_v2_are_refused() {
    let mut a = fake("a", 1000, 10.0, 50_000);
    let mut huge = crate::hist::new();
    huge.record_n(50_000, crate::hist::MAX_SAMPLES - 10).unwrap();
    a.doc.latency.corrected = crate::document::Summary::of(&huge);
    let b = fake("b", 1000, 10.0, 50_000);
    let e = merge(&[a, b], false).unwrap_err().to_string();
    assert_eq!(
        e,
        "cannot merge: b: latency.corrected.histogram: the histogram's counts add up to more than 9223372036854775807 samples"
    );
}

fn at(name: &str, started: f64, elapsed: f64) -> Saved {
    let mut r = fake(name, 1000, elapsed, 50_000);
    r.doc.started_unix = started;
    r
}

/// Runs a minute apart were summed into one rate without a word: refused, saying
/// how far apart; merged with --force, with the warning in the document too.
#[test]
fn runs_that_did_not_overlap_are_refused_unless_forced() {
    let t = crate::saved::testing::STARTED;
    let (a, b) = (at("a", t, 10.0), at("b", t + 70.0, 10.0));
    let e = merge(&[a.clone(), b.clone()], false).unwrap_err();
    assert!(
        matches!(e, MergeError::WindowsApart { ref earlier, ref later, apart_s } if earlier == "a" && later == "b" && apart_s == 60.0),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "cannot merge: a ended 60.000 s before b began; merged runs must run at the same time (--force merges them anyway, and the merged rate is then wrong)"
    );
    // In either order.
    assert!(matches!(merge(&[b.clone(), a.clone()], false), Err(MergeError::WindowsApart { .. })));
    let (m, warnings) = merge(&[a, b], true).unwrap();
    assert_eq!(warnings, [MergeWarning::NotConcurrent { overlap_s: -60.0, span_s: 80.0 }]);
    assert!(warnings[0].to_string().contains("60.000 s apart, --force"), "{}", warnings[0]);
    assert_eq!(m.warnings.len(), 1);
    assert_eq!(m.warnings[0].warning, Warning::NotConcurrent { overlap_s: -60.0, span_s: 80.0 });
    assert_eq!(m.started_unix, t);
}

#[test]
fn partial_overlap_and_unknown_starts_are_said() {
    let t = crate::saved::testing::STARTED;
    let (_, w) = merge(&[at("a", t, 10.0), at("b", t + 0.05, 10.0)], false).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let (m, w) = merge(&[at("a", t, 10.0), at("b", t + 5.0, 10.0)], false).unwrap();
    assert_eq!(w, [MergeWarning::NotConcurrent { overlap_s: 5.0, span_s: 15.0 }]);
    assert!(m.warnings.iter().any(|e| matches!(e.warning, Warning::NotConcurrent { .. })));
    let (_, w) = merge(&[at("a", t, 10.0), at("old", 0.0, 10.0)], false).unwrap();
    assert_eq!(w, [MergeWarning::StartUnknown { name: "old".into() }]);
}

/// A saturated client stays saturated in the merge; errors are recounted.
#[test]
fn inputs_warnings_are_carried() {
    let mut a = fake("a", 1000, 10.0, 50_000);
    a.doc.warnings.push((&Warning::ClientSaturated { busy: 0.93 }).into());
    let mut b = fake("b", 1000, 10.0, 50_000);
    b.doc.warnings.push((&Warning::ClientSaturated { busy: 0.97 }).into());
    b.doc.warnings.push((&Warning::SharedCpu).into());
    b.doc.counters.lost = 3;
    b.doc.derive();
    let (m, _) = merge(&[a, b], false).unwrap();
    let got: Vec<Warning> = m.warnings.iter().map(|w| w.warning.clone()).collect();
    assert_eq!(
        got,
        [Warning::ClientSaturated { busy: 0.97 }, Warning::Errors { failed: 3 }, Warning::SharedCpu]
    );
    assert_eq!(m.exit_code, 0);
}

/// A failed input (here: connections lost) makes a failed merge (exit 2), its failure
/// said again.
#[test]
fn a_failed_input_fails_the_merge() {
    let a = fake("a", 1000, 10.0, 50_000);
    let mut b = fake("b", 1000, 10.0, 50_000);
    let lost = Warning::ConnectionsLost { conns_lost: 2, connections: 4 };
    b.doc.warnings.push((&lost).into());
    let (m, _) = merge(&[a, b], false).unwrap();
    assert!(m.warnings.iter().any(|w| w.warning == lost), "{:?}", m.warnings);
    assert_eq!(m.exit_code, 2);
}

/// Issue 25: the breakdown by kernel timestamps merges like every histogram (added, its
/// counts summed, the widest clock bound kept), and only when every run has one.
#[test]
fn breakdowns_merge_when_every_run_has_one() {
    let with = |name: &str| {
        let mut report = crate::report::testing::full_report();
        report.breakdown = crate::report::testing::stamped_breakdown();
        report.label = Some(name.into());
        let bytes = serde_json::to_vec(&report.document()).unwrap();
        Saved::from_bytes(format!("{name}.json"), &bytes).unwrap()
    };
    let (a, b) = (with("a"), with("b"));
    let one = a.doc.latency.breakdown.clone().expect("a stamped run saves its breakdown");
    assert_eq!(one.stamps.stamped, 100);
    let (m, _) = merge(&[a.clone(), b], false).unwrap();
    let both = m.latency.breakdown.expect("both runs had one");
    assert_eq!(both.stamps.stamped, 200);
    assert_eq!(both.stamps.split, 20);
    assert_eq!(both.stamps.bound_ns, 50);
    assert_eq!(both.network_server.count, 20);
    assert_eq!(both.client_receive.count, 200);
    assert_eq!(both.client_receive.p50, one.client_receive.p50);
    let pooled = crate::repeat::pool(vec![a.doc.clone(), a.doc.clone()]);
    assert_eq!(pooled.latency.breakdown.expect("repeats pool theirs").stamps.stamped, 200);
    let plain = fake("plain", 1000, 10.0, 50_000);
    let (m, _) = merge(&[a, plain], true).unwrap();
    assert!(m.latency.breakdown.is_none(), "a run without one makes the sum unknown");
}
