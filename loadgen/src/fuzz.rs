//! The bodies of the fuzz targets (`loadgen/fuzz`, run with `cargo fuzz` on nightly),
//! as ordinary functions so that a stable test runs them too and CI builds them
//! without nightly.
//!
//! Each takes arbitrary bytes, must never panic, and asserts what a reader promises of
//! what it accepts: a result document keeps its invariants and renders in every format;
//! an interval keeps its percentiles in order; a histogram is within ringload's bounds
//! and survives encoding; a datagram header encodes back to the bytes it was read from.
//! [`search_document`] is structure-aware: its bytes are edits of a search ringload
//! wrote, so the fuzzer reaches nested steps and repeats that random JSON seldom forms.

use crate::compare::compare;
use crate::header::{self, Header};
use crate::intervals;
use crate::merge::merge;
use crate::saved::Saved;
use crate::text::table::{Format, render};
use serde_json::Value;
use std::sync::OnceLock;

/// A result document from untrusted bytes: refused, or keeps the invariants and goes
/// through everything that reads documents.
pub fn result_document(data: &[u8]) {
    let Ok(saved) = Saved::from_bytes("fuzz.json".into(), data) else { return };
    exercise(&saved);
}

/// What every accepted document must survive: its invariants hold, it renders in every
/// format, compares and merges with itself, plots, and its merge reads back.
pub fn exercise(saved: &Saved) {
    if let Err(v) = saved.doc.check() {
        panic!("an accepted document breaks an invariant: {v}");
    }
    let both = [saved.clone(), saved.clone()];
    for format in [Format::Text, Format::Markdown, Format::Csv] {
        let text = render(&both, format);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a control character in {format:?}");
    }
    let c = compare(saved, saved, 0.05);
    let text = crate::text::compare::report(saved, saved, &c);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a control character in compare");
    let _ = crate::plot::percentiles_svg(&both);
    if let Some(search) = &saved.doc.search {
        // What `plot` draws of a search, and the search as its run printed it.
        if let Ok(svg) = crate::plot::capacity_svg(saved) {
            assert!(
                !svg.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')),
                "a control character in the plot"
            );
        }
        let _ = crate::text::search::report(&saved.doc.target, search);
    }
    if let Ok((merged, _)) = merge(&both, false) {
        let bytes = serde_json::to_vec(&merged).expect("a merged document serializes");
        if let Err(e) = Saved::from_bytes("merged.json".into(), &bytes) {
            panic!("a merge of an accepted document does not read back: {e}");
        }
    }
}

/// A search document ringload wrote (`fuzz/seeds/search.json`: three steps, one passing,
/// each of two repeats), edited by `data`, then read as [`result_document`] reads any.
/// Every 8 bytes are one edit: two pick a place that holds a value (a field of the
/// search, a step, a run or a repeat, its histograms and figures), one what to put there
/// (null, a boolean, a small or a large integer, a float of any sign and size, the value
/// negated or scaled, text, an empty list or object, a copy of one of its entries added,
/// the place taken out), the rest the value.
pub fn search_document(data: &[u8]) {
    let (template, places) = search_template();
    let mut doc = template.clone();
    for edit in data.chunks(8) {
        apply_edit(&mut doc, places, edit);
    }
    let Ok(bytes) = serde_json::to_vec(&doc) else { return };
    result_document(&bytes);
}

/// The search document [`search_document`] edits, and the JSON pointer of every place in
/// it that holds a value.
fn search_template() -> &'static (Value, Vec<String>) {
    static TEMPLATE: OnceLock<(Value, Vec<String>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let doc: Value =
            serde_json::from_slice(include_bytes!("../fuzz/seeds/search.json")).expect("the seed is JSON");
        let mut places = Vec::new();
        pointers(&doc, String::new(), &mut places);
        (doc, places)
    })
}

fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)).collect(),
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        _ => return,
    };
    for (key, child) in children {
        let p = format!("{at}/{key}");
        out.push(p.clone());
        pointers(child, p, out);
    }
}

