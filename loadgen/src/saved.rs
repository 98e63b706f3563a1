//! Saved results: reading ringload's result documents back, for `report`, `merge`,
//! `compare` and `plot`.
//!
//! A saved file is untrusted: only a regular file of bounded size is read
//! ([`crate::input`]); reading it checks every field through the typed [`ResultDoc`] (every
//! text and list bounded, every histogram's size checked before it is decoded, the runs
//! and histograms of the whole document counted as they are met: [`read::budgeted`]) and
//! then the rules every result keeps ([`ResultDoc::check`]); it never panics, and a bad
//! one is an error naming the file and the field or rule. Its memory is a small multiple
//! of the file's size, whatever its shape: histograms are kept encoded.
//! What is read is normalised: its derived figures are recomputed
//! ([`ResultDoc::derive`]) from its counters and histograms, so every later step works
//! on figures that agree with the data.

use crate::document::{ResultDoc, SCHEMA_VERSION, TOOL, Violation, read};
use crate::input::{self, InputError};
use std::path::Path;

/// A result read back from its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// Where it came from: the run's label, or else the file name.
    pub name: String,
    /// The document, checked, with its derived figures recomputed.
    pub doc: ResultDoc,
}

/// Why a result file could not be used. Every message is a sentence naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The file could not be read (or is not a regular file, or too large).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The file is not JSON.
    #[error("{file}: not JSON ({cause})")]
    Json {
        /// The file.
        file: String,
        /// Where and why.
        cause: serde_json::Error,
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
    #[error("{file}: {field}: {cause}")]
    Field {
        /// The file.
        file: String,
        /// The field's path (`latency.corrected.histogram`, `counters.completed`).
        field: String,
        /// What is wrong with it.
        cause: serde_json::Error,
    },
    /// The fields read, but together break a rule every result keeps.
    #[error("{file}: {cause}")]
    Invariant {
        /// The file.
        file: String,
        /// The rule and the values that break it.
        cause: Violation,
    },
}

/// The two fields that say whether a document is one this ringload reads, looked at
/// before the rest so that a stranger's JSON is called that, not a missing field. Any
/// other field is skipped unread.
#[derive(serde::Deserialize)]
struct Identity {
    #[serde(default)]
    tool: Probe,
    #[serde(default)]
    schema_version: Probe,
}

/// A value looked at without keeping it: a short string, an integer, or anything else
/// (skipped, whatever its size).
#[derive(Default)]
enum Probe {
    Text(String),
    Number(u64),
    #[default]
    Other,
}

impl<'de> serde::Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Probe, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Probe, E> {
                Ok(if v.len() <= 64 { Probe::Text(v.to_owned()) } else { Probe::Other })
            }
            fn visit_u64<E>(self, v: u64) -> Result<Probe, E> {
                Ok(Probe::Number(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Probe, E> {
                Ok(Probe::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Probe, E> {
                Ok(Probe::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Probe, E> {
                Ok(Probe::Other)
            }
            fn visit_unit<E>(self) -> Result<Probe, E> {
                Ok(Probe::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Probe, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Probe::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Probe, A::Error> {
                while a.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Probe::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl Saved {
    /// Reads and checks a result file (a regular file of at most
    /// [`input::MAX_DOCUMENT_BYTES`]).
    pub fn load(path: &Path) -> Result<Saved, ResultError> {
        let bytes = input::read_document(path)?;
        Saved::from_bytes(path.display().to_string(), &bytes)
    }

    /// Checks a document's bytes; `file` names it in errors, and in results without a
    /// label. The bytes are parsed straight into the typed document (never into a
    /// generic JSON tree, which would multiply a hostile file's size in memory).
    pub fn from_bytes(file: String, bytes: &[u8]) -> Result<Saved, ResultError> {
        let identity = match serde_json::from_slice::<Identity>(bytes) {
            Ok(i) => i,
            Err(e) if e.is_data() => return Err(ResultError::NotRingload { file }),
            Err(cause) => return Err(ResultError::Json { file, cause }),
        };
        if !matches!(&identity.tool, Probe::Text(t) if t == TOOL) {
            return Err(ResultError::NotRingload { file });
        }
        match identity.schema_version {
            Probe::Number(SCHEMA_VERSION) => {}
            Probe::Number(found) => return Err(ResultError::SchemaVersion { file, found }),
            _ => return Err(ResultError::NoSchemaVersion { file }),
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut doc: ResultDoc = match read::budgeted(|| serde_path_to_error::deserialize(&mut de)) {
            Ok(doc) => doc,
            Err(e) => {
                let field = match e.path().to_string() {
                    root if root == "." => "the document".to_owned(),
                    path => path,
                };
                return Err(ResultError::Field { file, field, cause: e.into_inner() });
            }
        };
        doc.derive();
        if let Err(cause) = doc.check() {
            return Err(ResultError::Invariant { file, cause });
        }
        let name = doc.label.clone().filter(|l| !l.is_empty()).unwrap_or(file);
        Ok(Saved { name, doc })
    }

    /// Checks a parsed document (as [`Saved::from_bytes`]).
    pub fn from_doc(file: String, value: serde_json::Value) -> Result<Saved, ResultError> {
        let bytes =
            serde_json::to_vec(&value).map_err(|cause| ResultError::Json { file: file.clone(), cause })?;
        Saved::from_bytes(file, &bytes)
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

    /// When every fake run began: they all ran together.
    pub const STARTED: f64 = 1_764_000_000.0;

    /// A minimal saved result: `completed` messages over `elapsed` seconds from
    /// [`STARTED`], each taking `latency_ns`.
    pub fn fake(name: &str, completed: u64, elapsed: f64, latency_ns: u64) -> Saved {
        let mut h = hist::new();
        if completed > 0 {
            h.record_n(latency_ns.clamp(1, hist::MAX_NS), completed).unwrap();
        }
        let e = hist::encode(&h);
        let doc = serde_json::json!({
            "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": elapsed,
            "started_unix": STARTED,
            "counters": {"sent": completed, "completed": completed, "bytes_echoed": completed * 64},
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
