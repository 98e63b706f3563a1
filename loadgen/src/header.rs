//! The header every datagram carries, so replies can be matched without trusting their
//! order: magic, flow, sequence and send time. Decoding takes untrusted bytes (a reply
//! from any server) and never panics.

/// Bytes of the header.
pub const LEN: usize = 24;

const MAGIC: u32 = u32::from_le_bytes(*b"RLD1");

/// A datagram's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The flow (client socket) it belongs to.
    pub flow: u32,
    /// Its sequence number within the flow.
    pub seq: u64,
    /// When it was sent, in ns since the run began.
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the first [`LEN`] bytes of `buf` (which must be that long).
    pub fn encode(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        buf[4..8].copy_from_slice(&self.flow.to_le_bytes());
        buf[8..16].copy_from_slice(&self.seq.to_le_bytes());
        buf[16..24].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads a header; `None` if the bytes are too short or not ours.
    pub fn decode(buf: &[u8]) -> Option<Header> {
        let buf = buf.get(..LEN)?;
        if u32::from_le_bytes(buf[0..4].try_into().ok()?) != MAGIC {
            return None;
        }
        Some(Header {
            flow: u32::from_le_bytes(buf[4..8].try_into().ok()?),
            seq: u64::from_le_bytes(buf[8..16].try_into().ok()?),
            sent_ns: u64::from_le_bytes(buf[16..24].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(flow: u32, seq: u64, sent_ns: u64) {
            let h = Header { flow, seq, sent_ns };
            let mut buf = [0u8; LEN];
            h.encode(&mut buf);
            prop_assert_eq!(Header::decode(&buf), Some(h));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(h) = Header::decode(&bytes) {
                let mut buf = [0u8; LEN];
                h.encode(&mut buf);
                prop_assert_eq!(&buf[..], &bytes[..LEN]);
            }
        }
    }
}