/// One edit (see [`search_document`]); a place an earlier edit took away is left alone.
fn apply_edit(doc: &mut Value, places: &[String], edit: &[u8]) {
    let [a, b, op, rest @ ..] = edit else { return };
    let place = &places[usize::from(u16::from_le_bytes([*a, *b])) % places.len()];
    let mut bytes = [0u8; 8];
    bytes[..rest.len()].copy_from_slice(rest);
    let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let wide = i64::from_le_bytes(bytes) << 24 >> 24;
    if op % 12 == 11 {
        // Taken out of its object or list.
        let Some((parent, key)) = place.rsplit_once('/') else { return };
        match doc.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            Some(Value::Array(list)) => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < list.len() {
                        list.remove(i);
                    }
                }
            }
            _ => {}
        }
        return;
    }
    let Some(slot) = doc.pointer_mut(place) else { return };
    let number = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    *slot = match op % 12 {
        0 => Value::Null,
        1 => Value::Bool(word & 1 == 1),
        2 => Value::from(i64::from(word % 5) - 2),
        3 => Value::from(wide),
        4 => number(f64::from(f32::from_bits(word))),
        5 => match slot.as_f64() {
            Some(f) => number(-f),
            None => return,
        },
        6 => match slot.as_f64() {
            Some(f) => number(f * [0.5, 2.0, 1e3, 1e-3, 1e9, 0.0][word as usize % 6]),
            None => return,
        },
        7 => Value::from(String::from_utf8_lossy(rest).into_owned()),
        8 => Value::Array(Vec::new()),
        9 => Value::Object(serde_json::Map::new()),
        _ => match slot {
            // A copy of one of its entries added: more steps, more repeats.
            Value::Array(list) if !list.is_empty() => {
                let copy = list[word as usize % list.len()].clone();
                list.push(copy);
                return;
            }
            _ => return,
        },
    };
}

/// An interval log from untrusted bytes: refused, or every interval's figures are in
/// order.
pub fn interval_log(data: &[u8]) {
    let mut room = intervals::MAX_INTERVALS;
    let Ok(log) = intervals::parse_log("fuzz.hlog", data, &mut room) else { return };
    for i in log {
        assert!(i.p50_ns <= i.p99_ns && i.p99_ns <= i.max_ns, "{i:?}");
        assert!(i.length_s > 0.0 && i.start_s.is_finite(), "{i:?}");
    }
}

/// A V2 histogram (plain or DEFLATE) from untrusted bytes: refused, or within
/// ringload's bounds, and it encodes and decodes back to itself.
pub fn histogram(data: &[u8]) {
    let Ok(h) = crate::hist::decode_bytes(data) else { return };
    assert!(h.len() <= crate::hist::MAX_SAMPLES && h.high() <= crate::hist::MAX_NS);
    let again = crate::hist::decode(&crate::hist::encode(&h)).expect("what decodes, encodes and decodes");
    assert!(again == h, "a histogram changed through encode and decode");
}

/// A datagram header from untrusted bytes (a reply from any server): refused, or it
/// encodes back to the bytes it was read from.
pub fn datagram_header(data: &[u8]) {
    if let Some(h) = Header::decode(data) {
        let mut buf = [0u8; header::LEN];
        h.encode(&mut buf);
        assert_eq!(&buf[..], &data[..header::LEN]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seeds the fuzz runs start from, and what they found.
    #[test]
    fn seeds_and_findings() {
        for doc in [
            &include_bytes!("../tests/data/v1-closed.json")[..],
            include_bytes!("../tests/data/v1-open.json"),
            include_bytes!("../tests/data/v1-merged.json"),
            b"{\"tool\":\"ringload\",\"schema_version\":1}",
            b"[]",
            b"",
        ] {
            result_document(doc);
        }
        let search = include_bytes!("../fuzz/seeds/search.json");
        assert!(Saved::from_bytes("search.json".into(), search).is_ok(), "the search seed reads");
        search_document(b"");
        // Each kind of edit, at places all through the document.
        let places = search_template().1.len();
        for op in 0..12u8 {
            for place in (usize::from(op)..places).step_by(places / 16) {
                let [a, b] = (place as u16).to_le_bytes();
                search_document(&[a, b, op, 0xff, 0x7f, 3, 0, 0x80]);
            }
        }
        interval_log(b"#[StartTime: 1.0 (s)]\n0.0,1.0,1.0,HISTFAAAABx4nJNpmSzMwMDAxAABzFCaEUoz2X+AsQA\n");
        interval_log(b"0.0,1.0,1.0,\n");
        histogram(include_bytes!("../fuzz/seeds/histogram.v2z"));
        datagram_header(
            b"RLD1\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00",
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            result_document(&data);
            interval_log(&data);
            histogram(&data);
            datagram_header(&data);
            search_document(&data);
        }
    }
}
