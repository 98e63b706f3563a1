//! A plain open-loop echo client, written the way a C programmer would write it in about
//! a hundred lines: one thread, one epoll set (mio), one absolute `timerfd` re-armed to the
//! next due time. It is the floor ringload's open loop is compared against (issue 25), as
//! `epoll-client` is for the closed loop.
//!
//! The schedule is a fixed total rate spread round-robin over the connections: message `k`
//! is due at `t0 + k / rate` on connection `k mod N`. On each timer wake every message that
//! has fallen due is sent at once, each its own write (as wrk2 sends requests); replies are
//! read on readability wakes. Latency counts from each message's intended send time, so a
//! client or server that falls behind shows it (coordinated-omission correct, like
//! ringload); a send more than 100 µs after its due time is counted late.
//!
//! Invariant: each connection holds the intended send times of its messages not yet
//! answered, oldest first. A stream reply is matched by counting bytes in order; a datagram
//! by the 8-byte sequence number at the start of its payload.
//!
//! Prints one line of `key=value` results; exits 2 (`error: ...`) on an error or when no
//! measured message was answered.
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::{TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

/// A send this much after its due time is late (ringload's `slo::LAG_LIMIT`).
const LATE_NS: u64 = 100_000;
/// The timer's token; connections are `Token(0..N)`.
const TIMER: Token = Token(usize::MAX);

/// Plain open-loop epoll echo client: a fixed rate, latency from each intended send time.
///
/// Example: epoll-open-loop 127.0.0.1:7007 -r 50k -c 50 -s 64 -d 5s
#[derive(Parser)]
struct Args {
    /// Server address.
    addr: SocketAddr,
    /// Messages per second in all (`20000`, `50k`, `1.5M`), round-robin over the connections.
    #[arg(short, long, value_name = "MSG/S", value_parser = ringload::units::parse_rate)]
    rate: f64,
    /// Concurrent connections (UDP: connected sockets).
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Message size: `64`, `4KiB` (UDP: at least 8 bytes, the sequence number).
    #[arg(short, long, default_value = "64", value_parser = parse_size)]
    size: usize,
    /// Measured duration.
    #[arg(short, long, default_value = "5s", value_parser = ringecho::units::parse_duration)]
    duration: Duration,
    /// Warm-up before measuring: messages due in it are sent but not counted.
    #[arg(short, long, default_value = "1s", value_parser = ringecho::units::parse_duration)]
    warmup: Duration,
    /// After the last send, wait up to this long for replies; a datagram unanswered this
    /// long is lost.
    #[arg(long, default_value = "1s", value_parser = ringecho::units::parse_duration)]
    drain: Duration,
    /// UDP instead of TCP: one datagram per message, matched by its sequence number.
    #[arg(long)]
    udp: bool,
}

/// A message size in bytes, as ringecho's units read it.
fn parse_size(text: &str) -> Result<usize, String> {
    let n = ringecho::units::parse_size(text).map_err(|e| e.to_string())?;
    usize::try_from(n).map_err(|_| format!("{text:?} is too large"))
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.size == 0 {
        bail!("--connections and --size must be at least 1");
    }
    if args.udp && args.size < 8 {
        bail!("--size must be at least 8 with --udp (the sequence number)");
    }
    let poll = Poll::new().context("epoll_create")?;
    if args.udp {
        let mut flows = Vec::with_capacity(args.connections);
        let local: SocketAddr =
            if args.addr.is_ipv6() { "[::1]:0".parse()? } else { "127.0.0.1:0".parse()? };
        for i in 0..args.connections {
            let mut sock = UdpSocket::bind(local).context("binding a UDP socket")?;
            sock.connect(args.addr).with_context(|| format!("connecting to udp {}", args.addr))?;
            poll.registry().register(&mut sock, Token(i), Interest::READABLE)?;
            flows.push(Dgram { sock, base: 0, waiting: VecDeque::new() });
        }
        drive(args, poll, flows, "udp")
    } else {
        let mut conns = Vec::with_capacity(args.connections);
        for i in 0..args.connections {
            let std_stream = std::net::TcpStream::connect(args.addr)
                .with_context(|| format!("connecting to tcp {}", args.addr))?;
            std_stream.set_nodelay(true)?;
            std_stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            conns.push(Stream { stream, due: VecDeque::new(), received: 0, unsent: 0 });
        }
        drive(args, poll, conns, "tcp")
    }
}

/// One connection or flow, as the loop sees it.
trait Flow {
    /// Sends one message due at `due` (`msg` may be rewritten: a datagram's sequence).
    fn send(&mut self, msg: &mut [u8], due: u64) -> anyhow::Result<()>;
    /// Writes what an earlier send could not (streams).
    fn flush(&mut self, msg: &[u8]) -> anyhow::Result<()>;
    /// Reads every reply there is, each recorded at `now`.
    fn read(&mut self, buf: &mut [u8], size: usize, now: u64, rec: &mut Recorder) -> anyhow::Result<()>;
    /// Forgets messages sent before `before` (datagrams: lost); returns how many.
    fn expire(&mut self, before: u64) -> u64;
    /// Messages sent and not answered.
    fn waiting(&self) -> usize;
}

/// A TCP connection: replies are matched by counting bytes in order.
struct Stream {
    stream: TcpStream,
    /// Intended send times of the messages not yet answered in full, oldest first.
    due: VecDeque<u64>,
    /// Bytes of the oldest message's reply received so far.
    received: usize,
    /// Bytes sent by `send` that the socket had no room for yet; later messages queue
    /// behind them so that the byte order stays the message order.
    unsent: usize,
}

impl Flow for Stream {
    fn send(&mut self, msg: &mut [u8], due: u64) -> anyhow::Result<()> {
        self.due.push_back(due);
        self.unsent += msg.len();
        if self.unsent == msg.len() { self.flush(msg) } else { Ok(()) }
    }

    fn flush(&mut self, msg: &[u8]) -> anyhow::Result<()> {
        // Every message is the same bytes, so any prefix of `msg` continues the stream.
        while self.unsent > 0 {
            match self.stream.write(&msg[..self.unsent.min(msg.len())]) {
                Ok(n) => self.unsent -= n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("write"),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], size: usize, now: u64, rec: &mut Recorder) -> anyhow::Result<()> {
        loop {
            let mut n = match self.stream.read(buf) {
                Ok(0) => bail!("the server closed a connection"),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("read"),
            };
            while n > 0 {
                let take = n.min(size - self.received);
                self.received += take;
                n -= take;
                if self.received == size {
                    self.received = 0;
                    let Some(due) = self.due.pop_front() else {
                        bail!("the server sent bytes nobody asked for")
                    };
                    rec.answered(due, now);
                }
            }
        }
    }

    fn expire(&mut self, _before: u64) -> u64 {
        0 // a stream loses nothing: an unanswered message is still on its way
    }

    fn waiting(&self) -> usize {
        self.due.len()
    }
}

/// A connected UDP socket: a reply is matched by the sequence number it carries.
struct Dgram {
    sock: UdpSocket,
    /// The sequence number of `waiting[0]`.
    base: u64,
    /// Intended send times by sequence number from `base`; `None` once answered.
    waiting: VecDeque<Option<u64>>,
}

impl Dgram {
    fn pop_answered(&mut self) {
        while let Some(None) = self.waiting.front() {
            self.waiting.pop_front();
            self.base += 1;
        }
    }
}

impl Flow for Dgram {
    fn send(&mut self, msg: &mut [u8], due: u64) -> anyhow::Result<()> {
        let seq = self.base + self.waiting.len() as u64;
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        self.waiting.push_back(Some(due));
        match self.sock.send(msg) {
            // A datagram the kernel had no room for is lost, and expires as one.
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(()),
            Err(e) => Err(e).context("send"),
        }
    }

    fn flush(&mut self, _msg: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], _size: usize, now: u64, rec: &mut Recorder) -> anyhow::Result<()> {
        loop {
            let n = match self.sock.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("recv"),
            };
            let Some(seq) = buf.get(..8.min(n)).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
            else {
                rec.strays += 1;
                continue;
            };
            let slot =
                usize::try_from(seq.wrapping_sub(self.base)).ok().and_then(|i| self.waiting.get_mut(i));
            match slot.and_then(Option::take) {
                Some(due) => rec.answered(due, now),
                None => rec.strays += 1, // a duplicate, one already expired, or garbage
            }
            self.pop_answered();
        }
    }

    fn expire(&mut self, before: u64) -> u64 {
        let mut lost = 0;
        while let Some(Some(due)) = self.waiting.front() {
            if *due >= before {
                break;
            }
            self.waiting.pop_front();
            self.base += 1;
            lost += 1;
            self.pop_answered();
        }
        lost
    }

    fn waiting(&self) -> usize {
        self.waiting.iter().filter(|d| d.is_some()).count()
    }
}

