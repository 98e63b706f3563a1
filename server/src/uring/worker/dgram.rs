//! Datagram listeners (UDP and Unix datagram): one multishot recvmsg per listener into
//! the buffer ring, and each reply a send, to the source address, of the payload inside
//! the received buffer — no copy. Replies are never larger than their request and never
//! more than one per request; what is not answered is dropped and counted by reason, so
//! that, once idle, `dgrams_in = dgrams_echoed + dgrams_discarded + dgram_drop_*`.

use super::Worker;
use crate::config::Mode;
use crate::server::SockKind;
use crate::uring::token::{Kind, Token};
use io_uring::{cqueue, opcode, types};
use std::os::fd::AsRawFd;

/// A datagram listener's receive state.
pub(crate) struct DgramState {
    /// Read by the kernel when the recvmsg is submitted: how many bytes of the buffer to
    /// reserve for the source address. Boxed so its address is stable.
    msghdr: Box<libc::msghdr>,
    armed: bool,
    /// The receive ended for want of buffers.
    pub starved: bool,
}

impl DgramState {
    pub(crate) fn new(namelen: u32) -> DgramState {
        // SAFETY: msghdr is plain data; all-zero is an empty header (null pointers, zero
        // lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = namelen;
        DgramState { msghdr, armed: false, starved: false }
    }
}

/// A source address, as the rate limiter keys it: the IP for UDP (any port, so one host
/// cannot multiply its share by using many ports), a hash of the path for Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4([u8; 4]),
    V6([u8; 16]),
    Unix(u64),
}

impl SourceKey {
    /// Reads the key from a `sockaddr` the kernel wrote; `None` for an unbound Unix
    /// sender (nothing to reply to) or an address too short to be real.
    fn from_sockaddr(name: &[u8]) -> Option<SourceKey> {
        let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
        match i32::from(family) {
            libc::AF_INET if name.len() >= 8 => Some(SourceKey::V4(name[4..8].try_into().ok()?)),
            libc::AF_INET6 if name.len() >= 24 => Some(SourceKey::V6(name[8..24].try_into().ok()?)),
            libc::AF_UNIX if name.len() > 2 => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                name[2..].hash(&mut h);
                Some(SourceKey::Unix(h.finish()))
            }
            _ => None,
        }
    }
}

/// What to do with one received datagram.
enum Verdict {
    Reply { payload: *const u8, len: u32, name: *const libc::sockaddr, namelen: u32 },
    Discard,
    Truncated,
    Unanswerable,
    RateLimited,
    Malformed,
}

impl Worker<'_> {
    pub(super) fn arm_dgram(&mut self, listener: usize) {
        debug_assert!(matches!(self.setup.listeners[listener].kind, SockKind::Datagram { .. }));
        let state = &mut self.dgram[listener];
        if state.armed {
            return;
        }
        state.armed = true;
        let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
        let msghdr = &*state.msghdr as *const libc::msghdr;
        let token = Token::new(Kind::DgramRecv, listener as u32, 0).encode();
        self.push(opcode::RecvMsgMulti::new(fd, msghdr, self.buf_ring.group()).build().user_data(token));
    }

    pub(super) fn on_dgram_recv(&mut self, listener: usize, res: i32, flags: u32, more: bool) {
        let bid = cqueue::buffer_select(flags);
        if let Some(bid) = bid {
            if !self.buf_ring.mark_taken(bid) {
                self.counters.err_other += 1;
                return;
            }
        }
        if !more {
            self.dgram[listener].armed = false;
        }
        match (res, bid) {
            (n, Some(bid)) if n >= 0 => self.on_datagram(listener, bid, n as u32),
            (n, bid) => {
                if let Some(bid) = bid {
                    self.release_buf(bid);
                }
                match -n {
                    libc::ENOBUFS => {
                        self.dgram[listener].starved = true;
                        self.counters.enobufs += 1;
                    }
                    libc::ECANCELED => {}
                    _ => {
                        self.counters.err_other += 1;
                        if !more {
                            // Re-armed at the next tick: a receive that keeps failing
                            // must not spin.
                            self.backoff.push(listener);
                        }
                    }
                }
            }
        }
        let state = &self.dgram[listener];
        let ended_cleanly = res >= 0 && !state.armed && !state.starved;
        if ended_cleanly && self.draining.is_none() {
            self.arm_dgram(listener);
        }
    }

    fn on_datagram(&mut self, listener: usize, bid: u16, len: u32) {
        self.counters.dgrams_in += 1;
        let verdict = self.judge(listener, bid, len);
        let token = Token { kind: Kind::DgramSend, slot: listener as u32, generation: 0, bid };
        match verdict {
            Verdict::Reply { payload, len, name, namelen } => {
                self.counters.bytes_in += u64::from(len);
                let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
                self.push(
                    opcode::Send::new(fd, payload, len)
                        .dest_addr(name)
                        .dest_addr_len(namelen)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(token.encode()),
                );
                return;
            }
            Verdict::Discard => self.counters.dgrams_discarded += 1,
            Verdict::Truncated => self.counters.dgram_drop_truncated += 1,
            Verdict::Unanswerable => self.counters.dgram_drop_unanswerable += 1,
            Verdict::RateLimited => self.counters.dgram_drop_rate_limited += 1,
            Verdict::Malformed => self.counters.err_other += 1,
        }
        self.release_buf(bid);
    }

    /// Decides what to do with a datagram in buffer `bid` (`len` bytes: the recvmsg
    /// header, the source address, the payload).
    fn judge(&mut self, listener: usize, bid: u16, len: u32) -> Verdict {
        let state = &self.dgram[listener];
        let Ok(out) = io_uring::types::RecvMsgOut::parse(self.buf_ring.bytes(bid, len), &state.msghdr) else {
            return Verdict::Malformed;
        };
        // A datagram larger than the buffer left for it is never echoed in part.
        if out.is_payload_truncated() {
            return Verdict::Truncated;
        }
        let payload = out.payload_data();
        if self.setup.listeners[listener].mode == Mode::Discard {
            self.counters.bytes_in += payload.len() as u64;
            return Verdict::Discard;
        }
        if out.is_name_data_truncated() {
            return Verdict::Unanswerable;
        }
        let name = out.name_data();
        let Some(key) = SourceKey::from_sockaddr(name) else {
            return Verdict::Unanswerable;
        };
        if let Some(limiter) = &mut self.rate_limiter {
            if !limiter.allow(key, self.now) {
                return Verdict::RateLimited;
            }
        }
        Verdict::Reply {
            payload: payload.as_ptr(),
            len: payload.len() as u32,
            name: name.as_ptr().cast(),
            namelen: name.len() as u32,
        }
    }

    pub(super) fn on_dgram_sent(&mut self, token: Token, res: i32) {
        if res >= 0 {
            self.counters.dgrams_echoed += 1;
            self.counters.bytes_out += res as u64;
        } else {
            self.counters.dgram_drop_send_error += 1;
        }
        self.release_buf(token.bid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(SourceKey::from_sockaddr(&v4), Some(SourceKey::V4([127, 0, 0, 1])));
        let unbound = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(SourceKey::from_sockaddr(&unbound), None);
        assert_eq!(SourceKey::from_sockaddr(&[]), None);
        assert_eq!(SourceKey::from_sockaddr(&[1]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_safe(name in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = SourceKey::from_sockaddr(&name);
        }
    }
}
