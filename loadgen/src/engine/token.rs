//! The `user_data` of every operation a worker submits: which operation it is, the
//! connection (stream) or flow (datagram) it belongs to, and for a datagram send the send
//! slot it uses.
//!
//! Layout, high bits first: 8 bits of [`Op`], 24 bits of slot, 32 bits of connection.
//! Invariant: `Token::decode(t.encode()) == Some(t)` for every token a worker builds (slot
//! below [`MAX_SLOTS`]); a value of an unknown operation decodes to `None` and is ignored,
//! never misread as another connection's.

/// Send slots a token can name (per connection).
pub(crate) const MAX_SLOTS: usize = 1 << SLOT_BITS;

const SLOT_BITS: u32 = 24;
const OP_SHIFT: u32 = 32 + SLOT_BITS;

/// What an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// A multishot receive.
    Recv = 1,
    /// A send.
    Send = 2,
    /// A connect (churn).
    Connect = 3,
    /// The cancel of everything at the end of the run.
    Cancel = 0xff,
}

/// One operation's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// The operation.
    pub op: Op,
    /// The connection's index in its worker.
    pub conn: u32,
    /// The send slot (datagram sends), else 0.
    pub slot: u32,
}

impl Token {
    /// The token of operation `op` on connection `conn` (a worker's index, below 2³²),
    /// using send slot `slot` (below [`MAX_SLOTS`]).
    #[inline]
    pub(crate) fn new(op: Op, conn: usize, slot: usize) -> Token {
        debug_assert!(u32::try_from(conn).is_ok(), "connection {conn} does not fit a token");
        debug_assert!(slot < MAX_SLOTS, "slot {slot} does not fit a token");
        Token { op, conn: conn as u32, slot: slot as u32 }
    }

    /// The token of the end-of-run cancel.
    pub(crate) const CANCEL: Token = Token { op: Op::Cancel, conn: 0, slot: 0 };

    /// The `user_data` value.
    #[inline]
    pub(crate) fn encode(self) -> u64 {
        let slot = u64::from(self.slot) & ((1 << SLOT_BITS) - 1);
        (self.op as u64) << OP_SHIFT | slot << 32 | u64::from(self.conn)
    }

    /// Reads a `user_data` value; `None` when it names no operation of ours.
    #[inline]
    pub(crate) fn decode(user_data: u64) -> Option<Token> {
        let op = match user_data >> OP_SHIFT {
            1 => Op::Recv,
            2 => Op::Send,
            3 => Op::Connect,
            0xff => Op::Cancel,
            _ => return None,
        };
        let slot = ((user_data >> 32) & ((1 << SLOT_BITS) - 1)) as u32;
        Some(Token { op, conn: user_data as u32, slot })
    }

    /// The connection's index.
    #[inline]
    pub(crate) fn conn(self) -> usize {
        self.conn as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Recv), Just(Op::Send), Just(Op::Connect), Just(Op::Cancel)]
    }

    proptest! {
        #[test]
        fn round_trip(op in any_op(), conn: u32, slot in 0..MAX_SLOTS) {
            let t = Token::new(op, conn as usize, slot);
            prop_assert_eq!(Token::decode(t.encode()), Some(t));
        }

        #[test]
        fn any_value_decodes_without_panic(v: u64) {
            if let Some(t) = Token::decode(v) {
                prop_assert_eq!(t.encode(), v);
            }
        }
    }

    #[test]
    fn cancel_and_zero() {
        assert_eq!(Token::decode(Token::CANCEL.encode()), Some(Token::CANCEL));
        assert_eq!(Token::decode(0), None, "an operation of no kind is not ours");
    }
}
