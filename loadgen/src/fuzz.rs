//! The bodies of the fuzz targets (`loadgen/fuzz`, run with `cargo fuzz` on nightly),
//! as ordinary functions so that a stable test runs them too and CI builds them
//! without nightly.
//!
//! Each takes arbitrary bytes, must never panic, and asserts what a reader promises of
//! what it accepts: a result document keeps its invariants and renders in every format;
//! an interval keeps its percentiles in order; a histogram is within ringload's bounds
//! and survives encoding; a datagram header encodes back to the bytes it was read from.

use crate::compare::compare;
use crate::header::{self, Header};
use crate::intervals;
use crate::merge::merge;
use crate::saved::Saved;
use crate::text::table::{Format, render};

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
    if let Ok((merged, _)) = merge(&both, false) {
        let bytes = serde_json::to_vec(&merged).expect("a merged document serializes");
        if let Err(e) = Saved::from_bytes("merged.json".into(), &bytes) {
            panic!("a merge of an accepted document does not read back: {e}");
        }
    }
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
        }
    }
}
