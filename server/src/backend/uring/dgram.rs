//! Datagram listeners (UDP and Unix datagram): one multishot recvmsg per listener into
//! the buffer ring, and each reply a send, to the source address, of the payload inside
//! the received buffer — no copy. The fate of each datagram and its counting are
//! [`crate::policy::Datagrams`]'s; this file only reads the kernel's recvmsg layout and
//! sends.

use super::token::{Kind, Token};
use super::worker::Worker;
use crate::backend::contract::{Listener, Transport};
use crate::policy::{Datagrams, Received, SourceKey, Verdict};
use crate::ring::Buf;
use io_uring::{cqueue, opcode, types};
use std::os::fd::AsRawFd;

/// A datagram listener's receive state.
pub(super) struct DgramState {
    /// Read by the kernel when the recvmsg is submitted: how many bytes of the buffer to
    /// reserve for the source address. Boxed so its address is stable.
    msghdr: Box<libc::msghdr>,
    armed: bool,
    /// The receive ended for want of buffers.
    pub starved: bool,
}

impl DgramState {
    pub fn new(listener: &Listener) -> DgramState {
        // SAFETY: msghdr is plain data; all-zero is an empty header (null pointers, zero
        // lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        if listener.transport == Transport::Datagram {
            msghdr.msg_namelen = listener.source_name_len();
        }
        DgramState { msghdr, armed: false, starved: false }
    }
}

/// Where the reply goes and what it carries, inside the received buffer.
struct Reply {
    payload: *const u8,
    len: u32,
    name: *const libc::sockaddr,
    namelen: u32,
}

impl Worker<'_> {
    pub(super) fn arm_dgram(&mut self, listener: usize) {
        debug_assert_eq!(self.setup.listeners[listener].transport, Transport::Datagram);
        let state = &mut self.dgram[listener];
        if state.armed {
            return;
        }
        state.armed = true;
        let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
        let msghdr = &*state.msghdr as *const libc::msghdr;
        let token = Token::new(Kind::DgramRecv, listener as u32, 0).encode();
        self.push(opcode::RecvMsgMulti::new(fd, msghdr, self.buffers.group()).build().user_data(token));
    }

    pub(super) fn on_dgram_recv(&mut self, listener: usize, res: i32, flags: u32, more: bool) {
        if !more {
            self.dgram[listener].armed = false;
        }
        let buf = match cqueue::buffer_select(flags) {
            Some(bid) => match self.buffers.take(bid, &mut self.counters) {
                Some(buf) => Some(buf),
                None => {
                    // Not a buffer we can trust: the datagram is ignored; a receive that
                    // ended is re-armed at the next tick.
                    if !more && !self.backoff.contains(&listener) {
                        self.backoff.push(listener);
                    }
                    return;
                }
            },
            None => None,
        };
        match (res, buf) {
            (n, Some(buf)) if n >= 0 => self.on_datagram(listener, buf, n as u32),
            (n, buf) => {
                if let Some(buf) = buf {
                    self.buffers.release(buf, &mut self.counters);
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

    fn on_datagram(&mut self, listener: usize, buf: Buf, len: u32) {
        let (received, reply) = self.read_recvmsg(listener, &buf, len);
        let mode = self.setup.listeners[listener].mode;
        match self.rules.judge(mode, received, self.now, &mut self.counters) {
            Verdict::Reply => {
                let Some(r) = reply else {
                    // The rules answer only a datagram with a source, and then `reply` is
                    // there; were it not, the datagram still gets its one outcome.
                    Datagrams::replied(&mut self.counters, Err(std::io::ErrorKind::InvalidInput.into()));
                    self.buffers.release(buf, &mut self.counters);
                    return;
                };
                let bid = self.buffers.lend(buf, &mut self.counters);
                let token = Token { kind: Kind::DgramSend, slot: listener as u32, generation: 0, bid };
                let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
                self.push(
                    opcode::Send::new(fd, r.payload, r.len)
                        .dest_addr(r.name)
                        .dest_addr_len(r.namelen)
                        // A reply that cannot go at once (a peer's full queue) is dropped
                        // and counted: waiting would hold the buffer and, for a Unix
                        // datagram peer that never reads, the listener.
                        .flags(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                        .build()
                        .user_data(token.encode()),
                );
            }
            Verdict::Discard | Verdict::Truncated | Verdict::Unanswerable | Verdict::RateLimited => {
                self.buffers.release(buf, &mut self.counters);
            }
        }
    }

    /// Reads a datagram in `buf` (`len` bytes: the recvmsg header, the source address, the
    /// payload) as the rules see it, and where a reply would point.
    fn read_recvmsg(&self, listener: usize, buf: &Buf, len: u32) -> (Received, Option<Reply>) {
        let msghdr = &self.dgram[listener].msghdr;
        let Ok(out) = io_uring::types::RecvMsgOut::parse(self.buffers.bytes(buf, len), msghdr) else {
            // Not even a header: nothing of it can be echoed whole.
            return (Received { len: 0, truncated: true, source: None }, None);
        };
        let payload = out.payload_data();
        let name = out.name_data();
        let source = if out.is_name_data_truncated() { None } else { SourceKey::from_sockaddr(name) };
        let received = Received { len: payload.len(), truncated: out.is_payload_truncated(), source };
        let reply = source.map(|_| Reply {
            payload: payload.as_ptr(),
            len: payload.len() as u32,
            name: name.as_ptr().cast(),
            namelen: name.len() as u32,
        });
        (received, reply)
    }

    pub(super) fn on_dgram_sent(&mut self, token: Token, res: i32) {
        let sent = if res >= 0 { Ok(res as usize) } else { Err(std::io::Error::from_raw_os_error(-res)) };
        Datagrams::replied(&mut self.counters, sent);
        if let Some(buf) = self.buffers.reclaim(token.bid, &mut self.counters) {
            self.buffers.release(buf, &mut self.counters);
        }
    }
}
