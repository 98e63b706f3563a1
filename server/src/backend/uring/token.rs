//! `user_data` of every SQE: what the operation was and whom it belongs to.
//!
//! Layout (64 bits): `kind` 8 | `bid` 16 | `gen` 8 | `slot` 32. `generation` changes each time a
//! connection slot is reused, so a completion for a connection that is gone cannot be
//! mistaken for one of its successor.

/// The kind of operation a completion answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// Multishot accept; `slot` is the listener's index among the worker's stream listeners.
    Accept = 1,
    /// Multishot receive on a connection.
    Recv = 2,
    /// Send of a queued buffer; `bid` names it.
    Send = 3,
    /// SEND_ZC of a queued buffer; `bid` names it (its notification carries the same token).
    SendZc = 4,
    /// Close of an accepted connection.
    Close = 5,
    /// Close of a connection refused by `--max-conns`.
    CloseRefused = 6,
    /// A cancel request; its own result does not matter.
    Cancel = 7,
    /// The worker's periodic tick.
    Tick = 8,
    /// A read of the worker's wake-up eventfd.
    Wake = 9,
    /// Multishot recvmsg on a datagram listener; `slot` is its index among the worker's
    /// datagram listeners.
    DgramRecv = 10,
    /// A datagram reply; `slot` as for `DgramRecv`, `bid` the buffer it comes from.
    DgramSend = 11,
    /// A send of the `source` pattern on a connection.
    SourceSend = 12,
    /// `--timestamps`: a read of a connection's error queue for its sampled send's stamp.
    ErrQueue = 13,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            4 => Kind::SendZc,
            5 => Kind::Close,
            6 => Kind::CloseRefused,
            7 => Kind::Cancel,
            8 => Kind::Tick,
            9 => Kind::Wake,
            10 => Kind::DgramRecv,
            11 => Kind::DgramSend,
            12 => Kind::SourceSend,
            13 => Kind::ErrQueue,
            _ => return None,
        })
    }
}

/// A decoded `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    /// What the operation was.
    pub kind: Kind,
    /// Connection slot (or listener index for accepts and datagrams).
    pub slot: u32,
    /// Generation of the slot when the operation was submitted.
    pub generation: u8,
    /// Buffer id, for sends.
    pub bid: u16,
}

impl Token {
    /// A token with no buffer.
    pub fn new(kind: Kind, slot: u32, generation: u8) -> Token {
        Token { kind, slot, generation, bid: 0 }
    }

    /// Encodes into `user_data`.
    pub fn encode(self) -> u64 {
        (self.kind as u64) << 56
            | u64::from(self.bid) << 40
            | u64::from(self.generation) << 32
            | u64::from(self.slot)
    }

    /// Decodes a `user_data`; `None` for values this worker never submitted.
    pub fn decode(data: u64) -> Option<Token> {
        Some(Token {
            kind: Kind::from_u8((data >> 56) as u8)?,
            bid: (data >> 40) as u16,
            generation: (data >> 32) as u8,
            slot: data as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(kind in 1u8..=13, slot: u32, generation: u8, bid: u16) {
            let t = Token { kind: Kind::from_u8(kind).unwrap(), slot, generation, bid };
            prop_assert_eq!(Token::decode(t.encode()), Some(t));
        }

        #[test]
        fn foreign_data_is_rejected_or_decoded_without_panic(data: u64) {
            if let Some(t) = Token::decode(data) {
                prop_assert_eq!(t.encode(), data);
            }
        }
    }

    #[test]
    fn zero_is_not_a_token() {
        assert_eq!(Token::decode(0), None);
    }
}
