//! The result document: the one typed form of what `ringload --json` writes and what
//! `merge`, `report`, `compare` and `plot` read back. `schema/result.schema.json`
//! describes the same document, and a test holds the two together.
//!
//! Invariant: every derived figure (`failed`, `error_rate`, `throughput`, the spread of
//! repeats) is computed by [`ResultDoc::derive`] from the counters, the measured time
//! and the repeats, and nowhere else, and a latency summary's figures by [`Summary::of`]
//! from its histogram when it is made: the report, `merge` and reading a saved file all
//! end there, so a document's figures never disagree with its data.

pub mod ab;
pub mod comparison;
mod invariants;
pub mod read;
pub mod search;
mod spread;

pub use crate::figures::Throughput;
pub use invariants::{Range, Violation};
pub use search::{Blame, MAX_STEPS, SearchDoc, StepDoc, Stopped};
pub use spread::{RepeatSpread, limits};

use crate::counters::Counters;
use crate::figures::{Bulk, Figures};
use crate::hist::{self, Encoded, Hist};
use crate::plan::Plan;
use crate::views::Views;
use crate::warning::Warning;
use serde::{Deserialize, Deserializer, Serialize};

/// Version of the document's shape; bumped on any incompatible change. Adding a field is
/// compatible: readers ignore fields they do not know.
pub const SCHEMA_VERSION: u64 = 1;

/// The `tool` of every ringload document.
pub const TOOL: &str = "ringload";

/// The most repeats a run (or a search step) makes, and a document holds.
pub const MAX_REPEATS: u32 = 100;

/// The most runs one document holds in all (itself, its repeats, its search steps and
/// their repeats), and so at most four times as many histograms (a run's [`Latency`]):
/// what 8 MiB ([`crate::input::MAX_DOCUMENT_BYTES`]) holds of ringload's own runs at
/// their smallest (about 2 KB each: a plan, the figures, histograms of a few samples). A
/// search of 200 steps of 100 repeats could be written, but no file that size is read.
pub const MAX_RUNS: usize = 4096;

/// The built-in ringecho server's part in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builtin {
    /// CPUs the server ran on (at most [`crate::views::MAX_THREADS`], a worker each).
    #[serde(deserialize_with = "read::server_cpus")]
    pub server_cpus: Vec<usize>,
    /// Messages the server echoed during the whole run (warm-up included), as bytes in.
    pub server_bytes_in: u64,
    /// Bytes the server sent.
    pub server_bytes_out: u64,
    /// Receive operations the server made (to tell messages per server receive).
    #[serde(default)]
    pub server_recv_ops: u64,
}

/// One ringload result, as saved (`--json`) and read back.
///
/// Fields that documents of earlier versions, or hand-made ones, may lack read as their
/// default; `tool`, `schema_version`, `transport`, `elapsed_s`, `counters` and every
/// histogram are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultDoc {
    /// Version of this shape ([`SCHEMA_VERSION`]).
    pub schema_version: u64,
    /// Always [`TOOL`].
    pub tool: String,
    /// The version of ringload that wrote it.
    #[serde(default, deserialize_with = "read::version")]
    pub version: String,
    /// The run's label (`--label`), or `merged (N)`: at most
    /// [`read::MAX_LABEL_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "read::label")]
    pub label: Option<String>,
    /// The target as resolved (`tcp://127.0.0.1:7007`).
    #[serde(default, deserialize_with = "read::target")]
    pub target: String,
    /// The target's scheme: `tcp`, `udp`, `unix` or `unixgram`.
    #[serde(deserialize_with = "read::transport")]
    pub transport: String,
    /// The built-in ringecho server, when no target was given.
    #[serde(default)]
    pub builtin: Option<Builtin>,
    /// The plan as run (absent only in hand-made documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Measured seconds, after the warm-up.
    #[serde(deserialize_with = "seconds")]
    pub elapsed_s: f64,
    /// When the measured run began, Unix seconds; 0 when unknown.
    #[serde(default, deserialize_with = "seconds")]
    pub started_unix: f64,
    /// Ctrl-C cut the run short.
    #[serde(default)]
    pub interrupted: bool,
    /// Counts. Every entry must be a count, even one this version does not know; a
    /// known one that is missing reads as 0.
    #[serde(deserialize_with = "read::counters")]
    pub counters: Counters,
    /// Failed messages: [`Counters::failed`] (lost with a connection, mismatched, lost
    /// datagrams, unanswered at the end, backlog overflow). Scripts read this instead of
    /// adding counters themselves. Derived: reading recomputes it, so documents written
    /// before it existed read the same.
    #[serde(default)]
    pub failed: u64,
    /// failed ÷ (completed + failed), 0 when both are 0. Derived.
    #[serde(default)]
    pub error_rate: f64,
    /// Rates over the measured time. Derived.
    #[serde(default)]
    pub throughput: Throughput,
    /// Latency summaries and histograms.
    pub latency: Latency,
    /// CPU seconds the load workers used.
    #[serde(default, deserialize_with = "seconds")]
    pub load_cpu_s: f64,
    /// What went against the user's interest.
    #[serde(default, deserialize_with = "read::warnings")]
    pub warnings: Vec<WarningEntry>,
    /// Thresholds that failed, as shown to a person.
    #[serde(default, deserialize_with = "read::failed_checks")]
    pub failed_checks: Vec<String>,
    /// The exit code the run implied.
    #[serde(default)]
    pub exit_code: i32,
    /// The results a merged document was made from (their labels or file names).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "read::merged_from")]
    pub merged_from: Option<Vec<String>>,
    /// `--repeat N`: every repeat's own document, in the order run (this document pools
    /// them). Empty for a single run.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "read::repeats")]
    pub repeats: Vec<ResultDoc>,
    /// The spread of `repeats` (median, min–max, CI of the median). Derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<RepeatSpread>,
    /// `--find-max-rate`: every step and the answer (this document is then the answer's
    /// step, or the first step when no rate met the SLO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Box<SearchDoc>>,
    /// Byte figures of the measured connections in a bulk mode (`--mode send|receive|bulk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<Bulk>,
    /// Byte figures of the background flows of a latency-under-load run (`--background`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Bulk>,
    /// Client and server CPU over the window, the kernel's loss/stall counters, and what
    /// limited the run (absent in merged documents and older ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<Views>,
}

