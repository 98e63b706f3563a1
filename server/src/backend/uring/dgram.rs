//! Datagram listeners (UDP and Unix datagram): one multishot recvmsg per listener into
//! the datagram buffer group (buffers sized for the largest datagram, independent of the
//! stream `--buffer-size`), and each reply a send, to the source address, of the payload
//! inside the received buffer — no copy. A UDP_GRO train (several same-size datagrams
//! from one sender in one buffer) goes back with one send carrying UDP_SEGMENT of the same
//! size, so each datagram returns exactly as it came. The fate of each datagram and its
//! counting are [`crate::policy::Datagrams`]'s; this file only reads the kernel's recvmsg
//! layout and sends.

use super::buffers::Buffers;
use super::token::{Kind, Token};
use super::worker::Worker;
use crate::backend::contract::{Listener, Transport};
use crate::gso::{GRO_CONTROL_LEN, SegmentControl};
use crate::policy::{Datagrams, Echo, Received, SourceKey, Verdict};
use crate::ring::{Buf, BufRing};
use io_uring::{cqueue, opcode, types};
use std::os::fd::AsRawFd;

/// Bytes of a datagram buffer before the payload: the kernel's `io_uring_recvmsg_out`
/// header, then room for the source address and the control messages.
pub(super) fn header_room(listeners: &[Listener]) -> u32 {
    // struct io_uring_recvmsg_out: namelen, controllen, payloadlen, flags.
    let out = 4 * std::mem::size_of::<u32>() as u32;
    let datagram = listeners.iter().filter(|l| l.transport == Transport::Datagram);
    let room = datagram.map(|l| l.source_name_len() + if l.gro { GRO_CONTROL_LEN as u32 } else { 0 }).max();
    out + room.unwrap_or(0)
}

/// A datagram listener's receive state.
pub(super) struct DgramState {
    /// Read by the kernel when the recvmsg is submitted: how many bytes of the buffer to
    /// reserve for the source address and control messages. Boxed so its address is
    /// stable.
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
            if listener.gro {
                msghdr.msg_controllen = GRO_CONTROL_LEN as _;
            }
        }
        DgramState { msghdr, armed: false, starved: false }
    }
}

/// The datagram buffers and, per buffer, what a reply sent from it needs while in flight.
pub(super) struct DgramPool<'r> {
    pub buffers: Buffers<'r>,
    /// Indexed by buffer id: used while that buffer is lent to a reply.
    sends: Box<[SendSlot]>,
}

/// A reply's `sendmsg` header, iovec and UDP_SEGMENT message, at a stable address until
/// its send completes; and how many datagrams it carries, for the count.
struct SendSlot {
    msghdr: libc::msghdr,
    iov: libc::iovec,
    control: SegmentControl,
    datagrams: u32,
}

impl<'r> DgramPool<'r> {
    pub fn new(ring: &'r mut BufRing) -> DgramPool<'r> {
        let slots = (0..ring.count())
            .map(|_| SendSlot {
                // SAFETY: as in `DgramState::new`.
                msghdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                control: SegmentControl::new(0),
                datagrams: 0,
            })
            .collect();
        DgramPool { buffers: Buffers::new(ring), sends: slots }
    }
}

/// Where the reply goes and what it carries, inside the received buffer.
struct Reply {
    payload: *const u8,
    name: *const libc::sockaddr,
    namelen: u32,
}

impl Worker<'_> {
    pub(super) fn arm_dgram(&mut self, listener: usize) {
        debug_assert_eq!(self.setup.listeners[listener].transport, Transport::Datagram);
        let Some(pool) = &self.dgrams else {
            // Set up with every datagram listener's worker; without it nothing is armed.
            return;
        };
        let group = pool.buffers.group();
        let state = &mut self.dgram[listener];
        if state.armed {
            return;
        }
        state.armed = true;
        let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
        let msghdr = &*state.msghdr as *const libc::msghdr;
        let token = Token::new(Kind::DgramRecv, listener as u32, 0).encode();
        // MSG_TRUNC: the kernel reports a datagram's full length even when it did not
        // fit, so a cut GRO train counts every datagram it held.
        let entry = opcode::RecvMsgMulti::new(fd, msghdr, group).flags(libc::MSG_TRUNC as u32).build();
        self.push(entry.user_data(token));
    }

