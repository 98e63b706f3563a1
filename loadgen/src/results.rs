//! Saved results: reading ringload's JSON documents back (untrusted files: every field is
//! checked, nothing panics), merging them exactly (histograms added, counters summed,
//! percentiles recomputed — never averaged), re-rendering them, and comparing two.

use crate::hist::{self, Hist};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A result read back from JSON.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Where it came from (file name, or the run's label).
    pub name: String,
    /// The whole document, as read.
    pub doc: serde_json::Value,
    /// Transport (`tcp`, `udp`, ...).
    pub transport: String,
    /// Measured seconds.
    pub elapsed_s: f64,
    /// Counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Latency from the intended send time.
    pub latency: Hist,
    /// Service time.
    pub service: Hist,
    /// Connect times.
    pub connect: Hist,
}

/// Why a result file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// Reading failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Not JSON, or not ours.
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The results cannot be merged.
    #[error("cannot merge: {0}")]
    Incompatible(String),
}

impl Saved {
    /// Reads and checks a result file.
    pub fn load(path: &Path) -> Result<Saved, ResultError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ResultError::Io(name.clone(), e))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ResultError::Invalid(name.clone(), e.to_string()))?;
        Saved::from_doc(name, doc)
    }

    /// Checks a parsed document.
    pub fn from_doc(name: String, doc: serde_json::Value) -> Result<Saved, ResultError> {
        let bad = |why: &str| ResultError::Invalid(name.clone(), why.to_owned());
        if doc.get("tool").and_then(|t| t.as_str()) != Some("ringload") {
            return Err(bad("not a ringload result (no \"tool\": \"ringload\")"));
        }
        match doc.get("schema_version").and_then(|v| v.as_u64()) {
            Some(crate::report::SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(bad(&format!(
                    "schema_version {v}; this ringload reads {}",
                    crate::report::SCHEMA_VERSION
                )));
            }
            None => return Err(bad("no schema_version")),
        }
        let transport =
            doc.get("transport").and_then(|t| t.as_str()).ok_or_else(|| bad("no transport"))?.to_owned();
        let elapsed_s = doc.get("elapsed_s").and_then(|v| v.as_f64()).filter(|v| v.is_finite() && *v >= 0.0);
        let elapsed_s = elapsed_s.ok_or_else(|| bad("no valid elapsed_s"))?;
        let counters = doc
            .get("counters")
            .and_then(|c| c.as_object())
            .ok_or_else(|| bad("no counters"))?
            .iter()
            .map(|(k, v)| {
                v.as_u64().map(|v| (k.clone(), v)).ok_or_else(|| bad(&format!("counter {k} is not a count")))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let histogram = |which: &str| -> Result<Hist, ResultError> {
            let text = doc
                .pointer(&format!("/latency/{which}/histogram"))
                .and_then(|h| h.as_str())
                .ok_or_else(|| bad(&format!("no latency.{which}.histogram")))?;
            hist::decode(text).map_err(|e| bad(&format!("latency.{which}.histogram: {e}")))
        };
        let label = doc.get("label").and_then(|l| l.as_str()).filter(|l| !l.is_empty()).map(str::to_owned);
        Ok(Saved {
            name: label.unwrap_or(name.clone()),
            transport,
            elapsed_s,
            counters,
            latency: histogram("corrected")?,
            service: histogram("service")?,
            connect: histogram("connect")?,
            doc,
        })
    }

    /// Answered messages per second.
    pub fn throughput(&self) -> f64 {
        let completed = self.counters.get("completed").copied().unwrap_or(0);
        if self.elapsed_s > 0.0 { completed as f64 / self.elapsed_s } else { 0.0 }
    }
}

/// Merges results of runs that ran at the same time (several load machines against one
/// target): counters are summed, histograms added, the measured window is the longest
/// of them, percentiles come from the merged histogram. Different transports are
/// refused; different plans are merged with a warning each.
pub fn merge(results: &[Saved]) -> Result<(serde_json::Value, Vec<String>), ResultError> {
    let first = results.first().ok_or_else(|| ResultError::Incompatible("no results given".into()))?;
    let mut warnings = Vec::new();
    for r in &results[1..] {
        if r.transport != first.transport {
            return Err(ResultError::Incompatible(format!(
                "{} is {} but {} is {}",
                first.name, first.transport, r.name, r.transport
            )));
        }
        for key in ["size", "model"] {
            if r.doc.pointer(&format!("/plan/{key}")) != first.doc.pointer(&format!("/plan/{key}")) {
                warnings.push(format!("{} and {} differ in plan.{key}; merged anyway", first.name, r.name));
            }
        }
    }
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    let (mut latency, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut elapsed: f64 = 0.0;
    let mut load_cpu = 0.0;
    for r in results {
        for (k, v) in &r.counters {
            *counters.entry(k.clone()).or_default() += v;
        }
        latency.add(&r.latency).map_err(|e| ResultError::Incompatible(format!("{}: {e:?}", r.name)))?;
        service.add(&r.service).map_err(|e| ResultError::Incompatible(format!("{}: {e:?}", r.name)))?;
        connect.add(&r.connect).map_err(|e| ResultError::Incompatible(format!("{}: {e:?}", r.name)))?;
        elapsed = elapsed.max(r.elapsed_s);
        load_cpu += r.doc.get("load_cpu_s").and_then(|v| v.as_f64()).unwrap_or(0.0);
    }
    let completed = counters.get("completed").copied().unwrap_or(0);
    let failed: u64 =
        ["failed_messages", "mismatched_messages", "lost", "unanswered_at_end", "backlog_overflow"]
            .iter()
            .map(|k| counters.get(*k).copied().unwrap_or(0))
            .sum();
    let echoed = counters.get("bytes_echoed").copied().unwrap_or(0);
    let mut doc = first.doc.clone();
    doc["counters"] = serde_json::to_value(&counters).unwrap_or_default();
    doc["elapsed_s"] = elapsed.into();
    doc["throughput"] = serde_json::json!({
        "msgs_per_s": if elapsed > 0.0 { completed as f64 / elapsed } else { 0.0 },
        "bytes_per_s_each_way": if elapsed > 0.0 { echoed as f64 / elapsed } else { 0.0 },
    });
    doc["error_rate"] =
        (if completed + failed == 0 { 0.0 } else { failed as f64 / (completed + failed) as f64 }).into();
    doc["latency"] = serde_json::json!({
        "unit": "ns",
        "corrected": crate::report::summary_json(&latency),
        "service": crate::report::summary_json(&service),
        "connect": crate::report::summary_json(&connect),
    });
    doc["load_cpu_s"] = load_cpu.into();
    doc["label"] = serde_json::Value::String(format!("merged ({})", results.len()));
    doc["merged_from"] = results.iter().map(|r| serde_json::Value::String(r.name.clone())).collect();
    doc["warnings"] = serde_json::Value::Array(Vec::new());
    doc["failed_checks"] = serde_json::Value::Array(Vec::new());
    doc["interrupted"] = results.iter().any(|r| r.doc["interrupted"] == true).into();
    doc["exit_code"] = (if completed == 0 { 2 } else { 0 }).into();
    Ok((doc, warnings))
}

/// Output formats of `ringload report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// A Markdown table.
    Markdown,
    /// Comma-separated values with a header.
    Csv,
}

const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// Renders results, one row each.
pub fn render(results: &[Saved], format: Format) -> String {
    let mut header = vec!["result".to_string(), "transport".into(), "msg/s".into(), "errors".into()];
    header.extend(QUANTILES.iter().map(|(n, _)| n.to_string()));
    header.push("max".into());
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let failed: u64 =
                ["failed_messages", "mismatched_messages", "lost", "unanswered_at_end", "backlog_overflow"]
                    .iter()
                    .map(|k| r.counters.get(*k).copied().unwrap_or(0))
                    .sum();
            let mut row = vec![
                r.name.clone(),
                r.transport.clone(),
                format!("{:.0}", r.throughput()),
                failed.to_string(),
            ];
            let fmt =
                |ns: u64| if format == Format::Csv { ns.to_string() } else { crate::report::ns(ns as f64) };
            row.extend(QUANTILES.iter().map(|(_, q)| fmt(r.latency.value_at_quantile(*q))));
            row.push(fmt(r.latency.max()));
            row
        })
        .collect();
    let mut out = String::new();
    match format {
        Format::Csv => {
            if let Some(h) = header.first_mut() {
                *h = "result".into();
            }
            let _ = writeln!(out, "{}", header.join(","));
            for row in rows {
                let _ = writeln!(out, "{}", row.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
            }
        }
        Format::Markdown => {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(
                out,
                "|{}|",
                header
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i < 2 { "---" } else { "---:" })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for row in rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        Format::Text => {
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| if i < 2 { format!("{c:<w$}") } else { format!("{c:>w$}") })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let _ = writeln!(out, "{}", line(&header));
            for row in &rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// One line of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// What is compared.
    pub metric: String,
    /// Base value.
    pub base: f64,
    /// New value.
    pub new: f64,
    /// new / base.
    pub ratio: f64,
    /// Worse than the tolerance allows.
    pub regression: bool,
}

/// Compares `new` against `base`: throughput (higher is better) and each percentile
/// (lower is better). A change for the worse beyond `tolerance` (0.05 = 5%) is a
/// regression.
pub fn compare(base: &Saved, new: &Saved, tolerance: f64) -> Vec<Delta> {
    let mut out = Vec::new();
    let (b, n) = (base.throughput(), new.throughput());
    let ratio = if b > 0.0 { n / b } else { f64::INFINITY };
    out.push(Delta { metric: "msg/s".into(), base: b, new: n, ratio, regression: ratio < 1.0 - tolerance });
    for (name, q) in QUANTILES {
        let (b, n) = (base.latency.value_at_quantile(q) as f64, new.latency.value_at_quantile(q) as f64);
        let ratio = if b > 0.0 { n / b } else { 1.0 };
        out.push(Delta { metric: name.into(), base: b, new: n, ratio, regression: ratio > 1.0 + tolerance });
    }
    out
}

/// Renders a comparison as aligned text.
pub fn render_compare(base: &Saved, new: &Saved, deltas: &[Delta]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "base: {}\nnew:  {}\n", base.name, new.name);
    let _ = writeln!(out, "{:<8} {:>14} {:>14} {:>8}", "metric", "base", "new", "ratio");
    for d in deltas {
        let show = |v: f64| if d.metric == "msg/s" { format!("{v:.0}") } else { crate::report::ns(v) };
        let _ = writeln!(
            out,
            "{:<8} {:>14} {:>14} {:>8.3}{}",
            d.metric,
            show(d.base),
            show(d.new),
            d.ratio,
            if d.regression { "  REGRESSION" } else { "" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &str, completed: u64, elapsed: f64, latency_ns: u64) -> Saved {
        let mut h = hist::new();
        for _ in 0..completed.min(10_000) {
            hist::record(&mut h, latency_ns);
        }
        let e = hist::encode(&h);
        let doc = serde_json::json!({
            "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": elapsed,
            "counters": {"completed": completed, "bytes_echoed": completed * 64},
            "plan": {"size": {"min": 64, "max": 64}, "model": {"model": "closed", "depth": 1}},
            "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}},
            "label": name,
        });
        Saved::from_doc(name.into(), doc).unwrap()
    }

    #[test]
    fn compare_flags_twenty_not_one_percent() {
        let base = fake("base", 100_000, 10.0, 100_000);
        let worse = fake("worse", 80_000, 10.0, 100_000);
        let same = fake("same", 99_000, 10.0, 100_000);
        assert!(compare(&base, &worse, 0.05)[0].regression);
        assert!(!compare(&base, &same, 0.05)[0].regression);
        let slower = fake("slower", 100_000, 10.0, 130_000);
        assert!(compare(&base, &slower, 0.05).iter().any(|d| d.metric == "p99" && d.regression));
    }

    #[test]
    fn merge_sums_and_refuses_mixed_transports() {
        let a = fake("a", 1000, 10.0, 50_000);
        let b = fake("b", 3000, 9.0, 150_000);
        let (m, warnings) = merge(&[a.clone(), b.clone()]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(m["counters"]["completed"], 4000);
        assert_eq!(m["elapsed_s"], 10.0);
        let mut both = a.latency.clone();
        both.add(&b.latency).unwrap();
        assert_eq!(m["latency"]["corrected"]["p99"], both.value_at_quantile(0.99));
        let mut udp = b.clone();
        udp.transport = "udp".into();
        assert!(merge(&[a, udp]).is_err());
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        for doc in [
            serde_json::json!(null),
            serde_json::json!({"tool": "ringload"}),
            serde_json::json!({"tool": "ringload", "schema_version": 99}),
            serde_json::json!({"tool": "ringload", "schema_version": 1, "transport": "tcp", "elapsed_s": -1}),
            serde_json::json!({"tool": "ringload", "schema_version": 1, "transport": "tcp", "elapsed_s": 1,
                               "counters": {"x": "y"}}),
            serde_json::json!({"tool": "ringload", "schema_version": 1, "transport": "tcp", "elapsed_s": 1,
                               "counters": {}, "latency": {"corrected": {"histogram": "bm90IGEgaGlzdG9ncmFt"}}}),
        ] {
            assert!(Saved::from_doc("x".into(), doc).is_err());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
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
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
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
            if let Ok(s) = Saved::from_doc("p".into(), doc) {
                let _ = merge(&[s.clone(), s.clone()]);
                let _ = render(std::slice::from_ref(&s), Format::Csv);
                let _ = compare(&s, &s, 0.05);
            }
        }
    }

    #[test]
    fn renders_every_format() {
        let rs = [fake("a,1", 1000, 1.0, 50_000), fake("b", 2000, 1.0, 70_000)];
        assert!(render(&rs, Format::Text).contains("msg/s"));
        assert!(render(&rs, Format::Markdown).starts_with("| result"));
        let csv = render(&rs, Format::Csv);
        assert!(csv.contains("\"a,1\"") && csv.lines().count() == 3);
    }
}
