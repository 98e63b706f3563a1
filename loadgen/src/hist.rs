//! Latency histograms: nanosecond values up to an hour at three significant digits, and
//! their portable encoding (HdrHistogram V2 + DEFLATE, base64) so results merge exactly
//! later.
//!
//! Invariant: every histogram ringload holds has at most `i64::MAX` samples in all (what
//! the V2 format can carry), so [`encode`] cannot fail: a live run cannot come near it,
//! [`decode`] refuses more, and [`add`] refuses a sum that would pass it. A document keeps
//! its histograms [`Encoded`]: an hdrhistogram of ringload's range holds 33,792 counts
//! (270 KB) even when it is empty, its text a few dozen bytes to a few KB.

mod shape;
mod v2;

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use std::sync::Arc;

pub use shape::{DIGITS, Hist, MAX_NS, MAX_SAMPLES, new};
pub use v2::{HistError, MAX_TEXT_LEN, MAX_V2_BYTES, decode_bytes};

/// The percentiles every report, table, document summary and plot shows, by their
/// names, in order (the largest value, `max`, follows them).
pub const QUANTILES: [(&str, f64); 5] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)];

/// Records `ns`, saturating at the histogram's top rather than failing.
pub fn record(h: &mut Hist, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_NS));
}

/// Adds `h` into `sum`: refused when the values do not fit `sum`'s range, or when the
/// samples together would pass [`MAX_SAMPLES`] (hdrhistogram would saturate silently).
pub fn add(sum: &mut Hist, h: &Hist) -> Result<(), HistError> {
    match sum.len().checked_add(h.len()) {
        Some(n) if n <= MAX_SAMPLES => {}
        _ => return Err(HistError::TooManySamples),
    }
    sum.add(h).map_err(|_| HistError::OutOfRange)
}

/// Encodes as base64 of the V2 + DEFLATE format.
pub fn encode(h: &Hist) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory: counts are below i64::MAX (module invariant)");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes what [`encode`] produced (or any V2 histogram, compressed or not, in base64)
/// whose range and precision are no larger than ringload's own. The text is refused
/// before it is decoded when it is longer than any such histogram needs
/// ([`MAX_TEXT_LEN`]).
pub fn decode(text: &str) -> Result<Hist, HistError> {
    let text = text.trim();
    if text.len() > MAX_TEXT_LEN {
        return Err(HistError::TextTooLong { len: text.len() });
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| HistError::Base64)?;
    decode_bytes(&bytes)
}

/// A histogram as a document keeps it: its text, decoded when its counts are needed
/// (to add, to draw). A document of thousands of runs then costs in memory about what its
/// file takes, not 270 KB a histogram.
///
/// Invariant: the text decodes. It is made only by [`Encoded::of`] (which encodes a
/// histogram) and [`Encoded::read`] (which decodes the text first), and never changed.
/// Two are equal when their texts are: ringload's encoding is deterministic, so the
/// histograms it encodes compare by their counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Arc<str>);

impl Encoded {
    /// `h`, encoded ([`encode`]).
    pub fn of(h: &Hist) -> Encoded {
        Encoded(encode(h).into())
    }

    /// Text from a file: decoded ([`decode`], which refuses what is not a histogram of
    /// ringload's range) and kept as it was written; the histogram is returned too, for a
    /// caller that needs it once.
    pub fn read(text: &str) -> Result<(Encoded, Hist), HistError> {
        let h = decode(text)?;
        Ok((Encoded(text.trim().into()), h))
    }

    /// The histogram.
    pub fn decode(&self) -> Hist {
        decode(&self.0).expect("an Encoded's text decodes (type invariant)")
    }

    /// The text (base64).
    pub fn text(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_percentiles() {
        let mut h = new();
        for v in 1..10_000u64 {
            record(&mut h, v * 1000);
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err());
        let (kept, back) = Encoded::read(&format!(" {} ", encode(&h))).unwrap();
        assert_eq!(back, h);
        assert_eq!(kept, Encoded::of(&h), "the text is kept as written, trimmed");
        assert_eq!(kept.decode(), h);
        assert!(Encoded::read("aGVsbG8=").is_err());
    }

    #[test]
    fn add_refuses_what_v2_cannot_carry() {
        let mut a = new();
        a.record_n(1_000, MAX_SAMPLES - 1).unwrap();
        let mut b = new();
        b.record_n(2_000, 2).unwrap();
        let before = a.clone();
        assert!(matches!(add(&mut a, &b), Err(HistError::TooManySamples)));
        assert_eq!(a, before, "a refused sum leaves the histogram as it was");
        let mut one = new();
        one.record(5).unwrap();
        add(&mut a, &one).unwrap();
        assert_eq!(a.len(), MAX_SAMPLES);
        assert_eq!(decode(&encode(&a)).unwrap(), a, "the largest sum still encodes");
    }
}
