//! The document against its schema, and the one definition of failed.

use super::*;
use crate::counters::Counters;
use crate::figures::Figures;
use crate::hist;
use crate::report::testing::full_report;
use std::collections::BTreeSet;

fn schema() -> serde_json::Value {
    serde_json::from_str(include_str!("../../schema/result.schema.json")).unwrap()
}

fn check(doc: &ResultDoc) {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let value = serde_json::to_value(doc).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Every field a document can hold, the optional ones too.
fn fullest() -> ResultDoc {
    let mut report = full_report();
    report.breakdown = crate::report::testing::stamped_breakdown();
    let mut doc = report.document();
    doc.merged_from = Some(vec!["lg1".into(), "lg2.json".into()]);
    if let Some(p) = doc.plan.as_mut() {
        p.churn = Some(10);
        p.throughput.background_target = Some(crate::target::Target::Unix("/tmp/bg.sock".into()));
        p.throughput.sndbuf = Some(65_536);
        p.spin = true;
        p.server_metrics = Some("http://127.0.0.1:9107/metrics".into());
        p.server_pid = Some(4242);
        p.send_window = Some(std::time::Duration::from_micros(400));
    }
    let mut tally = crate::engine::Tally::default();
    tally.moved(0, 2_000_000_000, 5, 1_000, 900);
    tally.moved(0, 2_000_000_000, 1_500_000_000, 2_000, 1_800);
    tally.cpu_start = Some(std::time::Duration::ZERO);
    let plan = crate::plan::ThroughputPlan::default();
    let bulk = |mode| {
        crate::figures::Bulk::of(
            mode,
            2,
            &plan,
            &[(&tally, std::time::Duration::from_millis(3))],
            std::time::Duration::from_millis(1_700),
        )
    };
    doc.bulk = Some(bulk(crate::plan::Mode::Receive));
    doc.background = Some(bulk(crate::plan::Mode::Bulk));
    let mut run = full_report().document();
    run.warnings.clear();
    run.failed_checks.clear();
    doc.repeats = vec![run.clone(), run.clone()];
    let mut step = crate::capacity::judge(
        1000.0,
        vec![crate::capacity::Sample { doc: run, busy: 0.5 }],
        &crate::slo::Slo::parse("p99<1ms").unwrap().and(crate::slo::Slo::from_flags(None, Some(0.01))),
        None,
    );
    step.server_cpu = Some(0.42);
    doc.search = Some(Box::new(crate::capacity::SearchDoc {
        slo: crate::slo::Slo::parse("p99<1ms").unwrap().and(crate::slo::Slo::from_flags(None, Some(0.01))),
        slo_text: "p99<1ms,errors<1%".into(),
        precision: 0.05,
        min_achieved: 0.97,
        repeat: 1,
        answer: None,
        lower_bound: false,
        advice: Some("fewer connections".into()),
        stopped: Some(crate::capacity::Stopped::Interrupted),
        steps: vec![step],
    }));
    doc.derive();
    doc
}

#[test]
fn documents_match_the_schema() {
    check(&fullest());
    let mut r = full_report();
    r.builtin = None;
    r.label = None;
    r.warnings.clear();
    r.failed_checks.clear();
    r.plan.model = crate::plan::Model::Closed { depth: 8 };
    r.plan.stop = crate::plan::Stop::Requests(1_000);
    r.plan.target = Some(crate::target::Target::UnixGram("/tmp/e.dg".into()));
    r.target = "unixgram:///tmp/e.dg".into();
    r.counters = Counters::default();
    r.latency = hist::new();
    r.service = hist::new();
    r.connect = hist::new();
    check(&r.document());
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn names(list: &serde_json::Value) -> BTreeSet<String> {
    list.as_array().expect("a list").iter().map(|n| n.as_str().expect("a name").to_owned()).collect()
}

/// The schema documents exactly what the type writes: a field added to the type
/// and not to the schema (or the other way round) fails here.
#[test]
fn schema_names_exactly_the_fields_written() {
    let schema = schema();
    let fullest = serde_json::to_value(fullest()).unwrap();
    let mut always = full_report();
    always.label = None;
    always.views = None;
    let always = serde_json::to_value(always.document()).unwrap();
    let props = &schema["properties"];
    // Top level: every field written is documented; the ones always written are required.
    assert_eq!(keys(props), keys(&fullest));
    assert_eq!(names(&schema["required"]), keys(&always));
    // Nested objects, each written in full.
    // Written only when set: documented, not required.
    let optional_plan: BTreeSet<String> =
        ["spin", "server_metrics", "server_pid", "timestamps", "send_window"].map(String::from).into();
    let plan_node = &props["plan"];
    assert_eq!(keys(&plan_node["properties"]), keys(&fullest["plan"]));
    assert_eq!(names(&plan_node["required"]), &keys(&fullest["plan"]) - &optional_plan);
    let views = &props["views"];
    assert_eq!(keys(&views["properties"]), keys(&fullest["views"]));
    let optional_views: BTreeSet<String> = ["server", "others"].map(String::from).into();
    assert_eq!(names(&views["required"]), &keys(&fullest["views"]) - &optional_views);
    let server = &views["properties"]["server"];
    assert_eq!(keys(&server["properties"]), keys(&fullest["views"]["server"]));
    assert_eq!(
        names(&server["required"]),
        &keys(&fullest["views"]["server"]) - &["dgrams".to_string(), "timing".to_string()].into()
    );
    let timing = &server["properties"]["timing"];
    for part in ["wake", "send"] {
        let node = &timing["properties"][part];
        assert_eq!(keys(&node["properties"]), keys(&fullest["views"]["server"]["timing"][part]));
        assert_eq!(names(&node["required"]), keys(&fullest["views"]["server"]["timing"][part]));
    }
    assert_eq!(keys(&views["properties"]["kernel"]["properties"]), keys(&fullest["views"]["kernel"]));
    let side = &schema["$defs"]["side_cpu"];
    assert_eq!(names(&side["required"]), keys(&fullest["views"]["client"]));
    assert_eq!(keys(&side["properties"]), keys(&fullest["views"]["client"]));
    // The latency object: the send lag is written in an open loop only.
    let latency = &props["latency"];
    assert_eq!(keys(&latency["properties"]), keys(&fullest["latency"]));
    assert_eq!(
        names(&latency["required"]),
        &keys(&fullest["latency"]) - &["send_lag".to_string(), "breakdown".to_string()].into()
    );
    assert_eq!(latency["additionalProperties"], false);
    // The breakdown by kernel timestamps, and its counts.
    let breakdown = &latency["properties"]["breakdown"];
    for (node, value) in [
        (breakdown, &fullest["latency"]["breakdown"]),
        (&breakdown["properties"]["stamps"], &fullest["latency"]["breakdown"]["stamps"]),
    ] {
        assert_eq!(keys(&node["properties"]), keys(value));
        assert_eq!(names(&node["required"]), keys(value));
        assert_eq!(node["additionalProperties"], false);
    }
    for (path, value) in [
        ("/counters", &fullest["counters"]),
        ("/throughput", &fullest["throughput"]),
        ("/builtin/oneOf/1", &fullest["builtin"]),
        ("/plan/properties/throughput", &fullest["plan"]["throughput"]),
    ] {
        let node = props.pointer(path).unwrap();
        // Counters written only when not 0 (so older documents read the same) are
        // documented, not required.
        let optional: BTreeSet<String> = if path == "/counters" {
            ["buf_errors", "gso_trains", "gro_trains"].map(String::from).into()
        } else {
            BTreeSet::new()
        };
        assert_eq!(keys(&node["properties"]), keys(value), "{path}");
        assert_eq!(names(&node["required"]), &keys(value) - &optional, "{path}");
        assert_eq!(node["additionalProperties"], false, "{path}");
    }
    for (node, value) in [
        (&schema["$defs"]["bulk"], &fullest["bulk"]),
        (&schema["$defs"]["bulk"]["properties"]["intervals"]["items"], &fullest["bulk"]["intervals"][0]),
    ] {
        assert_eq!(keys(&node["properties"]), keys(value));
        assert_eq!(names(&node["required"]), keys(value));
    }
    let summary = &schema["$defs"]["summary"];
    assert_eq!(keys(&summary["properties"]), keys(&fullest["latency"]["corrected"]));
    assert_eq!(names(&summary["required"]), keys(&fullest["latency"]["corrected"]));
    // Each warning's fields are documented.
    let warning = &props["warnings"]["items"]["properties"];
    for w in fullest["warnings"].as_array().unwrap() {
        assert!(keys(w).is_subset(&keys(warning)), "{w}");
    }
}

/// The document's `failed` is `Counters::failed`: lost datagrams count.
#[test]
fn failed_is_counters_failed() {
    let doc = full_report().document();
    assert_eq!(doc.failed, doc.counters.failed());
    assert_eq!(doc.failed, 3 + 1 + 5 + 2 + 4);
    assert_eq!(doc.error_rate, 15.0 / 2_015.0);
    assert_eq!(doc.throughput.msgs_per_s, 800.0);
}

#[test]
fn figures_of_nothing_are_zero() {
    let f = Figures::of(&Counters::default(), 0.0);
    assert_eq!(f, Figures { failed: 0, error_rate: 0.0, throughput: Throughput::default() });
    let c = Counters { completed: 10, bytes_echoed: 640, ..Counters::default() };
    assert_eq!(Figures::of(&c, 0.0).throughput, Throughput::default(), "nothing measured");
    let tiny = Figures::of(&Counters { completed: u64::MAX, ..c }, f64::MIN_POSITIVE);
    assert!(tiny.throughput.msgs_per_s.is_finite());
}

proptest::proptest! {
    /// A document's `failed` is the exact sum of the five failure counters, saturating at
    /// `u64::MAX`, and no other counter counts in it.
    #[test]
    fn failed_is_the_saturating_sum(
        v in proptest::array::uniform5(proptest::prop_oneof![
            0..1_000u64,
            proptest::num::u64::ANY,
            (u64::MAX - 8)..=u64::MAX,
        ]),
        noise in proptest::num::u64::ANY,
    ) {
        let c = Counters {
            failed_messages: v[0],
            mismatched_messages: v[1],
            lost: v[2],
            unanswered_at_end: v[3],
            backlog_overflow: v[4],
            completed: noise,
            bytes_sent: noise,
            late: noise,
            ..Counters::default()
        };
        let exact: u128 = v.iter().map(|&x| u128::from(x)).sum();
        let mut doc = ResultDoc::empty("tcp://127.0.0.1:7".into(), None);
        doc.counters = c;
        doc.elapsed_s = 1.0;
        doc.derive();
        proptest::prop_assert_eq!(u128::from(doc.failed), exact.min(u128::from(u64::MAX)));
    }
}

/// A summary's figures are its histogram's own (the empty one's too, which skips
/// hdrhistogram's walk), its quantiles are [`hist::QUANTILES`] in their order, and it
/// gives its histogram back.
#[test]
fn a_summary_is_its_histograms() {
    let mut some = hist::new();
    for v in [1, 700, 5_000, 90_000, hist::MAX_NS] {
        hist::record(&mut some, v);
    }
    for h in [hist::new(), some] {
        let s = Summary::of(&h);
        let walked: Vec<u64> = hist::QUANTILES.iter().map(|&(_, q)| h.value_at_quantile(q)).collect();
        assert_eq!(s.quantiles().map(|(_, v)| v).to_vec(), walked);
        assert_eq!(s.quantiles().map(|(name, _)| name), hist::QUANTILES.map(|(name, _)| name));
        assert_eq!((s.count, s.min, s.max), (h.len(), if h.is_empty() { 0 } else { h.min() }, h.max()));
        assert_eq!((s.mean, s.stdev), (h.mean(), h.stdev()));
        assert_eq!(s.histogram(), h);
    }
}
