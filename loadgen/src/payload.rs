//! What ringload sends, and how it checks what comes back.
//!
//! Every stream connection's bytes are one endless pseudo-random pattern of period
//! [`PERIOD`] (a prime, so it never lines up with message sizes), started at a different
//! phase per connection: byte `i` of connection `c` is `pattern[(phase(c) + i) % PERIOD]`.
//! Consecutive messages are therefore contiguous in memory and can go out in one send, and
//! any echoed byte can be checked from its stream offset alone.

use rand::{RngCore, SeedableRng, rngs::StdRng};

/// The pattern's period in bytes.
pub const PERIOD: usize = 65_521;

/// Most bytes one send takes from the pattern.
pub const MAX_SEND: usize = 1 << 20;

/// The pattern, long enough that any `MAX_SEND` bytes from any phase are contiguous.
pub struct Pattern {
    bytes: Box<[u8]>,
}

impl Pattern {
    /// A pattern from `seed`.
    pub fn new(seed: u64) -> Pattern {
        let mut bytes = vec![0u8; PERIOD + MAX_SEND].into_boxed_slice();
        StdRng::seed_from_u64(seed).fill_bytes(&mut bytes[..PERIOD]);
        let (head, tail) = bytes.split_at_mut(PERIOD);
        for (i, b) in tail.iter_mut().enumerate() {
            *b = head[i % PERIOD];
        }
        Pattern { bytes }
    }

    /// The phase of connection `conn`.
    pub fn phase(conn: u64) -> u64 {
        conn.wrapping_mul(7919) % PERIOD as u64
    }

    /// `len` bytes (≤ `MAX_SEND`) of the stream starting at `offset` (phase included).
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        let len = len.min(MAX_SEND);
        &self.bytes[start..start + len]
    }

    /// Checks `data` against the stream at `offset`; returns the number of bytes that
    /// differ (0 when all match).
    pub fn mismatches(&self, offset: u64, data: &[u8]) -> usize {
        let mut bad = 0;
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(MAX_SEND);
            let expect = self.slice(offset + done as u64, n);
            let got = &data[done..done + n];
            if expect != got {
                bad += expect.iter().zip(got).filter(|(a, b)| a != b).count();
            }
            done += n;
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contiguous_and_periodic() {
        let p = Pattern::new(1);
        let a = p.slice(10, 100).to_vec();
        let b = p.slice(10 + PERIOD as u64, 100).to_vec();
        assert_eq!(a, b);
        let long = p.slice(PERIOD as u64 - 5, 20);
        assert_eq!(&long[5..], p.slice(0, 15));
    }

    proptest! {
        #[test]
        fn verify_finds_every_flip(offset in 0u64..1 << 40, len in 1usize..5000, flips in proptest::collection::btree_set(0usize..5000, 0..5)) {
            let p = Pattern::new(7);
            let mut data = p.slice(offset, len).to_vec();
            let mut expect = 0;
            for f in flips {
                if f < len {
                    data[f] ^= 0x40;
                    expect += 1;
                }
            }
            prop_assert_eq!(p.mismatches(offset, &data), expect);
        }
    }
}