/// The unit of every latency figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatencyUnit {
    /// Nanoseconds.
    #[default]
    #[serde(rename = "ns")]
    Ns,
}

/// The three latency distributions of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Always nanoseconds.
    #[serde(default)]
    pub unit: LatencyUnit,
    /// From each message's intended send time (coordinated omission corrected).
    pub corrected: Summary,
    /// From the actual send.
    pub service: Summary,
    /// Connection set-up.
    pub connect: Summary,
    /// Open loop: how late the client handed each measured message out after its
    /// intended send time, its lag behind its own schedule (absent in a closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Summary>,
}

impl Latency {
    /// The summaries of the histograms (`send_lag` in an open loop only).
    pub fn of(corrected: &Hist, service: &Hist, connect: &Hist, send_lag: Option<&Hist>) -> Latency {
        Latency {
            unit: LatencyUnit::Ns,
            corrected: Summary::of(corrected),
            service: Summary::of(service),
            connect: Summary::of(connect),
            send_lag: send_lag.map(Summary::of),
        }
    }
}

/// A latency histogram and the figures read from it (ns). The histogram is the data,
/// kept encoded ([`Encoded`]: a document may hold thousands); the figures are computed
/// from it when the summary is made ([`Summary::of`]), so every reader of a figure reads
/// the histogram's own. Read from a file, the figures it states must agree with its
/// histogram ([`read::StatedSummary`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "read::StatedSummary")]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest sample, 0 when there are none.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// The histogram: HdrHistogram V2 + DEFLATE, base64.
    #[serde(serialize_with = "histogram_text::serialize")]
    histogram: Encoded,
}

impl Summary {
    /// The summary of `histogram`.
    pub fn of(histogram: &Hist) -> Summary {
        Summary::of_decoded(Encoded::of(histogram), histogram)
    }

    /// The summary of `histogram`, which `encoded` holds.
    fn of_decoded(encoded: Encoded, histogram: &Hist) -> Summary {
        let h = histogram;
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        // hdrhistogram walks all 33,792 buckets to find a quantile of an empty histogram
        // (0): a document may hold thousands.
        let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        let [p50, p90, p99, p999, p9999] = hist::QUANTILES.map(|(_, q)| at(q));
        Summary {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            p50,
            p90,
            p99,
            p999,
            p9999,
            max: h.max(),
            mean: finite(h.mean()),
            stdev: finite(h.stdev()),
            histogram: encoded,
        }
    }

    /// The histogram, decoded.
    pub fn histogram(&self) -> Hist {
        self.histogram.decode()
    }

    /// The histogram as it is kept.
    pub fn encoded(&self) -> &Encoded {
        &self.histogram
    }

