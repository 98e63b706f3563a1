//! What each mode does with bytes, the same on every backend: `echo` keeps what it
//! receives (to send it back), `discard` and `source` drop it; `source` sends a fixed
//! pattern, byte `i` of a stream being `i % 251`, which ringload's bulk receive checks
//! from the offset alone.
//!
//! Invariant: the pattern is static, so a send may point into it for as long as the
//! kernel likes.

use crate::config::Mode;

/// Whether a listener in `mode` keeps what it receives (to echo it); the others drop it.
pub(crate) fn keeps_received(mode: Mode) -> bool {
    mode == Mode::Echo
}

/// The period of the `source` pattern: byte `i` of a source stream is `i % 251`.
const SOURCE_PERIOD: usize = 251;
/// Most bytes one send of the source pattern takes.
pub(crate) const SOURCE_CHUNK: usize = 64 * 1024;
const SOURCE_PATTERN_LEN: usize = SOURCE_CHUNK + SOURCE_PERIOD;
/// The pattern, long enough to send `SOURCE_CHUNK` bytes from any phase; static, so a
/// send can point into it for as long as the kernel likes.
static SOURCE_PATTERN: [u8; SOURCE_PATTERN_LEN] = source_pattern();

const fn source_pattern() -> [u8; SOURCE_PATTERN_LEN] {
    let mut p = [0u8; SOURCE_PATTERN_LEN];
    let mut i = 0;
    while i < SOURCE_PATTERN_LEN {
        p[i] = (i % SOURCE_PERIOD) as u8;
        i += 1;
    }
    p
}

/// The byte at offset `i` of a `source` stream.
pub fn source_byte(i: u64) -> u8 {
    (i % SOURCE_PERIOD as u64) as u8
}

/// The next bytes of a source stream that has sent `offset` bytes: at most `max` (and at
/// most [`SOURCE_CHUNK`]).
pub(crate) fn source_chunk(offset: u64, max: usize) -> &'static [u8] {
    let phase = (offset % SOURCE_PERIOD as u64) as usize;
    &SOURCE_PATTERN[phase..phase + max.min(SOURCE_CHUNK)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_pattern_is_i_mod_251() {
        for offset in [0u64, 1, 250, 251, 1 << 40] {
            let chunk = source_chunk(offset, 1000);
            assert_eq!(chunk.len(), 1000);
            for (i, b) in chunk.iter().enumerate() {
                assert_eq!(*b, source_byte(offset + i as u64));
            }
        }
        assert_eq!(source_chunk(7, usize::MAX).len(), SOURCE_CHUNK);
    }
}
