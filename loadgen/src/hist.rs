//! Latency histograms: nanosecond values up to an hour at three significant digits, and
//! their portable encoding (HdrHistogram V2 + DEFLATE, base64) so results merge exactly
//! later.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{DeserializeError, Deserializer, Serializer, V2DeflateSerializer};

/// A latency histogram in nanoseconds.
pub type Hist = Histogram<u64>;

/// Highest trackable latency: one hour.
pub const MAX_NS: u64 = 3_600_000_000_000;

/// An empty latency histogram.
pub fn new() -> Hist {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

/// Records `ns`, saturating at the histogram's top rather than failing.
pub fn record(h: &mut Hist, ns: u64) {
    let _ = h.record(ns.clamp(1, MAX_NS));
}

/// Encodes as base64 of the V2 + DEFLATE format.
pub fn encode(h: &Hist) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Why text is not an encoded histogram.
#[derive(Debug, thiserror::Error)]
pub enum HistError {
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(base64::DecodeError),
    /// Base64, but not an HdrHistogram V2 histogram.
    #[error("not an HdrHistogram V2 histogram: {0}")]
    Format(DeserializeError),
}

/// Decodes what [`encode`] produced (or any V2 histogram in base64).
pub fn decode(text: &str) -> Result<Hist, HistError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(HistError::Base64)?;
    Deserializer::new().deserialize(&mut &bytes[..]).map_err(HistError::Format)
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
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert!(decode("not base64!").is_err());
        assert!(decode("aGVsbG8=").is_err());
    }
}
