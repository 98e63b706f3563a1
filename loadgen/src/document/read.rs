//! Reading a document's fields from an untrusted file: every text and every list has a
//! bound, checked as it is read, so a hostile file's size is not multiplied in memory
//! (a list of a million empty strings, a 70,000-character label, a thousand search
//! steps); and the figures a summary states must agree with its own histogram.
//!
//! Bounds (each generous for anything ringload writes): a label, 256 characters (what
//! `--label` allows); a target, 4,096 bytes; the version, 64; `merged_from`, 4,096
//! names of at most 4,096 bytes; `warnings` and `failed_checks`, 64 entries; `counters`,
//! 256 entries; `repeats`, `MAX_REPEATS`; `search.steps`, `MAX_STEPS` (`super::run` reads those lists); a step's
//! `reasons`, 64; a list of CPUs or of per-thread figures, [`crate::views::MAX_THREADS`]
//! (`crate::views` bounds its own, `crate::plan` the plan's). Labels are
//! refused past the bound, not truncated: two labels cut to the same prefix would read
//! as one run.
//!
//! Invariant: while a file is read ([`budgeted`]), the whole document, however its runs
//! nest, holds at most [`MAX_RUNS`] runs, each counted as it is met, before it is read
//! (the one past the bound is refused), and so at most ten times as many histograms (four, and six more with a latency breakdown)
//! (a run's `Latency`). A histogram is decoded once to be checked and summed
//! up, then kept encoded.

use super::violation::{MAX_RUNS, Violation};
use crate::counters::Counters;
use crate::input::bounded_list;
use serde::Deserialize;
use serde::de::MapAccess;
use serde::de::{self, Deserializer, Visitor};
use std::cell::Cell;
use std::fmt;

/// The longest label a document may carry, in characters.
pub const MAX_LABEL_CHARS: usize = 256;
/// The longest target text.
pub const MAX_TARGET_BYTES: usize = 4096;
/// The most results a merged document names.
pub const MAX_MERGED: usize = 4096;
/// The most warnings or failed checks a document lists.
pub const MAX_NOTES: usize = 64;
/// The most counters a document holds (known or not).
pub const MAX_COUNTERS: usize = 256;

/// A string of at most `MAX` bytes.
pub struct Text<const MAX: usize>(pub String);

impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() > MAX {
            return Err(de::Error::custom(format_args!("{} bytes of text; at most {MAX} are read", s.len())));
        }
        Ok(Text(s))
    }
}

/// The message of a list past its bound.
fn entries(max: usize) -> impl FnOnce() -> String {
    move || format!("more than {max} entries")
}

/// The built-in server's `server_cpus`: at most [`crate::views::MAX_THREADS`].
pub fn server_cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    let max = crate::views::MAX_THREADS;
    bounded_list(d, max, move || format!("more than {max} CPUs"))
}

/// `reasons` of a search step: at most [`MAX_NOTES`] of at most 1 KiB each.
pub fn reasons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    failed_checks(d)
}

thread_local! {
    /// How many more runs the document this thread is reading may hold; none outside
    /// [`budgeted`].
    static RUNS_LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `read` (the parsing of one document) with a fresh budget: the document itself
/// is the first of its [`MAX_RUNS`] runs, and every nested run met until `read` returns
/// is counted before it is read. Outside it (a document made in this process) nothing
/// is counted.
pub fn budgeted<T>(read: impl FnOnce() -> T) -> T {
    /// Puts the budget of an enclosing read back, even if `read` unwinds.
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNS_LEFT.set(self.0);
        }
    }
    let _restore = Restore(RUNS_LEFT.replace(Some(MAX_RUNS - 1)));
    read()
}

/// Counts one nested run (a repeat, or a search step's run) against the budget of the
/// document being read, before it is read; refused past [`MAX_RUNS`]. Nothing is
/// counted outside [`budgeted`].
pub fn count_run() -> Result<(), Violation> {
    if let Some(left) = RUNS_LEFT.get() {
        RUNS_LEFT.set(Some(left.checked_sub(1).ok_or(Violation::TooManyRuns)?));
    }
    Ok(())
}

/// `--label`: printable text of at most [`MAX_LABEL_CHARS`] characters (what a saved
/// result may carry).
pub fn parse_label(text: &str) -> Result<String, String> {
    if text.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("at most {MAX_LABEL_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("no control characters (newlines, escapes)".into());
    }
    Ok(text.to_owned())
}

/// `label`: at most [`MAX_LABEL_CHARS`] characters.
pub fn label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(label) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let chars = label.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(de::Error::custom(format_args!(
            "{chars} characters; a label has at most {MAX_LABEL_CHARS}"
        )));
    }
    Ok(Some(label))
}

/// `transport`: one of the four ringload knows.
pub fn transport<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    const KNOWN: [&str; 4] = ["tcp", "udp", "unix", "unixgram"];
    let t =
        Text::<16>::deserialize(d).map_err(|_| de::Error::custom("not one of tcp, udp, unix, unixgram"))?.0;
    if KNOWN.contains(&t.as_str()) { Ok(t) } else { Err(de::Error::unknown_variant(&t, &KNOWN)) }
}

/// `target`: at most [`MAX_TARGET_BYTES`].
pub fn target<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Text::<MAX_TARGET_BYTES>::deserialize(d)?.0)
}

/// `version`: at most 64 bytes.
pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Text::<64>::deserialize(d)?.0)
}

/// `merged_from`: at most [`MAX_MERGED`] names.
pub fn merged_from<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Names(Vec<String>);
    impl<'de> Deserialize<'de> for Names {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let names: Vec<Text<MAX_TARGET_BYTES>> = bounded_list(d, MAX_MERGED, entries(MAX_MERGED))?;
            Ok(Names(names.into_iter().map(|t| t.0).collect()))
        }
    }
    Ok(Option::<Names>::deserialize(d)?.map(|n| n.0))
}

/// `failed_checks`: at most [`MAX_NOTES`] of at most 1 KiB each.
pub fn failed_checks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let checks: Vec<Text<1024>> = bounded_list(d, MAX_NOTES, entries(MAX_NOTES))?;
    Ok(checks.into_iter().map(|t| t.0).collect())
}

/// Seconds: finite and not negative.
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(serde::de::Error::invalid_value(serde::de::Unexpected::Float(v), &"finite seconds, at least 0"))
    }
}

/// `counters`: every entry a count (an unknown one too, so a newer ringload's counter
/// that is not a count is still refused), at most [`MAX_COUNTERS`] entries; the known
/// ones fill [`Counters`].
pub fn counters<'de, D: Deserializer<'de>>(d: D) -> Result<Counters, D::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, u64)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a map of at most {MAX_COUNTERS} counts")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<Text<64>, u64>()? {
                if out.len() == MAX_COUNTERS {
                    return Err(de::Error::custom(format_args!("more than {MAX_COUNTERS} counters")));
                }
                out.push((k.0, v));
            }
            Ok(out)
        }
    }
    let all = d.deserialize_map(Entries)?;
    let entries = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(all.into_iter());
    Counters::deserialize(entries).map_err(de::Error::custom)
}
