//! Documents that read field by field but could not have been written: each is refused,
//! naming the file, the field and the rule; and what ringload writes is not.

use crate::report::testing::{full_report, minimal_search};
use crate::saved::{ResultError, Saved};
use serde_json::{Value, json};

/// An edit of a document.
type Edit<'a> = &'a dyn Fn(&mut Value);

fn read(doc: Value) -> Result<Saved, ResultError> {
    Saved::from_doc("x.json".into(), doc)
}

/// A search of three steps at 1000, 1001 and 1002 msg/s, the first two passing: its
/// answer is 1001 msg/s.
fn search() -> Value {
    let mut doc = minimal_search(3, 0);
    for i in 0..2 {
        doc["search"]["steps"][i]["passed"] = true.into();
        doc["search"]["steps"][i]["reasons"] = json!([]);
    }
    doc["search"]["answer"] = 1001.0.into();
    doc
}

/// Each edit of a good document, with the start of the sentence it must be refused with.
#[test]
fn impossible_documents_are_refused_naming_the_rule() {
    assert!(read(search()).is_ok());
    let step = "search.steps[0]";
    let cases: Vec<(Edit, String)> = vec![
        (
            &|d| d["search"]["answer"] = (-5.0).into(),
            "search.answer is -5 msg/s, but the highest passing step offered 1001 msg/s".into(),
        ),
        (&|d| d["search"]["answer"] = Value::Null, "search.answer is null, but the highest passing".into()),
        (
            &|d| {
                d["search"]["steps"][0]["passed"] = false.into();
                d["search"]["steps"][1]["passed"] = false.into();
                d["search"]["steps"][0]["reasons"] = json!(["x"]);
                d["search"]["steps"][1]["reasons"] = json!(["x"]);
            },
            "search.answer is 1001 msg/s, but no step passed".into(),
        ),
        (
            &|d| d["search"]["steps"][0]["offered"] = (-5.0).into(),
            format!("{step}: offered is -5, not a finite number above 0"),
        ),
        (
            &|d| d["search"]["steps"][0]["achieved"] = (-1.0).into(),
            format!("{step}: achieved is -1, not a finite number of at least 0"),
        ),
        (
            &|d| d["search"]["steps"][0]["client_busy"] = (-0.5).into(),
            format!("{step}: client_busy is -0.5, not"),
        ),
        (
            &|d| d["search"]["steps"][0]["server_cpu"] = (-2.0).into(),
            format!("{step}: server_cpu is -2, not"),
        ),
        (
            &|d| d["search"]["steps"][0]["point"]["errors"] = 2.0.into(),
            format!("{step}: point.errors is 2, not a share from 0 to 1"),
        ),
        (
            &|d| d["search"]["steps"][0]["point"]["p99"] = 5.0.into(),
            format!("{step}: point: p99 (5 ns) is above p999 (0 ns)"),
        ),
        (
            &|d| d["search"]["steps"][0]["reasons"] = json!(["slow"]),
            format!("{step}: passed is true with 1 reasons: a step passes exactly when nothing failed"),
        ),
        (
            &|d| {
                d["search"]["steps"][2]["run"]["repeats"] =
                    vec![d["search"]["steps"][2]["run"].clone(); 2].into()
            },
            "search.steps[2]: run.repeats has 2 runs; the search runs 1 a step".into(),
        ),
        (
            &|d| d["search"]["repeat"] = 0.into(),
            "search.repeat is 0; ringload runs a step 1 to 100 times".into(),
        ),
        (&|d| d["search"]["repeat"] = 101.into(), "search.repeat is 101".into()),
        (
            &|d| d["search"]["precision"] = 0.0.into(),
            "search.precision is 0, not a share above 0, at most 1".into(),
        ),
        (&|d| d["search"]["min_achieved"] = 1.5.into(), "search.min_achieved is 1.5, not".into()),
        (
            &|d| d["search"]["slo"] = json!({"clauses": [{"metric": "p99", "limit": -1.0}]}),
            "search.slo.clauses[0].limit is -1, not a finite number above 0".into(),
        ),
        (
            &|d| d["search"]["slo"] = json!({"clauses": [{"metric": "loss", "limit": 1.5}]}),
            "search.slo.clauses[0].limit is 1.5, not a share from 0 to 1".into(),
        ),
        (
            &|d| {
                d["search"]["slo"] =
                    json!({"clauses": [{"metric": "p99", "limit": 1e6}, {"metric": "p99", "limit": 2e6}]})
            },
            "search.slo constrains p99 twice".into(),
        ),
        (
            &|d| {
                d["search"]["answer"] = Value::Null;
                for i in 0..2 {
                    d["search"]["steps"][i]["passed"] = false.into();
                    d["search"]["steps"][i]["reasons"] = json!(["x"]);
                }
                d["search"]["lower_bound"] = true.into();
            },
            "search.lower_bound is true but there is no answer to bound".into(),
        ),
        (&|d| d["exit_code"] = 7.into(), "exit_code is 7; ringload exits 0, 1, 2 or 130".into()),
        (
            &|d| d["search"]["steps"][1]["run"]["exit_code"] = (-1).into(),
            "search.steps[1]: exit_code is -1".into(),
        ),
        (
            &|d| d["warnings"] = json!([{"code": "client_saturated", "busy": -1.0, "message": "m"}]),
            "warnings[0].busy is -1, not a finite number of at least 0".into(),
        ),
    ];
    for (edit, needle) in cases {
        let mut doc = search();
        edit(&mut doc);
        let e = read(doc).map(|s| s.name).unwrap_err();
        assert!(matches!(e, ResultError::Invariant { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("x.json: {needle}")),
            "{text}\nshould start with\nx.json: {needle}"
        );
    }
}

/// The figures of a run's views and byte figures: shares of the window at most 1, none
/// negative.
#[test]
fn figures_out_of_range_are_refused() {
    let good = serde_json::to_value(full_report().document()).unwrap();
    assert!(read(good.clone()).is_ok());
    let cases: [(Edit, &str); 4] = [
        (
            &|d| d["views"]["client"]["busy"][1] = 1.5.into(),
            "views.client.busy[1] is 1.5, not a share from 0 to 1",
        ),
        (&|d| d["views"]["server"]["cpu"]["cpu_s"] = (-1.0).into(), "views.server.cpu.cpu_s is -1"),
        (&|d| d["views"]["window_s"] = (-3.0).into(), "views.window_s is -3"),
        (
            &|d| d["warnings"][2]["requested"] = (-1.0).into(),
            "warnings[2].requested is -1, not a finite number of at least 0",
        ),
    ];
    for (edit, needle) in cases {
        let mut doc = good.clone();
        edit(&mut doc);
        let e = read(doc).map(|s| s.name).unwrap_err().to_string();
        assert!(e.starts_with(&format!("x.json: {needle}")), "{e}");
    }
}
