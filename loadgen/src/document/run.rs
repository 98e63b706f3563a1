//! One run's document and the runs it holds: a `--repeat`'s repeats, a search's steps,
//! each a document of its own. The shape is recursive, so its parts live here together;
//! reading a nested list counts each run against the file's budget
//! ([`read::budgeted`]) before the run is read.

use super::latency::Latency;
use super::read;
use super::spread::{Repeat, RepeatSpread};
use super::violation::{MAX_REPEATS, MAX_STEPS, Violation};
use crate::counters::Counters;
use crate::figures::{Bulk, Figures, Throughput};
use crate::hist;
use crate::input::bounded_list;
use crate::plan::Plan;
use crate::slo::{Point, Slo};
use crate::views::Views;
use crate::warning::Warning;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Version of the document's shape; bumped on any incompatible change. Adding a field is
/// compatible: readers ignore fields they do not know.
pub const SCHEMA_VERSION: u64 = 1;

/// The `tool` of every ringload document.
pub const TOOL: &str = "ringload";

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
    #[serde(deserialize_with = "read::seconds")]
    pub elapsed_s: f64,
    /// When the measured run began, Unix seconds; 0 when unknown.
    #[serde(default, deserialize_with = "read::seconds")]
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
    #[serde(default, deserialize_with = "read::seconds")]
    pub load_cpu_s: f64,
    /// What went against the user's interest.
    #[serde(default, deserialize_with = "warnings")]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "repeats")]
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
    /// already: [`super::Summary::of`]).
    pub fn derive(&mut self) {
        let Figures { failed, error_rate, throughput } = Figures::of(&self.counters, self.elapsed_s);
        self.failed = failed;
        self.error_rate = error_rate;
        self.throughput = throughput;
        for r in &mut self.repeats {
            r.derive();
        }
        self.spread = (!self.repeats.is_empty())
            .then(|| RepeatSpread::of(&self.repeats.iter().map(ResultDoc::repeat).collect::<Vec<_>>()));
        if let Some(search) = self.search.as_mut() {
            for step in &mut search.steps {
                step.run.derive();
            }
        }
    }

    /// The figures of this run that the spread of repeats is made of.
    fn repeat(&self) -> Repeat<'_> {
        let c = &self.counters;
        Repeat {
            msgs_per_s: self.throughput.msgs_per_s,
            corrected: &self.latency.corrected,
            error_rate: self.error_rate,
            loss: if c.sent == 0 { 0.0 } else { c.lost as f64 / c.sent as f64 },
        }
    }

    /// The SLO's figures at the medians of the repeats (`None` for a single run).
    pub fn repeat_point(&self) -> Option<Point> {
        let runs: Vec<Repeat<'_>> = self.repeats.iter().map(ResultDoc::repeat).collect();
        self.spread.map(|s| s.point(&runs))
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

/// Why a search stopped before it converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// The next step would not fit in `--max-duration`.
    MaxDuration,
    /// [`MAX_STEPS`] steps made.
    StepLimit,
    /// A step's run could not be trusted (the target failed: it stopped answering, is
    /// not an echo, lost connections): no later rate can be judged.
    TargetFailed,
}

/// What a failed step is blamed on, the first that applies in this order: the target
/// failed (its figures cannot be trusted), the load generator fell behind its schedule
/// and the latency from each actual send met the SLO (its own delay is in the figures
/// judged, and may be what broke them), or the target did not sustain the rate under
/// the SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// Ctrl-C cut the step short: it is not judged.
    Interrupted,
    /// The target failed.
    Target,
    /// The load generator could not keep its schedule.
    Client,
    /// The SLO broke, or the target did not achieve the offered rate.
    Slo,
}

/// One step as saved: its verdict and figures, and its run's document (pooled over the
/// repeats, each kept in its `repeats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDoc {
    /// Offered rate, msg/s.
    pub offered: f64,
    /// Achieved rate (the median over repeats), msg/s.
    pub achieved: f64,
    /// It met every rule of a passing step.
    pub passed: bool,
    /// The load workers' CPU share (median over repeats).
    pub client_busy: f64,
    /// The load generator fell behind its schedule (or the hidden test knob
    /// `--test-saturate-above` marked the step): it says nothing of the target's limit.
    pub client_saturated: bool,
    /// The p99 of the client's send lag (median over repeats), ns; absent in documents
    /// from before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_lag_p99_ns: Option<u64>,
    /// Ctrl-C cut the step short: it is not judged.
    #[serde(default)]
    pub interrupted: bool,
    /// The figures judged (medians over repeats).
    pub point: Point,
    /// Why it failed, one sentence each; empty when it passed.
    #[serde(default, deserialize_with = "read::reasons")]
    pub reasons: Vec<String>,
    /// What its failure is blamed on (absent when it passed, and in documents from
    /// before blame was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame: Option<Blame>,
    /// The server's CPU over the step (warm-up and drain included), in CPUs (1.0 = one
    /// CPU busy all the time): read from /proc/PID/stat of `--server-pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu: Option<f64>,
    /// The step's run.
    #[serde(deserialize_with = "run")]
    pub run: ResultDoc,
}

/// A search as saved in the document's `search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDoc {
    /// The objective.
    pub slo: Slo,
    /// The SLO as written.
    pub slo_text: String,
    /// The bisection's stated precision (0.05 = 5%).
    pub precision: f64,
    /// The least achieved share of the offered rate a passing step has.
    pub min_achieved: f64,
    /// Runs per step.
    pub repeat: u32,
    /// The highest offered rate that met the SLO, msg/s; none when no rate did.
    pub answer: Option<f64>,
    /// The answer is a lower bound: the lowest failing step above it is blamed on the
    /// client.
    pub lower_bound: bool,
    /// What would help a client that stopped the search, on the machine it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// Why the search stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// Every step, in the order run.
    #[serde(deserialize_with = "steps")]
    pub steps: Vec<StepDoc>,
}

/// A nested run (a repeat, or a search step's run): counted against the budget, if a
/// file is being read, before it is read.
struct Run(ResultDoc);

impl<'de> Deserialize<'de> for Run {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Run, D::Error> {
        read::count_run().map_err(de::Error::custom)?;
        ResultDoc::deserialize(d).map(Run)
    }
}

/// `repeats`: at most [`MAX_REPEATS`], each counted against the budget.
pub fn repeats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ResultDoc>, D::Error> {
    let max = MAX_REPEATS as usize;
    let runs: Vec<Run> = bounded_list(d, max, || Violation::TooMany { what: "repeats", max }.to_string())?;
    let mut runs: Vec<ResultDoc> = runs.into_iter().map(|r| r.0).collect();
    // A run is 2 KB: the list's spare room (up to 27 of 127) is not kept.
    runs.shrink_to_fit();
    Ok(runs)
}

/// A search step's `run`, counted against the budget.
pub fn run<'de, D: Deserializer<'de>>(d: D) -> Result<ResultDoc, D::Error> {
    Ok(Run::deserialize(d)?.0)
}

/// `search.steps`: at most [`MAX_STEPS`].
pub fn steps<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<StepDoc>, D::Error> {
    bounded_list(d, MAX_STEPS, || Violation::TooMany { what: "search steps", max: MAX_STEPS }.to_string())
}

/// `warnings`: at most [`MAX_NOTES`].
pub fn warnings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WarningEntry>, D::Error> {
    let max = read::MAX_NOTES;
    bounded_list(d, max, move || format!("more than {max} entries"))
}
