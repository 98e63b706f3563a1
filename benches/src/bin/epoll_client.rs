//! A minimal single-threaded epoll (mio) closed-loop echo client: each connection sends a
//! message, waits for all of its bytes to come back, and sends the next. It does as little
//! as a client can per round trip, so it measures the server, not itself; it is the floor
//! ringload is compared against. Prints one line of `key=value` results.
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Minimal closed-loop epoll echo client.
#[derive(Parser)]
struct Args {
    /// Server address.
    addr: SocketAddr,
    /// Concurrent connections.
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Message size in bytes.
    #[arg(short, long, default_value_t = 64)]
    size: usize,
    /// Measured duration.
    #[arg(short, long, default_value = "5s", value_parser = ringecho::units::parse_duration)]
    duration: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "1s", value_parser = ringecho::units::parse_duration)]
    warmup: Duration,
    /// UDP instead of TCP: each "connection" is a connected UDP socket with one datagram
    /// in flight; a datagram unanswered for 100 ms is counted lost and sent again.
    #[arg(long)]
    udp: bool,
}

struct Conn {
    stream: TcpStream,
    sent: usize,
    received: usize,
    started: Instant,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.size == 0 || args.connections == 0 {
        bail!("--size and --connections must be at least 1");
    }
    if args.udp {
        return udp(&args);
    }
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let std_stream = std::net::TcpStream::connect(args.addr)
            .with_context(|| format!("connecting to {}", args.addr))?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn { stream, sent: 0, received: 0, started: Instant::now() });
    }
    let msg = vec![0x5au8; args.size];
    let mut buf = vec![0u8; args.size.max(64 * 1024)];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut events = Events::with_capacity(1024);
    let begin = Instant::now();
    let measure_from = begin + args.warmup;
    let end = measure_from + args.duration;
    let mut count = 0u64;
    let mut total = 0u64;
    let mut errors = 0u64;
    for c in conns.iter_mut() {
        pump(
            c,
            &msg,
            &mut buf,
            &mut hist,
            (&mut count, &mut total),
            &mut errors,
            Instant::now() >= measure_from,
        )?;
    }
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        let measuring = Instant::now() >= measure_from;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            pump(c, &msg, &mut buf, &mut hist, (&mut count, &mut total), &mut errors, measuring)?;
        }
    }
    let secs = args.duration.as_secs_f64();
    println!(
        "connections={} size={} msgs={} total_msgs={} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={}",
        args.connections,
        args.size,
        count,
        total,
        count as f64 / secs,
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        errors
    );
    Ok(())
}

/// Moves one connection as far as it can go without blocking.
fn pump(
    c: &mut Conn,
    msg: &[u8],
    buf: &mut [u8],
    hist: &mut Histogram<u64>,
    (count, total): (&mut u64, &mut u64),
    errors: &mut u64,
    measuring: bool,
) -> anyhow::Result<()> {
    loop {
        if c.sent < msg.len() {
            match c.stream.write(&msg[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => bail!("write: {e}"),
            }
        }
        match c.stream.read(&mut buf[..msg.len() - c.received]) {
            Ok(0) => bail!("server closed the connection"),
            Ok(n) => {
                c.received += n;
                if c.received == msg.len() {
                    *total += 1;
                    if measuring {
                        *count += 1;
                        let _ = hist.record(c.started.elapsed().as_nanos() as u64);
                    }
                    c.sent = 0;
                    c.received = 0;
                    c.started = Instant::now();
                    continue;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                *errors += 1;
                bail!("read: {e}");
            }
        }
    }
}

/// The UDP variant: connected sockets, one datagram in flight each.
fn udp(args: &Args) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let local: SocketAddr = if args.addr.is_ipv6() { "[::1]:0".parse()? } else { "127.0.0.1:0".parse()? };
    let mut socks = Vec::new();
    for i in 0..args.connections {
        let mut s = UdpSocket::bind(local)?;
        s.connect(args.addr)?;
        poll.registry().register(&mut s, Token(i), Interest::READABLE)?;
        socks.push((s, Instant::now()));
    }
    let msg = vec![0x5au8; args.size];
    let mut buf = vec![0u8; 65_536];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut events = Events::with_capacity(1024);
    let measure_from = Instant::now() + args.warmup;
    let end = measure_from + args.duration;
    let (mut count, mut total, mut lost) = (0u64, 0u64, 0u64);
    // Each round trip is timed from before its send, as ringload and sockperf time it:
    // on loopback the send itself carries the datagram into the server's socket.
    for (s, started) in socks.iter_mut() {
        *started = Instant::now();
        s.send(&msg)?;
    }
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        let now = Instant::now();
        for ev in events.iter() {
            let (s, started) = &mut socks[ev.token().0];
            loop {
                match s.recv(&mut buf) {
                    Ok(_) => {
                        total += 1;
                        if now >= measure_from {
                            count += 1;
                            let _ = hist.record(started.elapsed().as_nanos() as u64);
                        }
                        *started = Instant::now();
                        s.send(&msg)?;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => bail!("recv: {e}"),
                }
            }
        }
        for (s, started) in socks.iter_mut() {
            if started.elapsed() > Duration::from_millis(100) {
                lost += 1;
                *started = Instant::now();
                s.send(&msg)?;
            }
        }
    }
    println!(
        "connections={} size={} msgs={} total_msgs={} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={} lost={}",
        args.connections,
        args.size,
        count,
        total,
        count as f64 / args.duration.as_secs_f64(),
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.value_at_quantile(0.999) as f64 / 1e3,
        0,
        lost
    );
    Ok(())
}
