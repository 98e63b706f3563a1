//! Reading HdrHistogram's V2 encoding, plain or DEFLATE-compressed, from untrusted
//! bytes.
//!
//! Invariant: nothing is inflated, allocated or handed to hdrhistogram before its size
//! has been checked against the largest histogram ringload keeps (1 ns..1 h at 3
//! significant digits). hdrhistogram's own reader trusts the header: it allocates
//! whatever payload length the header claims (4 GiB for `0xFFFFFFFF`) and inflates
//! without a limit; here the header is read first, the payload's length is bounded by the
//! histogram's range and precision, inflation stops at [`MAX_V2_BYTES`], and every count
//! is checked (its bucket in range, the total within what V2 carries) before
//! hdrhistogram builds the histogram from bytes already known to be sound.

use super::shape::{DIGITS, Hist, MAX_NS, MAX_SAMPLES};
use hdrhistogram::Histogram;
use std::io::Read;

const V2_COOKIE: u32 = 0x1c84_9313;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
/// Cookie, payload length, normalizing offset, digits, lowest, highest, ratio.
const HEADER_LEN: usize = 40;
/// A count or a run of zeros: LEB128 with at most 9 bytes.
const MAX_VARINT_LEN: usize = 9;
/// Buckets of ringload's own histogram (1 ns..1 h at 3 digits); a test checks it
/// against hdrhistogram.
const MAX_BUCKETS: usize = 33_792;

/// The most bytes a V2 histogram (header and counts) of ringload's range and precision
/// can take: every bucket a 9-byte count.
pub const MAX_V2_BYTES: usize = HEADER_LEN + MAX_BUCKETS * MAX_VARINT_LEN;

/// The longest base64 text of such a histogram, compressed: DEFLATE adds at most 5 bytes
/// per stored block of 64 KiB to incompressible data, zlib 6 more, the V2 compressed
/// header 8; 1 KiB covers them all.
pub const MAX_TEXT_LEN: usize = (MAX_V2_BYTES + 1024).div_ceil(3) * 4;

/// Why bytes are not a histogram ringload reads. Each message is a sentence a person
/// can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistError {
    /// Not base64.
    #[error("the histogram is not base64 text")]
    Base64,
    /// Longer than any histogram of ringload's range needs.
    #[error(
        "the histogram's text is {len} characters long; one of ringload's range needs at most {MAX_TEXT_LEN}"
    )]
    TextTooLong {
        /// Characters.
        len: usize,
    },
    /// The first four bytes are not a V2 cookie.
    #[error("not an HdrHistogram V2 histogram (its first bytes are not a V2 cookie)")]
    Cookie,
    /// The bytes end early.
    #[error("the histogram is cut short")]
    Truncated,
    /// Bytes follow the histogram.
    #[error("the histogram is followed by {0} stray bytes")]
    Trailing(usize),
    /// The DEFLATE stream does not inflate.
    #[error("the histogram's DEFLATE data is corrupt")]
    Deflate,
    /// The DEFLATE stream inflates to more than any histogram of ringload's range needs.
    #[error(
        "the histogram inflates to more than {MAX_V2_BYTES} bytes, more than one of ringload's range needs"
    )]
    Inflates,
    /// A feature of V2 ringload does not read.
    #[error("the histogram uses a V2 feature ringload does not read ({0})")]
    Unsupported(&'static str),
    /// A range or precision larger than ringload's, or impossible.
    #[error(
        "the histogram covers {low}..{high} ns at {digits} significant digits; ringload reads ranges within 1 ns..1 h at up to {DIGITS} digits"
    )]
    Range {
        /// Lowest discernible value.
        low: u64,
        /// Highest trackable value.
        high: u64,
        /// Significant digits.
        digits: u32,
    },
    /// The header claims more bytes of counts than the histogram's buckets can take.
    #[error(
        "the histogram's header claims {claimed} bytes of counts; its {buckets} buckets take at most {max}"
    )]
    PayloadLength {
        /// Bytes claimed.
        claimed: u64,
        /// Buckets of its range and precision.
        buckets: usize,
        /// Their largest encoding.
        max: usize,
    },
    /// A count falls beyond the histogram's buckets.
    #[error("the histogram has counts beyond its range")]
    BeyondRange,
    /// The counts add up to more than V2 carries.
    #[error("the histogram's counts add up to more than {MAX_SAMPLES} samples")]
    TooManySamples,
    /// A value does not fit the histogram it is added to.
    #[error("the histogram holds values beyond 1 h")]
    OutOfRange,
}

/// Decodes one V2 histogram, plain or DEFLATE-compressed.
pub fn decode_bytes(bytes: &[u8]) -> Result<Hist, HistError> {
    let (cookie, rest) = take_u32(bytes)?;
    match cookie {
        V2_COOKIE => decode_v2(bytes),
        V2_DEFLATE_COOKIE => {
            let (len, rest) = take_u32(rest)?;
            let len = usize::try_from(len).map_err(|_| HistError::Truncated)?;
            let compressed = rest.get(..len).ok_or(HistError::Truncated)?;
            if rest.len() > len {
                return Err(HistError::Trailing(rest.len() - len));
            }
            decode_v2(&inflate(compressed)?)
        }
        _ => Err(HistError::Cookie),
    }
}

