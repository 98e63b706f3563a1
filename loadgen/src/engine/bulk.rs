//! The bulk transport (TCP and Unix stream): each connection writes continuously
//! (`--mode send`, `bulk`), reads continuously (`receive`, `bulk`), or both, counting bytes
//! instead of timing messages. `--verify` checks what comes back: against ringecho's
//! source pattern (byte `i` of a source stream is [`ringecho::source_byte`]`(i)`) in
//! `receive`, against the bytes sent in `bulk`. At the stop each connection shuts its
//! write side and reads until the target's end of file, so that every byte the target
//! sent before it saw the end is counted (the counts then equal the server's).
//!
//! The same type serves the background flows of `--background` (`BACKGROUND = true`):
//! they connect to `--background-target` if given and do `--background-mode`.
//!
//! Invariant: per connection `received ≤ submitted` in `bulk` (bytes beyond are the target
//! talking out of turn: `unsolicited_bytes`); one send in flight, reading from the
//! transport's [`Pattern`], which the worker keeps until the kernel has answered every
//! operation, SEND_ZC notifications included (see [`super::transport`]).

use super::clock::Clock;
use super::token::{Op, Token};
use super::transport::{Ctx, Received, Transport};
use super::types::{RunError, Shared};
use crate::connect::Dial;
use crate::payload::Pattern;
use crate::plan::{Mode, ThroughputPlan};
use crate::target::Target;
use io_uring::{cqueue, opcode, types};
use ringecho::ring::{self, Buf};
use std::os::fd::{AsRawFd, OwnedFd};

/// One bulk connection.
pub(super) struct Conn {
    fd: OwnedFd,
    phase: u64,
    /// Bytes handed to the kernel (confirmed or in flight) and received.
    submitted: u64,
    received: u64,
    in_flight_len: u32,
    send_in_flight: bool,
    recv_armed: bool,
    starved: bool,
    /// Failed, or ended (the target's end of file after ours).
    dead: bool,
    /// Our write side is shut: the run is stopping.
    shut: bool,
    /// SO_SNDBUF and SO_RCVBUF as the kernel set them.
    buffers: (u32, u32),
}

/// A stream socket for `target` with the plan's buffer sizes set (before connecting: the
/// window scale is agreed in the handshake), and its address.
fn dial(target: &Target, t: &ThroughputPlan) -> std::io::Result<Dial<()>> {
    let to = match target {
        Target::Tcp(a) => socket2::SockAddr::from(*a),
        Target::Unix(p) => socket2::SockAddr::unix(p)?,
        _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a stream target")),
    };
    let socket = socket2::Socket::new(to.domain(), socket2::Type::STREAM.cloexec(), None)?;
    if let Some(n) = t.sndbuf {
        socket.set_send_buffer_size(n as usize)?;
    }
    if let Some(n) = t.rcvbuf {
        socket.set_recv_buffer_size(n as usize)?;
    }
    Ok(Dial { socket, to, keep: () })
}

/// The source pattern as ringecho sends it, long enough to compare a whole receive
/// buffer from any phase in one slice.
struct SourcePattern(Box<[u8]>);

/// The source pattern's period (ringecho's `source_byte` repeats every 251 bytes; the
/// table is built from that function, so a change there shows as mismatches, not as a
/// silent pass).
const SOURCE_PERIOD: u64 = 251;

impl SourcePattern {
    fn new(longest: usize) -> SourcePattern {
        SourcePattern((0..longest as u64 + SOURCE_PERIOD).map(ringecho::source_byte).collect())
    }

    /// Bytes of `data` that differ from the source stream at `offset`.
    fn mismatches(&self, offset: u64, data: &[u8]) -> usize {
        let mut bad = 0;
        for (k, chunk) in data.chunks(self.0.len() - SOURCE_PERIOD as usize).enumerate() {
            let at = offset + (k * (self.0.len() - SOURCE_PERIOD as usize)) as u64;
            let start = (at % SOURCE_PERIOD) as usize;
            let expect = &self.0[start..start + chunk.len()];
            if expect != chunk {
                bad += expect.iter().zip(chunk).filter(|(a, b)| a != b).count();
            }
        }
        bad
    }
}

/// A worker's bulk connections; `BACKGROUND` for the flows beside a measured one.
pub(super) struct Bulk<const BACKGROUND: bool> {
    pattern: Pattern,
    source: Option<SourcePattern>,
    conns: Vec<Conn>,
    mode: Mode,
    verify: bool,
    write_size: u32,
    zerocopy: bool,
    window_started: bool,
    window_ended: bool,
}

/// Bytes per provided receive buffer (the worker's ring).
const RECV_BUFFER: usize = 64 * 1024;