    pub(super) fn on_dgram_recv(&mut self, listener: usize, res: i32, flags: u32, more: bool) {
        if !more {
            self.dgram[listener].armed = false;
        }
        let Some(pool) = &mut self.dgrams else { return };
        let buf = match cqueue::buffer_select(flags) {
            Some(bid) => match pool.buffers.take(bid, &mut self.counters) {
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
                    pool.buffers.release(buf, &mut self.counters);
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
        let Some(pool) = &mut self.dgrams else { return };
        let (received, reply) = read_recvmsg(&self.dgram[listener], pool, &buf, len);
        let mode = self.setup.listeners[listener].mode;
        let echo = match self.rules.judge(mode, received, self.now, &mut self.counters) {
            Verdict::Reply(echo) => echo,
            Verdict::Discard | Verdict::Truncated | Verdict::Unanswerable | Verdict::RateLimited => {
                pool.buffers.release(buf, &mut self.counters);
                return;
            }
        };
        let Some(r) = reply else {
            // The rules answer only a datagram with a source, and then `reply` is there;
            // were it not, the datagram still gets its one outcome.
            let refused = Err(std::io::ErrorKind::InvalidInput.into());
            Datagrams::replied(&mut self.counters, echo.datagrams, refused);
            pool.buffers.release(buf, &mut self.counters);
            return;
        };
        let bid = pool.buffers.lend(buf, &mut self.counters);
        let Some(slot) = pool.sends.get_mut(usize::from(bid)) else {
            // An id beyond the pool cannot come from `take`; count and drop all the same.
            Datagrams::replied(
                &mut self.counters,
                echo.datagrams,
                Err(std::io::ErrorKind::InvalidInput.into()),
            );
            if let Some(buf) = pool.buffers.reclaim(bid, &mut self.counters) {
                pool.buffers.release(buf, &mut self.counters);
            }
            return;
        };
        slot.datagrams = echo.datagrams;
        let token = Token { kind: Kind::DgramSend, slot: listener as u32, generation: 0, bid };
        let fd = types::Fd(self.setup.listeners[listener].fd.as_raw_fd());
        // A reply that cannot go at once (a peer's full queue) is dropped and counted:
        // waiting would hold the buffer and, for a Unix datagram peer that never reads,
        // the listener.
        let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
        let entry = match echo {
            Echo { segment: Some(size), bytes, .. } => {
                slot.iov = libc::iovec { iov_base: r.payload as *mut libc::c_void, iov_len: bytes };
                slot.control = SegmentControl::new(size);
                slot.msghdr.msg_name = r.name as *mut libc::c_void;
                slot.msghdr.msg_namelen = r.namelen;
                slot.msghdr.msg_iov = &mut slot.iov;
                slot.msghdr.msg_iovlen = 1;
                slot.msghdr.msg_control = slot.control.as_bytes().as_ptr() as *mut libc::c_void;
                slot.msghdr.msg_controllen = SegmentControl::LEN as _;
                opcode::SendMsg::new(fd, &slot.msghdr).flags(flags as u32).build()
            }
            Echo { segment: None, bytes, .. } => opcode::Send::new(fd, r.payload, bytes as u32)
                .dest_addr(r.name)
                .dest_addr_len(r.namelen)
                .flags(flags)
                .build(),
        };
        self.push(entry.user_data(token.encode()));
    }

    pub(super) fn on_dgram_sent(&mut self, token: Token, res: i32) {
        let sent = if res >= 0 { Ok(res as usize) } else { Err(std::io::Error::from_raw_os_error(-res)) };
        let Some(pool) = &mut self.dgrams else { return };
        let datagrams = pool.sends.get(usize::from(token.bid)).map_or(1, |s| s.datagrams);
        Datagrams::replied(&mut self.counters, datagrams, sent);
        if let Some(buf) = pool.buffers.reclaim(token.bid, &mut self.counters) {
            pool.buffers.release(buf, &mut self.counters);
        }
    }
}

/// Reads a datagram (or GRO train) in `buf` (`len` bytes: the recvmsg header, the source
/// address, the control messages, the payload) as the rules see it, and where a reply
/// would point.
fn read_recvmsg(state: &DgramState, pool: &DgramPool<'_>, buf: &Buf, len: u32) -> (Received, Option<Reply>) {
    let Ok(out) = io_uring::types::RecvMsgOut::parse(pool.buffers.bytes(buf, len), &state.msghdr) else {
        // Not even a header: nothing of it can be echoed whole.
        return (Received::single(1, 0, None), None);
    };
    let payload = out.payload_data();
    let name = out.name_data();
    let source = if out.is_name_data_truncated() { None } else { SourceKey::from_sockaddr(name) };
    // The kernel reports the datagram's full length; should it report only what fit,
    // a truncated one still counts as longer than the buffer.
    let fit = payload.len() + usize::from(out.is_payload_truncated());
    let full = (out.incoming_payload_len() as usize).max(fit);
    let segment = crate::gso::gro_segment(out.control_data());
    let received = Received { len: full, captured: payload.len(), segment, source };
    let reply = source.map(|_| Reply {
        payload: payload.as_ptr(),
        name: name.as_ptr().cast(),
        namelen: name.len() as u32,
    });
    (received, reply)
}
