//! Reading saved results: documents of the previous version, errors that name the file
//! and the field, and untrusted input that never panics.

use super::*;
use crate::hist;
use crate::report::testing::full_report;
use crate::warning::Warning;

fn read(doc: serde_json::Value) -> Result<Saved, ResultError> {
    Saved::from_doc("x.json".into(), doc)
}

/// A document as today's report writes it, through JSON text, reads back equal.
#[test]
fn report_document_reads_back_equal() {
    let doc = full_report().document();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let back = read(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.doc, doc);
    assert_eq!(back.name, "lg1");
}

/// Files written by the previous version (before `failed` existed: a run with churn and
/// a failed check, an open-loop run with a warning, and their merge) read back, and
/// write out again as they were plus `failed`.
#[test]
fn previous_version_documents_read_back() {
    for (file, text) in [
        ("v1-closed.json", include_str!("../../tests/data/v1-closed.json")),
        ("v1-open.json", include_str!("../../tests/data/v1-open.json")),
        ("v1-merged.json", include_str!("../../tests/data/v1-merged.json")),
    ] {
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        let saved = Saved::from_doc(file.into(), original.clone()).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(saved.doc.failed, saved.doc.counters.failed(), "{file}");
        let mut again = serde_json::to_value(&saved.doc).unwrap();
        let again_map = again.as_object_mut().unwrap();
        assert_eq!(again_map.remove("failed"), Some(saved.doc.failed.into()), "{file}");
        // Counters added since read as 0 and are written out as such.
        let counters = again_map["counters"].as_object_mut().unwrap();
        for added in ["conns_lost", "sends"] {
            assert_eq!(counters.remove(added), Some(0.into()), "{file}: {added}");
        }
        if let Some(plan) = again_map.get_mut("plan").and_then(|p| p.as_object_mut()) {
            assert_eq!(plan.remove("coalesce"), Some(false.into()), "{file}");
            assert_eq!(
                plan.remove("gso"),
                Some(false.into()),
                "{file}: runs from before batching did not batch"
            );
            assert!(plan.remove("max_duration").is_some(), "{file}");
            let throughput = plan.remove("throughput").expect("written");
            assert_eq!(
                serde_json::from_value::<crate::plan::ThroughputPlan>(throughput).unwrap(),
                Default::default(),
                "{file}: runs from before the bulk modes were request/response"
            );
        }
        if let Some(b) = again_map.get_mut("builtin").and_then(|b| b.as_object_mut()) {
            assert_eq!(b.remove("server_recv_ops"), Some(0.into()), "{file}");
        }
        assert_eq!(again, original, "{file}");
    }
    let merged: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/data/v1-merged.json")).unwrap();
    let merged = read(merged).unwrap();
    assert_eq!(merged.name, "merged (2)");
    assert_eq!(merged.doc.merged_from.as_deref(), Some(&["closed".to_string(), "v1-open.json".into()][..]));
}