impl<const BACKGROUND: bool> Bulk<BACKGROUND> {
    fn mode_of(shared: &Shared) -> Mode {
        let t = &shared.plan.throughput;
        if BACKGROUND { t.background_mode } else { t.mode }
    }
}

impl<const BACKGROUND: bool> Transport for Bulk<BACKGROUND> {
    // 64 × 64 KiB: enough for a receive per connection in flight, few enough to stay
    // warm in cache (256 cost ~10% more CPU per byte receiving, same Gbit/s).
    const BUFFERS: u16 = 64;

    type Conn = Conn;

    type Keep = ();

    fn dial(shared: &Shared, _: u32) -> std::io::Result<Dial<()>> {
        let t = &shared.plan.throughput;
        let target = match (&t.background_target, BACKGROUND) {
            (Some(bg), true) => bg,
            _ => &shared.target,
        };
        dial(target, t)
    }

    fn connected(_: &Shared, id: u32, socket: socket2::Socket, (): ()) -> std::io::Result<Conn> {
        // SO_SNDBUF and SO_RCVBUF as the kernel set them.
        let as_u32 = |r: std::io::Result<usize>| r.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let buffers = (as_u32(socket.send_buffer_size()), as_u32(socket.recv_buffer_size()));
        let fd = socket.into();
        Ok(Conn {
            fd,
            phase: Pattern::phase(u64::from(id)),
            submitted: 0,
            received: 0,
            in_flight_len: 0,
            send_in_flight: false,
            recv_armed: false,
            starved: false,
            dead: false,
            shut: false,
            buffers,
        })
    }

    fn new(shared: &Shared, _: &Clock, conns: Vec<Conn>) -> Result<Self, RunError> {
        let t = &shared.plan.throughput;
        let mode = Self::mode_of(shared);
        let verify = shared.plan.verify && !BACKGROUND;
        Ok(Bulk {
            pattern: Pattern::new(shared.plan.seed),
            source: (verify && mode == Mode::Receive).then(|| SourcePattern::new(RECV_BUFFER)),
            conns,
            mode,
            verify,
            write_size: t.write_size,
            zerocopy: t.zerocopy,
            window_started: false,
            window_ended: false,
        })
    }

    fn conns(&self) -> usize {
        self.conns.len()
    }

    fn is_dead(&self, i: usize) -> bool {
        self.conns[i].dead
    }

    fn all_gone(&self) -> bool {
        self.conns.iter().all(|c| c.dead)
    }

    fn drained(&self) -> bool {
        self.conns.iter().all(|c| c.dead)
    }

    fn queued(&self, _: usize) -> usize {
        0
    }

    fn unanswered(&self, _: u64) -> u64 {
        0
    }

    fn arm_recv(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        if c.recv_armed || c.dead {
            return;
        }
        c.recv_armed = true;
        // Every mode reads: a send-only target that answers, and every end of file, must
        // be seen.
        let entry = ring::recv_multishot(types::Fd(c.fd.as_raw_fd()), cx.buf_ring.group(), None)
            .user_data(Token::new(Op::Recv, i, 0).encode());
        // SAFETY: a receive lands in the worker's buffer ring, which outlives the ring.
        unsafe { cx.push(&entry) };
    }