/// Inflates at most [`MAX_V2_BYTES`] (one byte more tells that there was more).
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, HistError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_V2_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| HistError::Deflate)?;
    if out.len() > MAX_V2_BYTES {
        return Err(HistError::Inflates);
    }
    Ok(out)
}

/// The header's fields, checked.
struct Header {
    payload_len: usize,
    low: u64,
    high: u64,
    digits: u8,
}

fn read_header(bytes: &[u8]) -> Result<(Header, &[u8]), HistError> {
    let (cookie, rest) = take_u32(bytes)?;
    if cookie != V2_COOKIE {
        return Err(HistError::Cookie);
    }
    let (payload_len, rest) = take_u32(rest)?;
    let (offset, rest) = take_u32(rest)?;
    let (digits, rest) = take_u32(rest)?;
    let (low, rest) = take_u64(rest)?;
    let (high, rest) = take_u64(rest)?;
    let (ratio, rest) = take_u64(rest)?;
    if offset != 0 {
        return Err(HistError::Unsupported("a normalizing index offset"));
    }
    if f64::from_bits(ratio) != 1.0 {
        return Err(HistError::Unsupported("an integer-to-double ratio other than 1"));
    }
    // Within ringload's own range and precision, the histogram is no larger than
    // ringload's: hdrhistogram's bucket count grows with the digits and high / low.
    let range = HistError::Range { low, high, digits };
    let digits = u8::try_from(digits).ok().filter(|d| *d <= DIGITS).ok_or(range.clone())?;
    if low < 1 || high > MAX_NS || high < low.saturating_mul(2) {
        return Err(range);
    }
    let payload_len = usize::try_from(payload_len).map_err(|_| HistError::Truncated)?;
    Ok((Header { payload_len, low, high, digits }, rest))
}

/// Checks a V2 histogram through and through, then has hdrhistogram build it.
fn decode_v2(bytes: &[u8]) -> Result<Hist, HistError> {
    let (header, rest) = read_header(bytes)?;
    let buckets = buckets(&header)?;
    let max = buckets * MAX_VARINT_LEN;
    if header.payload_len > max {
        return Err(HistError::PayloadLength { claimed: header.payload_len as u64, buckets, max });
    }
    let payload = rest.get(..header.payload_len).ok_or(HistError::Truncated)?;
    if rest.len() > header.payload_len {
        return Err(HistError::Trailing(rest.len() - header.payload_len));
    }
    let samples = check_counts(payload, buckets)?;
    let h: Hist = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..HEADER_LEN + header.payload_len])
        .map_err(|_| HistError::BeyondRange)?;
    // What was checked is what hdrhistogram built.
    if h.len() != samples {
        return Err(HistError::BeyondRange);
    }
    Ok(h)
}

/// How many buckets a histogram of the header's range and precision has: ringload's own
/// known, any other's from hdrhistogram (which allocates that histogram to say).
fn buckets(header: &Header) -> Result<usize, HistError> {
    if (header.low, header.high, header.digits) == (1, MAX_NS, DIGITS) {
        return Ok(MAX_BUCKETS);
    }
    let empty = Histogram::<u64>::new_with_bounds(header.low, header.high, header.digits)
        .map_err(|_| HistError::Range { low: header.low, high: header.high, digits: header.digits.into() })?;
    Ok(empty.distinct_values())
}

/// Walks the counts (zig-zag LEB128: a count, or minus a run of empty buckets): every
/// count within the `buckets`, the total within [`MAX_SAMPLES`]. Returns the total.
fn check_counts(mut payload: &[u8], buckets: usize) -> Result<u64, HistError> {
    let mut index: u64 = 0;
    let mut total: u64 = 0;
    while !payload.is_empty() {
        let (zz, rest) = take_varint(payload)?;
        payload = rest;
        let value = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        if value < 0 {
            index = index.checked_add(value.unsigned_abs()).ok_or(HistError::BeyondRange)?;
            if index > buckets as u64 {
                return Err(HistError::BeyondRange);
            }
            continue;
        }
        // A count, even an empty one, names a bucket: it must be one of the histogram's.
        if index >= buckets as u64 {
            return Err(HistError::BeyondRange);
        }
        let count = value as u64;
        total = total.checked_add(count).filter(|t| *t <= MAX_SAMPLES).ok_or(HistError::TooManySamples)?;
        index += 1;
    }
    Ok(total)
}

/// LEB128-64b9B, as hdrhistogram writes it: seven bits a byte for eight bytes, then a
/// ninth byte of eight bits.
fn take_varint(bytes: &[u8]) -> Result<(u64, &[u8]), HistError> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(MAX_VARINT_LEN) {
        if i == MAX_VARINT_LEN - 1 {
            return Ok((value | u64::from(b) << 56, &bytes[i + 1..]));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(HistError::Truncated)
}

fn take_u32(bytes: &[u8]) -> Result<(u32, &[u8]), HistError> {
    let (head, rest) = bytes.split_first_chunk::<4>().ok_or(HistError::Truncated)?;
    Ok((u32::from_be_bytes(*head), rest))
}

fn take_u64(bytes: &[u8]) -> Result<(u64, &[u8]), HistError> {
    let (head, rest) = bytes.split_first_chunk::<8>().ok_or(HistError::Truncated)?;
    Ok((u64::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests;