#[test]
fn bad_documents_are_errors_not_panics() {
    let e = hist::encode(&hist::new());
    let latency = serde_json::json!({"corrected": {"histogram": e}, "service": {"histogram": e},
                                     "connect": {"histogram": e}});
    let base = |extra: serde_json::Value| {
        let mut d = serde_json::json!({"tool": "ringload", "schema_version": 1, "transport": "tcp",
                                       "elapsed_s": 1, "counters": {}, "latency": latency});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    assert!(read(base(serde_json::json!({}))).is_ok());
    let field = |doc: serde_json::Value| match read(doc) {
        Err(ResultError::Field { file, field, cause }) => {
            assert_eq!(file, "x.json");
            format!("{field}: {cause}")
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(read(serde_json::json!(null)), Err(ResultError::NotRingload { .. })));
    assert!(matches!(read(serde_json::json!({"tool": "other"})), Err(ResultError::NotRingload { .. })));
    assert!(matches!(
        read(serde_json::json!({"tool": "ringload"})),
        Err(ResultError::NoSchemaVersion { .. })
    ));
    assert!(matches!(
        read(serde_json::json!({"tool": "ringload", "schema_version": 99})),
        Err(ResultError::SchemaVersion { found: 99, .. })
    ));
    for (doc, needle) in [
        (base(serde_json::json!({"elapsed_s": -1})), "elapsed_s: "),
        (base(serde_json::json!({"elapsed_s": "1"})), "elapsed_s: "),
        (base(serde_json::json!({"counters": {"x": "y"}})), "counters.x: "),
        (base(serde_json::json!({"counters": {"completed": -1}})), "counters.completed: "),
        (base(serde_json::json!({"counters": {"lost": 1.5}})), "counters.lost: "),
        (base(serde_json::json!({"counters": null})), "counters: "),
        (base(serde_json::json!({"load_cpu_s": -2.0})), "load_cpu_s: "),
        (
            base(serde_json::json!({"latency": {"corrected": {"histogram": "bm90IGEgaGlzdG9ncmFt"}}})),
            "latency.corrected.histogram: ",
        ),
        (
            base(
                serde_json::json!({"latency": {"corrected": {}, "service": {"histogram": e}, "connect": {"histogram": e}}}),
            ),
            "latency.corrected: missing field `histogram`",
        ),
        (
            base(serde_json::json!({"latency": {"unit": "ms", "corrected": {"histogram": e}}})),
            "latency.unit: ",
        ),
        (base(serde_json::json!({"plan": {"target": "tcp://localhost:7"}})), "plan.target: "),
        (base(serde_json::json!({"warnings": [{"code": "nonsense", "message": "m"}]})), "warnings[0]: "),
        (base(serde_json::json!({"transport": 5})), "transport: "),
    ] {
        let got = field(doc);
        assert!(got.starts_with(needle), "{got:?} should start with {needle:?}");
    }
    let mut missing = base(serde_json::json!({}));
    missing.as_object_mut().unwrap().remove("transport");
    assert!(field(missing).starts_with("the document: missing field `transport`"));
}

/// The whole message names the file and the field, and the cause.
#[test]
fn error_message_names_file_and_field() {
    let e = hist::encode(&hist::new());
    let doc = serde_json::json!({"tool": "ringload", "schema_version": 1, "transport": "tcp", "elapsed_s": 1,
        "counters": {"completed": "many"},
        "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}}});
    let err = anyhow::Error::from(read(doc).unwrap_err());
    let text = format!("{err:#}");
    assert!(text.starts_with("x.json: counters.completed: invalid type: string \"many\""), "{text}");
}

fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)),
        "[a-z0-9+/=]{0,24}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("tool".to_string()),
                    Just("schema_version".to_string()),
                    Just("transport".to_string()),
                    Just("elapsed_s".to_string()),
                    Just("counters".to_string()),
                    Just("latency".to_string()),
                    Just("histogram".to_string()),
                    Just("plan".to_string()),
                    Just("failed".to_string()),
                    Just("lost".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every place in a document that holds a value: `/`-separated paths of the keys and
/// indices leading there.
fn paths(v: &serde_json::Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let mut p = at.clone();
                p.push(k.clone());
                out.push(p.clone());
                paths(v, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let mut p = at.clone();
                p.push(i.to_string());
                out.push(p.clone());
                paths(v, p, out);
            }
        }
        _ => {}
    }
}

/// Everything that reads a document, on one the reader accepted (the fuzz targets'
/// check), and a plot written to a temporary file.
fn exercise(s: &Saved) {
    crate::fuzz::exercise(s);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.svg");
    if crate::plot::percentiles(std::slice::from_ref(s), &out).is_ok() {
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(!svg.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')));
    }
}

proptest::proptest! {
    /// Whatever a result file holds, reading and merging it gives a value or an
    /// error, never a panic.
    #[test]
    fn untrusted_documents_never_panic(mut doc in json_value(), tool in proptest::bool::ANY) {
        if tool {
            if let Some(o) = doc.as_object_mut() {
                o.insert("tool".into(), "ringload".into());
                o.insert("schema_version".into(), 1.into());
            }
        }
        if let Ok(s) = read(doc) {
            exercise(&s);
        }
    }

    /// A real document with one value anywhere in it replaced by anything: a value or
    /// an error, never a panic; and what reads, merges into a document that reads too.
    #[test]
    fn one_bad_field_never_panics(pick in proptest::num::usize::ANY, junk in json_value()) {
        let mut doc = serde_json::to_value(full_report().document()).unwrap();
        let mut all = Vec::new();
        paths(&doc, Vec::new(), &mut all);
        let path = &all[pick % all.len()];
        let pointer: String = path.iter().map(|k| format!("/{k}")).collect();
        if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = junk;
        }
        if let Ok(s) = read(doc) {
            exercise(&s);
            if let Ok((m, _)) = crate::merge::merge(&[s.clone(), s], false) {
                let back = read(serde_json::to_value(&m).unwrap());
                proptest::prop_assert!(back.is_ok(), "{back:?}");
            }
        }
    }
}

/// A document as ringload could write it, from arbitrary figures: counts (small, or
/// near the top), samples, times, a label with any characters, warnings.
fn consistent_doc() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let count = prop_oneof![0..1_000u64, (u64::MAX - 8)..=u64::MAX, Just(0u64)];
    let samples = proptest::collection::vec((1..hist::MAX_NS, 1..1_000u64), 0..20);
    let label = "(\\PC|[\\x00-\\x1f|<>*_`\\[\\]]){0,40}";
    let warning = prop_oneof![
        (0.0..2.0f64).prop_map(|busy| Warning::ClientSaturated { busy }),
        (1.0..1e6f64, 0.0..1e6f64)
            .prop_map(|(requested, achieved)| Warning::RateShortfall { requested, achieved }),
        any::<u64>().prop_map(|failed| Warning::Errors { failed }),
        Just(Warning::SharedCpu),
        Just(Warning::Interrupted),
        (-100.0..100.0f64, 0.0..200.0f64)
            .prop_map(|(overlap_s, span_s)| Warning::NotConcurrent { overlap_s, span_s }),
    ];
    (
        proptest::array::uniform6(count),
        samples,
        0u64..1_000,
        (1e-6..1e6f64, 0.0..2e9f64),
        label,
        proptest::collection::vec(warning, 0..4),
    )
        .prop_map(|(c, samples, extra_sent, (elapsed, started), label, warnings)| {
            let mut h = hist::new();
            for (v, n) in samples {
                h.record_n(v, n).unwrap();
            }
            let e = hist::encode(&h);
            let completed = h.len();
            let warnings: Vec<crate::document::WarningEntry> = warnings.iter().map(Into::into).collect();
            serde_json::json!({
                "tool": "ringload", "schema_version": 1, "transport": "udp", "elapsed_s": elapsed,
                "started_unix": started, "label": label, "warnings": warnings,
                "counters": {"completed": completed, "sent": completed.saturating_add(extra_sent),
                             "lost": c[0], "failed_messages": c[1], "mismatched_messages": c[2],
                             "unanswered_at_end": c[3], "backlog_overflow": c[4], "bytes_echoed": c[5]},
                "latency": {"corrected": {"histogram": e}, "service": {"histogram": e},
                            "connect": {"histogram": hist::encode(&hist::new())}},
            })
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Item 13: a document that keeps the invariants is accepted (no false refusal),
    /// and whatever is accepted renders in every format, compares, merges and plots.
    #[test]
    fn consistent_documents_are_accepted_and_render(doc in consistent_doc()) {
        let s = read(doc);
        proptest::prop_assert!(s.is_ok(), "{:?}", s.err().map(|e| e.to_string()));
        exercise(&s.unwrap());
    }

    /// The same of searches: steps of any verdict, each a run with its repeats, the
    /// answer the highest rate that passed.
    #[test]
    fn consistent_searches_are_accepted_and_render(doc in consistent_search()) {
        let s = read(doc);
        proptest::prop_assert!(s.is_ok(), "{:?}", s.err().map(|e| e.to_string()));
        exercise(&s.unwrap());
    }
}

/// A search as ringload could write it: 1 to 5 steps, each passed or failed (with a
/// reason), its figures in range, its run with up to 3 repeats; an SLO of some metrics;
/// the answer the highest offered rate that passed, a lower bound only of an answer.
fn consistent_search() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let latencies = proptest::collection::vec(0.0..1e10f64, 5).prop_map(|mut v| {
        v.sort_by(f64::total_cmp);
        v
    });
    let step = (
        (1.0..1e7f64, any::<bool>(), 0.0..2.0f64, 0.0..3.0f64, proptest::option::of(0.0..64.0f64)),
        (latencies, 0.0..=1.0f64, 0.0..=1.0f64),
        consistent_doc(),
        proptest::collection::vec(consistent_doc(), 0..4),
    )
        .prop_map(|((offered, passed, achieved, busy, server_cpu), (l, errors, loss), mut run, repeats)| {
            if !repeats.is_empty() {
                run["repeats"] = repeats.into();
            }
            let mut step = serde_json::json!({
                "offered": offered, "achieved": offered * achieved, "passed": passed, "client_busy": busy,
                "client_saturated": !passed, "reasons": if passed { vec![] } else { vec!["slow"] },
                "point": {"p50": l[0], "p90": l[1], "p99": l[2], "p999": l[3], "max": l[4], "errors": errors, "loss": loss},
                "run": run,
            });
            if let Some(cpu) = server_cpu {
                step["server_cpu"] = cpu.into();
            }
            step
        });
    let clauses = proptest::sample::subsequence(
        vec![("p99", 1e6), ("max", 5e7), ("errors", 0.01), ("loss", 0.0)],
        0..=4,
    );
    (consistent_doc(), proptest::collection::vec(step, 1..6), clauses, 0.001..=1.0f64, any::<bool>())
        .prop_map(|(mut doc, steps, clauses, precision, bound)| {
            let repeat = steps.iter().map(|s| s["run"]["repeats"].as_array().map_or(0, Vec::len)).max();
            let answer = steps.iter().filter(|s| s["passed"] == true).filter_map(|s| s["offered"].as_f64()).reduce(f64::max);
            let clauses: Vec<serde_json::Value> =
                clauses.iter().map(|(metric, limit)| serde_json::json!({"metric": metric, "limit": limit})).collect();
            doc["search"] = serde_json::json!({
                "slo": {"clauses": clauses}, "slo_text": "p99<1ms", "precision": precision, "min_achieved": 0.97,
                "repeat": repeat.unwrap_or(0).max(1), "answer": answer, "lower_bound": bound && answer.is_some(),
                "steps": steps,
            });
            doc
        })
}

/// Fields that each read but together break a rule: an error naming the file and the
/// rule, never figures that cannot all be true.
#[test]
fn invariants_are_errors_naming_the_rule() {
    let good = serde_json::to_value(full_report().document()).unwrap();
    assert!(read(good.clone()).is_ok());
    for (edit, needle) in [
        (
            serde_json::json!({"counters": {"sent": 10, "completed": 2000}}),
            "counters.completed (2000) is more than counters.sent (10)",
        ),
        (
            serde_json::json!({"counters": {"sent": 5000, "completed": 2001}}),
            "latency.corrected.histogram holds 2000 samples but counters.completed is 2001",
        ),
        (serde_json::json!({"elapsed_s": 0.0}), "counters.completed is 2000 but elapsed_s is 0"),
        (serde_json::json!({"started_unix": 1e300}), "started_unix (1e300) is not a time"),
        (
            serde_json::json!({"plan": {"cpus": [0, 1, 2, 3, 4]}}),
            "plan: no run has this plan: --threads: more workers than connections",
        ),
    ] {
        let mut doc = good.clone();
        for (k, v) in edit.as_object().unwrap() {
            match v {
                serde_json::Value::Object(fields) => {
                    for (f, x) in fields {
                        doc[k][f] = x.clone();
                    }
                }
                v => doc[k] = v.clone(),
            }
        }
        let e = read(doc).unwrap_err();
        assert!(matches!(e, ResultError::Invariant { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("x.json: {needle}")), "{e}");
    }
}

/// Lists are bounded as they are read, and so are the runs of the whole document,
/// however they nest: the one past a bound is refused, naming where it was met.
#[test]
fn bounds_are_kept_while_reading() {
    use crate::report::testing::{minimal_run, minimal_search};
    let field = |doc: serde_json::Value| match read(doc) {
        Err(ResultError::Field { field, cause, .. }) => format!("{field}: {cause}"),
        other => panic!("{:?}", other.map(|s| s.name)),
    };
    let mut doc = minimal_run();
    doc["repeats"] = vec![minimal_run(); 100].into();
    assert!(read(doc.clone()).is_ok(), "100 repeats");
    doc["repeats"] = vec![minimal_run(); 101].into();
    let e = field(doc);
    assert!(e.starts_with("repeats: more than 100 repeats: ringload writes at most 100"), "{e}");
    let e = field(minimal_search(201, 0));
    assert!(e.starts_with("search.steps: more than 200 search steps: ringload writes at most 200"), "{e}");
    // 1 + 41 × 101 runs: the 4,097th is step 40's 55th repeat.
    let e = field(minimal_search(41, 100));
    assert!(e.starts_with("search.steps[40].run.repeats[54]: more than 4096 runs in one document"), "{e}");
    // Exactly 4,096 runs read, and the next document has a budget of its own.
    let mut full = minimal_search(41, 100);
    full["search"]["steps"][40]["run"]["repeats"] = vec![minimal_run(); 54].into();
    for _ in 0..2 {
        let s = read(full.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.doc.search.as_ref().map(|s| s.steps.len()), Some(41));
    }
    // Lists of small entries, each past its bound.
    let good = serde_json::to_value(full_report().document()).unwrap();
    for (pointer, len, needle) in [
        ("/views/client/busy", 8193, "views.client.busy: more than 8192 threads"),
        ("/builtin/server_cpus", 8193, "builtin.server_cpus: more than 8192 CPUs"),
    ] {
        let mut doc = good.clone();
        *doc.pointer_mut(pointer).unwrap() = vec![0; len].into();
        assert!(field(doc).starts_with(needle), "{pointer}");
    }
    let mut doc = minimal_search(1, 0);
    doc["search"]["steps"][0]["reasons"] = vec![""; 65].into();
    assert!(field(doc).starts_with("search.steps[0].reasons: more than 64 entries"));
    // A nested list past its bound.
    let mut doc = minimal_search(1, 0);
    doc["search"]["steps"][0]["run"]["repeats"] = vec![minimal_run(); 101].into();
    assert!(field(doc).starts_with("search.steps[0].run.repeats: more than 100 repeats"));
}
