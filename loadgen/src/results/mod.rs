//! Saved results: reading ringload's result documents back, merging them exactly
//! ([`merge`]), re-rendering and comparing them ([`render`], [`compare`]).
//!
//! A saved file is untrusted: reading it checks every field through the typed
//! [`ResultDoc`], never panics, and a bad one is an error naming the file and the field.
//! What is read is normalised: its derived figures are recomputed
//! ([`ResultDoc::derive`]) from its counters and histograms, so every later step works
//! on figures that agree with the data.

mod merge;
mod render;

pub use merge::{MergeWarning, merge};
pub use render::{Delta, Format, compare, render, render_compare};

use crate::document::{ResultDoc, SCHEMA_VERSION, TOOL};
use serde::Deserialize;
use std::path::Path;

/// A result read back from its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// Where it came from: the run's label, or else the file name.
    pub name: String,
    /// The document, checked, with its derived figures recomputed.
    pub doc: ResultDoc,
}

/// Why a result file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The file could not be read.
    #[error("{file}")]
    Io {
        /// The file.
        file: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{file}: not JSON")]
    Json {
        /// The file.
        file: String,
        /// Where and why.
        source: serde_json::Error,
    },
    /// JSON, but not a ringload result.
    #[error("{file}: not a ringload result (no \"tool\": \"{TOOL}\")")]
    NotRingload {
        /// The file.
        file: String,
    },
    /// No `schema_version`, or not an integer.
    #[error("{file}: no schema_version")]
    NoSchemaVersion {
        /// The file.
        file: String,
    },
    /// A `schema_version` this ringload does not read.
    #[error("{file}: schema_version {found}; this ringload reads {SCHEMA_VERSION}")]
    SchemaVersion {
        /// The file.
        file: String,
        /// Its version.
        found: u64,
    },
    /// A field is missing or wrong.
    #[error("{file}: {field}")]
    Field {
        /// The file.
        file: String,
        /// The field's path (`latency.corrected.histogram`, `counters.completed`).
        field: String,
        /// What is wrong with it.
        source: serde_json::Error,
    },
    /// `merge` was given nothing.
    #[error("cannot merge: no results given")]
    NoResults,
    /// `merge` was given results of different transports.
    #[error("cannot merge: {first} is {first_transport} but {other} is {other_transport}")]
    MixedTransports {
        /// The first result.
        first: String,
        /// Its transport.
        first_transport: String,
        /// The one that differs.
        other: String,
        /// Its transport.
        other_transport: String,
    },
    /// A histogram does not fit the merged one.
    #[error("cannot merge: {name}: latency.{which}.histogram")]
    Histogram {
        /// The result.
        name: String,
        /// Which histogram (`corrected`, `service`, `connect`).
        which: &'static str,
        /// Why.
        source: hdrhistogram::AdditionError,
    },
}

/// The two fields that say whether a document is one this ringload reads, looked at
/// before the rest so that a stranger's JSON is called that, not a missing field.
#[derive(serde::Deserialize)]
struct Identity {
    #[serde(default)]
    tool: Option<serde_json::Value>,
    #[serde(default)]
    schema_version: Option<serde_json::Value>,
}

impl Saved {
    /// Reads and checks a result file.
    pub fn load(path: &Path) -> Result<Saved, ResultError> {
        let file = path.display().to_string();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(source) => return Err(ResultError::Io { file, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(value) => Saved::from_doc(file, value),
            Err(source) => Err(ResultError::Json { file, source }),
        }
    }

    /// Checks a parsed document; `file` names it in errors, and in results without a
    /// label.
    pub fn from_doc(file: String, value: serde_json::Value) -> Result<Saved, ResultError> {
        let identity = match Identity::deserialize(&value) {
            Ok(i) => i,
            Err(_) => return Err(ResultError::NotRingload { file }),
        };
        if identity.tool.as_ref().and_then(serde_json::Value::as_str) != Some(TOOL) {
            return Err(ResultError::NotRingload { file });
        }
        match identity.schema_version.as_ref().and_then(serde_json::Value::as_u64) {
            Some(SCHEMA_VERSION) => {}
            Some(found) => return Err(ResultError::SchemaVersion { file, found }),
            None => return Err(ResultError::NoSchemaVersion { file }),
        }
        let mut doc: ResultDoc = match serde_path_to_error::deserialize(&value) {
            Ok(doc) => doc,
            Err(e) => {
                let field = match e.path().to_string() {
                    root if root == "." => "the document".to_owned(),
                    path => path,
                };
                return Err(ResultError::Field { file, field, source: e.into_inner() });
            }
        };
        doc.derive();
        let name = doc.label.clone().filter(|l| !l.is_empty()).unwrap_or(file);
        Ok(Saved { name, doc })
    }

    /// Answered messages per second.
    pub fn throughput(&self) -> f64 {
        self.doc.throughput.msgs_per_s
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Saved;
    use crate::hist;

    /// A minimal saved result: `completed` messages over `elapsed` seconds, each taking
    /// `latency_ns` (at most 10,000 samples).
    pub fn fake(name: &str, completed: u64, elapsed: f64, latency_ns: u64) -> Saved {
        let mut h = hist::new();
        for _ in 0..completed.min(10_000) {
            hist::record(&mut h, latency_ns);
        }
        let e = hist::encode(&h);
        let doc = serde_json::json!({
            "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": elapsed,
            "counters": {"completed": completed, "bytes_echoed": completed * 64},
            "plan": {"target": "tcp://127.0.0.1:7", "connections": 1, "model": {"model": "closed", "depth": 1},
                     "size": {"min": 64, "max": 64}, "stop": {"duration": 1.0}, "warmup": 0.0, "verify": false,
                     "cpus": [0], "udp_timeout": 1.0, "connect_timeout": 1.0, "drain": 1.0, "seed": 1},
            "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}},
            "label": name,
        });
        Saved::from_doc(name.into(), doc).unwrap()
    }
}

#[cfg(test)]
mod tests;