    fn schedule(&mut self, _: &mut Ctx<'_>, _: usize, _: u64) {}

    fn pump(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let c = &mut self.conns[i];
        if !self.mode.sends() || c.send_in_flight || c.dead || c.shut || !cx.scheduling {
            return;
        }
        let len = self.write_size;
        let data = self.pattern.slice(c.phase + c.submitted, len as usize);
        c.send_in_flight = true;
        c.in_flight_len = len;
        c.submitted += u64::from(len);
        cx.rec.counters.sends += 1;
        let fd = types::Fd(c.fd.as_raw_fd());
        let token = Token::new(Op::Send, i, 0).encode();
        let entry = if self.zerocopy {
            cx.rec.bulk.zerocopy_sends += 1;
            opcode::SendZc::new(fd, data.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build().user_data(token)
        } else {
            opcode::Send::new(fd, data.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build().user_data(token)
        };
        // SAFETY: the send reads from `self.pattern`, heap memory this transport owns and
        // never writes; the worker frees the transport only after the last completion (a
        // SEND_ZC's notification included: the driver counts it in flight until then).
        unsafe { cx.push(&entry) };
    }

    fn fill(&mut self, cx: &mut Ctx<'_>, i: usize) {
        self.pump(cx, i);
    }

    fn complete(&mut self, cx: &mut Ctx<'_>, token: Token, res: i32, flags: u32) {
        let i = token.conn();
        if i >= self.conns.len() {
            return;
        }
        match token.op {
            Op::Send if cqueue::notif(flags) => {} // SEND_ZC: the kernel let go of the memory
            Op::Send => self.on_sent(cx, i, res),
            Op::Recv => self.on_recv(cx, i, res, flags),
            Op::Connect | Op::Cancel => {}
        }
    }

    fn housekeeping(&mut self, cx: &mut Ctx<'_>) {
        let (now, clock) = (cx.now, &cx.clock);
        if !self.window_started && now >= clock.warm_end {
            self.window_started = true;
            cx.rec.bulk.cpu_start = Some(super::worker::thread_cpu());
            cx.rec.bulk.buffers = self.conns.first().map_or((0, 0), |c| c.buffers);
        }
        if self.window_started && !self.window_ended && (now >= clock.stop_at || !cx.scheduling) {
            self.window_ended = true;
            cx.rec.bulk.cpu_end = Some(super::worker::thread_cpu());
        }
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.starved {
                c.starved = false;
                self.arm_recv(cx, i);
            }
            let c = &mut self.conns[i];
            if !cx.scheduling && !c.shut && !c.dead && !c.send_in_flight {
                // The stop: our end of file; the target's answers it once it has sent
                // (echo) or stopped sending (source) everything.
                c.shut = true;
                if socket2::SockRef::from(&c.fd).shutdown(std::net::Shutdown::Write).is_err() {
                    c.dead = true;
                }
            }
        }
    }
}

impl<const BACKGROUND: bool> Bulk<BACKGROUND> {
    fn on_sent(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32) {
        let c = &mut self.conns[i];
        c.send_in_flight = false;
        if res < 0 {
            self.fail(cx, i, -res);
            return;
        }
        let n = res as u64;
        // A short send: the rest goes again from where the kernel stopped.
        c.submitted -= u64::from(c.in_flight_len).saturating_sub(n);
        c.in_flight_len = 0;
        cx.rec.counters.bytes_sent += n;
        let now = cx.now;
        cx.rec.moved(&cx.clock, now, n, 0);
        self.pump(cx, i);
    }

    fn on_recv(&mut self, cx: &mut Ctx<'_>, i: usize, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.conns[i].recv_armed = false;
        }
        cx.received(res, flags, |cx, what| match what {
            Received::Data(buf, n) => self.on_data(cx, i, buf, n),
            Received::Eof => {
                let c = &mut self.conns[i];
                if !c.dead {
                    if !c.shut {
                        // The target ended the connection while the run still needed it.
                        cx.rec.counters.unexpected_eof += 1;
                        cx.rec.counters.conns_lost += 1;
                    }
                    c.dead = true;
                }
            }
            Received::Starved => self.conns[i].starved = true,
            Received::Cancelled => {}
            Received::Failed(errno) => self.fail(cx, i, errno),
        });
        let c = &self.conns[i];
        if !c.recv_armed && !c.dead && !c.starved {
            self.arm_recv(cx, i);
        }
    }

    fn on_data(&mut self, cx: &mut Ctx<'_>, i: usize, buf: &Buf, n: u32) {
        cx.rec.counters.bytes_received += u64::from(n);
        let data = cx.buf_ring.bytes(buf, n);
        let c = &mut self.conns[i];
        let offset = c.received;
        c.received += u64::from(n);
        let bad = match self.mode {
            Mode::Bulk => {
                // Only bytes handed to the kernel can be echoes.
                let valid = u64::from(n).min(c.submitted.saturating_sub(offset)) as usize;
                cx.rec.counters.unsolicited_bytes += u64::from(n) - valid as u64;
                if self.verify { self.pattern.mismatches(c.phase + offset, &data[..valid]) } else { 0 }
            }
            Mode::Receive => self.source.as_ref().map_or(0, |s| s.mismatches(offset, data)),
            Mode::Send | Mode::Rr => 0,
        };
        // Bytes, not messages: a bulk stream has none (and no message "failed").
        cx.rec.counters.mismatched_bytes += bad as u64;
        let now = cx.now;
        cx.rec.moved(&cx.clock, now, 0, u64::from(n));
    }

    fn fail(&mut self, cx: &mut Ctx<'_>, i: usize, errno: i32) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        match errno {
            libc::ECONNRESET | libc::EPIPE => cx.rec.counters.reset += 1,
            _ => cx.rec.counters.socket_errors += 1,
        }
        cx.rec.counters.conns_lost += 1;
        c.dead = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_check_is_ringechos_pattern_exactly() {
        let p = SourcePattern::new(1000);
        let stream: Vec<u8> = (0..5000u64).map(ringecho::source_byte).collect();
        for offset in [0usize, 1, 250, 251, 777, 3999] {
            assert_eq!(p.mismatches(offset as u64, &stream[offset..]), 0, "offset {offset}");
        }
        let mut bad = stream.clone();
        bad[2345] ^= 0x40;
        assert_eq!(p.mismatches(0, &bad), 1);
        assert_eq!(p.mismatches(1, &stream[..100]), 100, "one byte off is all wrong");
    }
}