/// What the run counts; a message is measured when it was due at or after `measure_from`.
struct Recorder {
    measure_from: u64,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    sent: u64,
    answered: u64,
    answered_total: u64,
    late_sends: u64,
    lost: u64,
    strays: u64,
}

impl Recorder {
    fn sent(&mut self, due: u64, at: u64) {
        if due >= self.measure_from {
            self.sent += 1;
            let lag = at.saturating_sub(due);
            self.lag.saturating_record(lag);
            self.late_sends += u64::from(lag > LATE_NS);
        }
    }

    fn answered(&mut self, due: u64, now: u64) {
        self.answered_total += 1;
        if due >= self.measure_from {
            self.answered += 1;
            self.latency.saturating_record(now.saturating_sub(due));
        }
    }
}

/// Nanoseconds on CLOCK_MONOTONIC, the timer's clock.
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Arms the timer to go off once at `at` (CLOCK_MONOTONIC ns, absolute).
fn arm(timer: &OwnedFd, at: u64) -> anyhow::Result<()> {
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    let at = Timespec { tv_sec: (at / 1_000_000_000) as _, tv_nsec: (at % 1_000_000_000) as _ };
    rustix::time::timerfd_settime(
        timer,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec { it_interval: zero, it_value: at },
    )
    .context("timerfd_settime")?;
    Ok(())
}

