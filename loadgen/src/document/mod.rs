//! The result document: the one typed form of what `ringload --json` writes and what
//! `merge`, `report`, `compare` and `plot` read back. `schema/result.schema.json`
//! describes the same document, and a test holds the two together.
//!
//! Invariant: every derived figure (`failed`, `error_rate`, `throughput`, the spread of
//! repeats) is computed by [`ResultDoc::derive`] from the counters, the measured time
//! and the repeats, and nowhere else, and a latency summary's figures by [`Summary::of`]
//! from its histogram when it is made: the report, `merge` and reading a saved file all
//! end there, so a document's figures never disagree with its data.
//!
//! Parts, bottom first: `violation` (the rules a document can break), `read` (bounded
//! readers of untrusted fields), `latency`, `spread`, `run` (the recursive shape: a run,
//! its repeats, its search), then what reads a document: `invariants`, `search`, `ab`,
//! `comparison`. This file only names them.

pub mod ab;
pub mod comparison;
mod invariants;
mod latency;
pub mod read;
mod run;
pub mod search;
mod spread;
mod violation;

pub use crate::figures::Throughput;
pub use latency::{Latency, LatencyBreakdown, LatencyUnit, Summary};
pub use run::{Blame, Builtin, ResultDoc, SCHEMA_VERSION, SearchDoc, StepDoc, Stopped, TOOL, WarningEntry};
pub use spread::RepeatSpread;
pub use violation::{MAX_REPEATS, MAX_RUNS, MAX_STEPS, Range, Violation};

#[cfg(test)]
mod tests;
