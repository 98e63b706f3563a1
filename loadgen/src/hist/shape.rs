//! The shape every ringload histogram has: nanoseconds from 1 ns to an hour at three
//! significant digits. The reader of the V2 encoding ([`super::v2`]) bounds what it
//! accepts by this shape.

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds.
pub type Hist = Histogram<u64>;

/// Highest trackable latency: one hour.
pub const MAX_NS: u64 = 3_600_000_000_000;

/// Significant digits of every ringload histogram.
pub const DIGITS: u8 = 3;

/// The most samples a histogram may hold: what the V2 encoding carries.
pub const MAX_SAMPLES: u64 = i64::MAX as u64;

/// An empty latency histogram.
pub fn new() -> Hist {
    Histogram::new_with_bounds(1, MAX_NS, DIGITS).expect("valid histogram bounds")
}