/// This process's CPU seconds (utime + stime), from /proc/self/stat.
fn process_cpu_s() -> anyhow::Result<f64> {
    let cpu = ringecho::procfs::process_cpu().context("reading /proc/self/stat")?;
    Ok(cpu.user_s + cpu.system_s)
}

/// The event loop: the schedule, the timer, the replies; then the drain and the report.
fn drive<F: Flow>(args: &Args, mut poll: Poll, mut flows: Vec<F>, transport: &str) -> anyhow::Result<()> {
    let timer = rustix::time::timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )
    .context("timerfd_create")?;
    poll.registry().register(&mut SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    let interval = 1e9 / args.rate;
    let t0 = now_ns() + 1_000_000;
    let due = |k: u64| t0 + (k as f64 * interval) as u64;
    let measure_from = t0 + args.warmup.as_nanos() as u64;
    let stop_at = measure_from + args.duration.as_nanos() as u64;
    let drain_ns = args.drain.as_nanos() as u64;
    let mut rec = Recorder {
        measure_from,
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        lag: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        sent: 0,
        answered: 0,
        answered_total: 0,
        late_sends: 0,
        lost: 0,
        strays: 0,
    };
    let mut msg = vec![0x5au8; args.size];
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    let (mut next, mut cpu_from, mut cpu_to) = (0u64, None, None);
    let mut last_expiry = t0;
    let mut drain_until = None;
    arm(&timer, due(0))?;
    loop {
        let timeout = drain_until.map(|end: u64| Duration::from_nanos(end.saturating_sub(now_ns())));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("epoll_wait"),
        }
        let now = now_ns();
        let mut timer_fired = false;
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer_fired = true;
                // The count of expirations is not needed; reading resets readiness.
                let _ = rustix::io::read(&timer, &mut [0u8; 8]);
                continue;
            }
            let flow = &mut flows[ev.token().0];
            if ev.is_writable() {
                flow.flush(&msg)?;
            }
            if ev.is_readable() {
                flow.read(&mut buf, args.size, now, &mut rec)?;
            }
        }
        if timer_fired && drain_until.is_none() {
            // Every message that has fallen due, each its own send.
            while due(next) <= now && due(next) < stop_at {
                let d = due(next);
                if cpu_from.is_none() && d >= measure_from {
                    cpu_from = Some(process_cpu_s()?);
                }
                let i = (next % flows.len() as u64) as usize;
                // The lag is to the hand-out, as ringload's: the send's own cost is not in it.
                rec.sent(d, now_ns());
                flows[i].send(&mut msg, d)?;
                next += 1;
            }
            if now >= stop_at {
                cpu_to = Some(process_cpu_s()?);
                drain_until = Some(now + drain_ns);
            } else {
                arm(&timer, due(next).min(stop_at))?;
            }
            if now.saturating_sub(last_expiry) >= 10_000_000 {
                last_expiry = now;
                let before = now.saturating_sub(drain_ns);
                rec.lost += flows.iter_mut().map(|f| f.expire(before)).sum::<u64>();
            }
        }
        if let Some(end) = drain_until {
            if now >= end || flows.iter().all(|f| f.waiting() == 0) {
                break;
            }
        }
    }
    let unanswered: usize = flows.iter().map(Flow::waiting).sum();
    let total_cpu_s = process_cpu_s()?;
    let window_cpu_s = match (cpu_from, cpu_to) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    if rec.answered == 0 {
        bail!("no measured message was answered ({} sent, {unanswered} unanswered)", rec.sent);
    }
    let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q);
    println!(
        "transport={transport} connections={} size={} target_rate={:.0} sent={} msgs={} total_msgs={} rate={:.0} \
         p50_ns={} p99_ns={} p999_ns={} lag_p99_ns={} late_sends={} cpu_s={:.3} cpu_us_per_msg={:.3} \
         total_cpu_s={:.3} lost={} strays={} unanswered={unanswered}",
        args.connections,
        args.size,
        args.rate,
        rec.sent,
        rec.answered,
        rec.answered_total,
        rec.answered as f64 / args.duration.as_secs_f64(),
        q(&rec.latency, 0.5),
        q(&rec.latency, 0.99),
        q(&rec.latency, 0.999),
        q(&rec.lag, 0.99),
        rec.late_sends,
        window_cpu_s,
        window_cpu_s / rec.answered as f64 * 1e6,
        total_cpu_s,
        rec.lost,
        rec.strays,
    );
    Ok(())
}
