//! ringload: an io_uring load generator for echo servers, with latency measured from
//! each message's intended send time (no coordinated omission).
//!
//! [`run()`] takes a validated [`Plan`] and returns a [`Report`]; with no target it starts
//! a ringecho server in-process on loopback and measures that. The library never prints:
//! progress goes to the caller's [`Progress`] callback, problems into the report's
//! warnings.
//!
//! The modules are layers, each using only those below it (`docs/ARCHITECTURE.md` lists
//! them, and a test holds the code to the list):
//! 0. leaves: [`units`], [`stats`], [`exit`], [`hist`], [`counters`], [`header`],
//!    [`payload`], [`target`], [`connect`], [`escape`], [`input`];
//! 1. options: [`plan`], [`slo`];
//! 2. the engine: [`engine`];
//! 3. the model, plain data: [`warning`], [`figures`], [`views`], [`document`], [`saved`],
//!    [`intervals`];
//! 4. one run: [`run`](mod@run), [`observe`], [`report`], `verdict`;
//! 5. renderers: [`text`], [`plot`];
//! 6. workflows: [`repeat`], [`capacity`], [`ab`], [`merge`], [`compare`], [`fuzz`];
//! 7. the front: [`cli`], [`options`] (and the binary).
#![deny(missing_docs)]

// 0. leaves
pub mod connect;
pub mod counters;
pub mod escape;
pub mod exit;
pub mod header;
pub mod hist;
pub mod input;
pub mod payload;
pub mod stats;
pub mod target;
pub mod units;
// 1. options
pub mod plan;
pub mod slo;
// 2. the engine
pub mod engine;
// 3. the model
pub mod document;
pub mod figures;
pub mod intervals;
pub mod saved;
pub mod views;
pub mod warning;
// 4. one run
pub mod observe;
pub mod report;
pub mod run;
mod verdict;
// 5. renderers
pub mod plot;
pub mod text;
// 6. workflows
pub mod ab;
pub mod capacity;
pub mod compare;
pub mod fuzz;
pub mod merge;
pub mod repeat;
// 7. the front
pub mod cli;
pub mod options;

pub use document::ResultDoc;
pub use plan::{Model, Plan, SizeSpec, Stop};
pub use report::Report;
pub use run::{Progress, Tick, run, run_at};
pub use target::Target;