    /// The stated figures by name, lowest first: min, the percentiles, max.
    pub fn figures(&self) -> [(&'static str, u64); 7] {
        [
            ("min", self.min),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p999", self.p999),
            ("p9999", self.p9999),
            ("max", self.max),
        ]
    }

    /// The value at each of [`hist::QUANTILES`], in their order, by their names.
    pub fn quantiles(&self) -> [(&'static str, u64); 5] {
        let [(a, _), (b, _), (c, _), (d, _), (e, _)] = hist::QUANTILES;
        [(a, self.p50), (b, self.p90), (c, self.p99), (d, self.p999), (e, self.p9999)]
    }
}

/// A warning as saved: its code and fields, and the sentence shown to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningEntry {
    /// The warning (`code` and its fields).
    #[serde(flatten)]
    pub warning: Warning,
    /// [`Warning::message`].
    pub message: String,
}

impl From<&Warning> for WarningEntry {
    fn from(w: &Warning) -> WarningEntry {
        WarningEntry { warning: w.clone(), message: w.message() }
    }
}

impl ResultDoc {
    /// Recomputes every derived figure from the counters and `elapsed_s`, here and in
    /// every repeat and search step (the latency summaries are their histograms' own
    /// already: [`Summary::of`]).
    pub fn derive(&mut self) {
        let Figures { failed, error_rate, throughput } = Figures::of(&self.counters, self.elapsed_s);
        self.failed = failed;
        self.error_rate = error_rate;
        self.throughput = throughput;
        for r in &mut self.repeats {
            r.derive();
        }
        self.spread = (!self.repeats.is_empty()).then(|| RepeatSpread::of(&self.repeats));
        if let Some(search) = self.search.as_mut() {
            for step in &mut search.steps {
                step.run.derive();
            }
        }
    }

    /// A copy of the run's own fields, without its repeats, their spread and its search:
    /// a document made from this run's figures (a merge) does not hold the runs it pooled
    /// or searched, and is not made to copy them first.
    pub fn without_runs(&self) -> ResultDoc {
        let ResultDoc {
            schema_version,
            tool,
            version,
            label,
            target,
            transport,
            builtin,
            plan,
            elapsed_s,
            started_unix,
            interrupted,
            counters,
            failed,
            error_rate,
            throughput,
            latency,
            load_cpu_s,
            warnings,
            failed_checks,
            exit_code,
            merged_from,
            repeats: _,
            spread: _,
            search: _,
            bulk,
            background,
            views,
        } = self;
        ResultDoc {
            schema_version: *schema_version,
            tool: tool.clone(),
            version: version.clone(),
            label: label.clone(),
            target: target.clone(),
            transport: transport.clone(),
            builtin: builtin.clone(),
            plan: plan.clone(),
            elapsed_s: *elapsed_s,
            started_unix: *started_unix,
            interrupted: *interrupted,
            counters: *counters,
            failed: *failed,
            error_rate: *error_rate,
            throughput: *throughput,
            latency: latency.clone(),
            load_cpu_s: *load_cpu_s,
            warnings: warnings.clone(),
            failed_checks: failed_checks.clone(),
            exit_code: *exit_code,
            merged_from: merged_from.clone(),
            repeats: Vec::new(),
            spread: None,
            search: None,
            bulk: bulk.clone(),
            background: background.clone(),
            views: views.clone(),
        }
    }

    /// A document of a run that measured nothing (a search interrupted before its first
    /// step ended).
    pub fn empty(target: String, plan: Option<Plan>) -> ResultDoc {
        let h = hist::new();
        let mut doc = ResultDoc {
            schema_version: SCHEMA_VERSION,
            tool: TOOL.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: None,
            transport: target.split("://").next().unwrap_or("").into(),
            target,
            builtin: None,
            plan,
            elapsed_s: 0.0,
            started_unix: 0.0,
            interrupted: false,
            counters: Counters::default(),
            failed: 0,
            error_rate: 0.0,
            throughput: Throughput::default(),
            latency: Latency::of(&h, &h, &h, None),
            load_cpu_s: 0.0,
            warnings: Vec::new(),
            failed_checks: Vec::new(),
            exit_code: 0,
            merged_from: None,
            repeats: Vec::new(),
            spread: None,
            search: None,
            bulk: None,
            background: None,
            views: None,
        };
        doc.derive();
        doc
    }
}

/// Seconds: finite and not negative.
pub(crate) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::invalid_value(serde::de::Unexpected::Float(v), &"finite seconds, at least 0"))
    }
}

/// A histogram as base64 text ([`Encoded`]).
pub(crate) mod histogram_text {
    use crate::hist::Encoded;

    pub fn serialize<S: serde::Serializer>(h: &Encoded, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(h.text())
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
