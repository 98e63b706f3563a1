//! Hostile V2 bytes: every size is checked before it costs memory, every count before it
//! becomes a figure.

use super::*;
use crate::hist::{self, encode, new, record};
use std::io::Write;

/// A V2 histogram: the header as given, then `payload`.
fn v2(payload_len: u32, low: u64, high: u64, digits: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for word in [V2_COOKIE, payload_len, 0, digits] {
        b.extend_from_slice(&word.to_be_bytes());
    }
    for word in [low, high, 1f64.to_bits()] {
        b.extend_from_slice(&word.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

/// ringload's own range with `payload`, its length stated truly.
fn ours(payload: &[u8]) -> Vec<u8> {
    v2(payload.len() as u32, 1, hist::MAX_NS, 3, payload)
}

fn deflated(raw: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(raw).unwrap();
    let z = z.finish().unwrap();
    let mut b = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
    b.extend_from_slice(&(z.len() as u32).to_be_bytes());
    b.extend_from_slice(&z);
    b
}

/// Zig-zag LEB128 of one count (or, negative, a run of empty buckets).
fn varint(v: i64) -> Vec<u8> {
    let mut zz = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    for _ in 0..8 {
        if zz < 0x80 {
            out.push(zz as u8);
            return out;
        }
        out.push((zz as u8 & 0x7f) | 0x80);
        zz >>= 7;
    }
    out.push(zz as u8);
    out
}

#[test]
fn max_buckets_is_ringloads_histogram() {
    assert_eq!(MAX_BUCKETS, new().distinct_values());
    let mut full = new();
    for i in 0..MAX_BUCKETS as u64 {
        full.record_n(hist::MAX_NS.min(1 + i * 106_000_000), i64::MAX as u64 / 40_000).unwrap();
    }
    let text = encode(&full);
    assert!(text.len() <= MAX_TEXT_LEN, "{} > {MAX_TEXT_LEN}", text.len());
}

/// The header's payload length, 0xFFFFFFFF or 0x7FFFFFFF, made hdrhistogram allocate
/// 4 GiB or 2 GiB before it found the bytes missing: refused from the header.
#[test]
fn huge_payload_length_is_refused_before_allocating() {
    for claimed in [u32::MAX, 0x7FFF_FFFF, (MAX_BUCKETS * 9 + 1) as u32] {
        let raw = v2(claimed, 1, hist::MAX_NS, 3, &[]);
        for bytes in [raw.clone(), deflated(&raw)] {
            let e = decode_bytes(&bytes).err().unwrap();
            assert!(
                matches!(e, HistError::PayloadLength { claimed: c, .. } if c == u64::from(claimed)),
                "{e}"
            );
        }
    }
}

/// A DEFLATE bomb (here 4 MiB of zeros as the counts: every bucket empty, so
/// hdrhistogram accepted it after inflating it all) stops at the bound.
#[test]
fn deflate_bomb_stops_at_the_bound() {
    let zeros = vec![0u8; 4 << 20];
    let bomb = deflated(&v2(zeros.len() as u32, 1, hist::MAX_NS, 3, &zeros));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    assert_eq!(decode_bytes(&bomb).err().unwrap(), HistError::Inflates);
    // At the bound it inflates, and is then refused for what it holds: more counts
    // than the histogram has buckets.
    let zeros = vec![0u8; MAX_V2_BYTES - HEADER_LEN];
    let e = decode_bytes(&deflated(&v2(zeros.len() as u32, 1, hist::MAX_NS, 3, &zeros))).err();
    assert_eq!(e, Some(HistError::BeyondRange));
}

#[test]
fn counts_are_checked_before_they_become_figures() {
    let beyond = [varint(-(MAX_BUCKETS as i64)), varint(5)].concat();
    assert_eq!(decode_bytes(&ours(&beyond)).err().unwrap(), HistError::BeyondRange);
    let past_end = varint(-(MAX_BUCKETS as i64) - 1);
    assert_eq!(decode_bytes(&ours(&past_end)).err().unwrap(), HistError::BeyondRange);
    // i64::MIN zeros: hdrhistogram negates it (an overflow) before it checks.
    assert_eq!(decode_bytes(&ours(&varint(i64::MIN))).err().unwrap(), HistError::BeyondRange);
    // Three counts of i64::MAX: hdrhistogram's total saturates, and every figure is wrong.
    let huge = [varint(i64::MAX), varint(i64::MAX), varint(i64::MAX)].concat();
    assert_eq!(decode_bytes(&ours(&huge)).err().unwrap(), HistError::TooManySamples);
    assert_eq!(decode_bytes(&ours(&[0x80])).err().unwrap(), HistError::Truncated);
    // Two samples in the second bucket: read as they are.
    let h = decode_bytes(&ours(&[varint(0), varint(2)].concat())).unwrap();
    assert_eq!((h.len(), h.max()), (2, 1));
}

#[test]
fn headers_outside_ringloads_range_are_refused() {
    for (low, high, digits) in [(0, 1000, 3), (1, hist::MAX_NS + 1, 3), (1, hist::MAX_NS, 4), (10, 15, 1)] {
        let e = decode_bytes(&v2(0, low, high, digits, &[])).err().unwrap();
        assert!(matches!(e, HistError::Range { .. }), "{low} {high} {digits}: {e}");
    }
    let mut offset = v2(0, 1, hist::MAX_NS, 3, &[]);
    offset[8..12].copy_from_slice(&1u32.to_be_bytes());
    assert!(matches!(decode_bytes(&offset), Err(HistError::Unsupported(_))));
    let mut ratio = v2(0, 1, hist::MAX_NS, 3, &[]);
    ratio[32..40].copy_from_slice(&2f64.to_bits().to_be_bytes());
    assert!(matches!(decode_bytes(&ratio), Err(HistError::Unsupported(_))));
    assert_eq!(decode_bytes(&[1, 2, 3, 4, 5]).err().unwrap(), HistError::Cookie);
    assert_eq!(decode_bytes(&[0x1c]).err().unwrap(), HistError::Truncated);
    assert_eq!(decode_bytes(&v2(0, 1, hist::MAX_NS, 3, &[])[..30]).err().unwrap(), HistError::Truncated);
    // A smaller range and precision than ringload's reads (another tool's histogram).
    let mut small = Histogram::<u64>::new_with_bounds(1_000, 1_000_000_000, 2).unwrap();
    small.record(123_456).unwrap();
    assert_eq!(hist::decode(&hist_text(&small)).unwrap(), small);
}

fn hist_text(h: &Hist) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::Serializer;
    let mut b = Vec::new();
    hdrhistogram::serialization::V2Serializer::new().serialize(h, &mut b).unwrap();
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn framing_errors() {
    let mut h = new();
    record(&mut h, 42);
    let good = deflated(&{
        let mut b = Vec::new();
        use hdrhistogram::serialization::Serializer;
        hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut b).unwrap();
        b
    });
    assert_eq!(decode_bytes(&good).unwrap(), h);
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(decode_bytes(&trailing).err().unwrap(), HistError::Trailing(1));
    assert_eq!(decode_bytes(&good[..good.len() - 1]).err().unwrap(), HistError::Truncated);
    let mut corrupt = good.clone();
    let n = corrupt.len();
    corrupt[10..n].fill(0xff);
    assert_eq!(decode_bytes(&corrupt).err().unwrap(), HistError::Deflate);
    let long = "A".repeat(MAX_TEXT_LEN + 4);
    assert!(matches!(hist::decode(&long), Err(HistError::TextTooLong { .. })));
}
