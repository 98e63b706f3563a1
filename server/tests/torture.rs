//! Hostile clients and floods, against every backend: nothing is lost, nothing grows
//! without bound, and well-behaved clients keep being served.

mod util;

use ringecho::Backend;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

/// 100 connections write without ever reading; a well-behaved client is served with a
/// p99 under 50 ms meanwhile, and the server's queues stay within their bound.
fn hundred_never_reading_clients(backend: Backend) {
    const MAX: u32 = 256 * 1024;
    let Some(h) = start(backend, |c| c.max_conn_buffer = MAX) else { return };
    let addr = h.tcp_addr().unwrap();
    let rss_before = rss_kib(std::process::id());
    let hostile: Vec<TcpStream> = (0..100).map(|_| connect(addr)).collect();
    let writers: Vec<_> = hostile
        .iter()
        .map(|s| {
            let mut s = s.try_clone().unwrap();
            s.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
            std::thread::spawn(move || {
                let chunk = vec![0x42u8; 256 * 1024];
                let mut written = 0u64;
                while written < 64 << 20 {
                    match s.write(&chunk) {
                        Ok(n) => written += n as u64,
                        Err(_) => break, // blocked: the server stopped reading
                    }
                }
                written
            })
        })
        .collect();
    // Meanwhile, a well-behaved client, ping-pong.
    let mut good = connect(addr);
    let mut samples = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    let msg = payload(9, 64);
    while Instant::now() < until {
        let t0 = Instant::now();
        assert_eq!(echo_once(&mut good, &msg).unwrap(), msg);
        samples.push(t0.elapsed());
    }
    for w in writers {
        assert!(w.join().unwrap() < 64 << 20, "a never-reading client was read forever");
    }
    samples.sort();
    let p99 = samples[samples.len() * 99 / 100];
    eprintln!("{}: good client p99 {p99:?} over {} echoes", backend.name(), samples.len());
    assert!(p99 < Duration::from_millis(50), "well-behaved client p99 {p99:?}");
    let t = h.stats().total;
    if backend != Backend::Uring || h.features().recv_total_limit {
        assert!(t.conn_queue_high_water <= u64::from(MAX), "{t:?}");
    }
    // The test process holds the server: its RSS grew by at most the queues' bound plus
    // the buffers (preallocated pools are touched as they fill).
    let grown = rss_kib(std::process::id()).saturating_sub(rss_before);
    let bound_kib = 101 * u64::from(MAX) / 1024 + 2 * 1024 * 16 + 64 * 1024;
    eprintln!("{}: RSS grew {grown} KiB (bound {bound_kib} KiB)", backend.name());
    assert!(grown < bound_kib, "RSS grew {grown} KiB");
    drop(hostile);
    drop(good);
    assert_settled(&h);
}

/// 2,000 connections opened and reset mid-echo: every buffer comes back, every
/// connection is closed.
fn reset_storm(backend: Backend) {
    let Some(h) = start(backend, |_| {}) else { return };
    let addr = h.tcp_addr().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    let s = connect(addr);
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                    (&s).write_all(&payload(t * 1000 + i, 8192)).unwrap();
                    if i % 2 == 0 {
                        let mut b = [0u8; 16];
                        let _ = (&s).read(&mut b); // mid-echo
                    }
                    drop(s); // RST
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_settled(&h);
    assert!(eventually(Duration::from_secs(10), || h.stats().total.closed == 2000), "{:?}", h.stats().total);
}

/// A burst of connections past --max-conns: the excess is closed at once and counted,
/// existing clients keep being served, and the server goes back to idle.
fn flood_past_max_conns(backend: Backend) {
    let Some(h) = start(backend, |c| c.max_conns = 50) else { return };
    let addr = h.tcp_addr().unwrap();
    let mut keep: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for s in keep.iter_mut() {
        assert_eq!(echo_once(s, b"hi").unwrap(), b"hi");
    }
    let flood: Vec<TcpStream> = (0..2000).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    assert!(
        eventually(Duration::from_secs(10), || {
            let t = h.stats().total;
            // Refused, or (table full for a moment) closed by the kernel and counted.
            t.refused + t.err_accept >= flood.len() as u64 - 40
        }),
        "{:?}",
        h.stats().total
    );
    for s in keep.iter_mut() {
        assert_eq!(echo_once(s, b"still here").unwrap(), b"still here");
    }
    drop(flood);
    drop(keep);
    assert_settled(&h);
}

/// A bound Unix datagram peer that sends and never reads fills its own receive queue;
/// replies to it are dropped and counted (never waited for), and a well-behaved client
/// keeps getting every answer meanwhile. (The peer sends with `sendto`: a peer *connected*
/// to the server escapes the kernel's queue limit, and its unread replies can fill the
/// server socket's send buffer for everyone; see the README's threat model.)
fn never_reading_unix_datagram_peer(backend: Backend) {
    if !backend.has_unix_datagram() {
        return; // refused at start; `unix_datagram_bound_and_unbound_senders` checks that
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.dgram");
    let Some(h) = start(backend, |c| c.listen = vec![ringecho::Listen::UnixGram(path.clone()).into()]) else {
        return;
    };
    let hostile = std::os::unix::net::UnixDatagram::bind(dir.path().join("hostile.dgram")).unwrap();
    hostile.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let chunk = payload(3, 1024);
    let mut sent = 0;
    // Far more than its receive queue holds; it never reads one.
    for _ in 0..1000 {
        if hostile.send_to(&chunk, &path).is_ok() {
            sent += 1;
        }
    }
    assert!(
        eventually(Duration::from_secs(10), || h.stats().total.dgram_drop_send_error > 0),
        "replies to a full peer were not dropped: {:?}",
        h.stats().total
    );
    let good = std::os::unix::net::UnixDatagram::bind(dir.path().join("good.dgram")).unwrap();
    good.connect(&path).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    for i in 0..8u64 {
        let data = payload(i, 100);
        good.send(&data).unwrap();
        let mut back = [0u8; 200];
        let n = good.recv(&mut back).unwrap_or_else(|e| panic!("{}: reply {i} of 8: {e}", backend.name()));
        assert!(back[..n] == data[..]);
    }
    eprintln!("{}: {sent} hostile datagrams; 8 good replies in {:?}", backend.name(), t0.elapsed());
    drop(hostile);
    let t = h.stats().total;
    assert!(t.dgram_drop_send_error > 0, "{t:?}");
}

/// A client that sends and never reads stops moving once its queue (or the one buffer a
/// thread-per-connection backend holds) is full; `--idle-timeout` closes it.
fn idle_timeout_closes_a_client_that_never_reads(backend: Backend) {
    let Some(h) = start(backend, |c| c.idle_timeout = Some(Duration::from_millis(500))) else { return };
    let s = connect(h.tcp_addr().unwrap());
    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let chunk = payload(1, 256 * 1024);
    let mut w = &s;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) && w.write(&chunk).is_ok() {}
    assert!(
        eventually(Duration::from_secs(5), || h.stats().total.idle_closed == 1),
        "{}: not closed for idleness: {:?}",
        backend.name(),
        h.stats().total
    );
    drop(s);
    assert_settled(&h);
}

for_each_backend!(
    never_reading_unix_datagram_peer,
    idle_timeout_closes_a_client_that_never_reads,
    hundred_never_reading_clients,
    reset_storm,
    flood_past_max_conns,
    slowloris,
    descriptor_exhaustion,
    starved_pool_recovers,
    pool_pressure_evicts_stuck_connections
);

/// A buffer pool far smaller than the load (2 buffers, an 8-entry ring, 64 clients):
/// receives that find it empty are re-armed as buffers come back, and every client is
/// served in full.
fn starved_pool_recovers(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.workers = Some(1);
        c.buffers = 2;
        c.buffer_size = 1024;
        c.max_conn_buffer = 4096;
        c.ring_entries = 8;
    }) else {
        return;
    };
    let addr = h.tcp_addr().unwrap();
    let clients: Vec<_> = (0..64u64)
        .map(|id| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..5 {
                    let data = payload(id * 10 + round, 4000);
                    assert_eq!(echo_once(&mut s, &data).unwrap(), data, "client {id} round {round}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_settled(&h);
}

/// Pool pressure: a few never-reading clients together hold every buffer of a small pool;
/// a well-behaved client that then starves is served once the stuck connection holding
/// most is evicted (after a second of no progress).
fn pool_pressure_evicts_stuck_connections(backend: Backend) {
    if matches!(backend, Backend::Threads | Backend::TokioUring) {
        eprintln!("{}: buffers are per connection, there is no shared pool to exhaust", backend.name());
        return;
    }
    let Some(h) = start(backend, |c| {
        c.workers = Some(1);
        c.buffers = 16;
        c.buffer_size = 4096;
        c.max_conn_buffer = 48 * 1024;
    }) else {
        return;
    };
    let addr = h.tcp_addr().unwrap();
    // Four connections that may hold 12 buffers each, against a pool of 16.
    let hostile: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    let writers: Vec<_> = hostile
        .iter()
        .map(|s| {
            let mut s = s.try_clone().unwrap();
            s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
            std::thread::spawn(move || {
                let chunk = vec![7u8; 64 * 1024];
                while s.write_all(&chunk).is_ok() {}
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap(); // each stops when the server stops reading it (or evicts it)
    }
    let t0 = Instant::now();
    let mut good = connect(addr);
    assert_eq!(echo_once(&mut good, b"served").unwrap(), b"served");
    eprintln!("{}: well-behaved client served after {:?}", backend.name(), t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t = h.stats().total;
    assert!(t.evicted >= 1, "the pool ran dry and nothing was evicted: {t:?}");
    drop(hostile);
    drop(good);
    assert_settled(&h);
}

/// 2,000 connections trickle one byte every 100 ms; a normal client's echoes stay fast.
fn slowloris(backend: Backend) {
    let Some(h) = start(backend, |c| c.idle_timeout = Some(Duration::from_secs(5))) else { return };
    let addr = h.tcp_addr().unwrap();
    let slow: Vec<TcpStream> = (0..2000).map(|_| connect(addr)).collect();
    for s in &slow {
        s.set_nonblocking(true).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 100 {
                let round = Instant::now();
                for mut s in &slow {
                    let _ = s.write(b"x");
                    let _ = s.read(&mut sink);
                }
                rounds += 1;
                if let Some(rest) = Duration::from_millis(100).checked_sub(round.elapsed()) {
                    std::thread::sleep(rest); // the trickle's pace, not synchronisation
                }
            }
            slow
        })
    };
    let mut good = connect(addr);
    let mut samples = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let t0 = Instant::now();
        assert_eq!(echo_once(&mut good, b"ping").unwrap(), b"ping");
        samples.push(t0.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let slow = trickler.join().unwrap();
    samples.sort();
    let p99 = samples[samples.len() * 99 / 100];
    eprintln!("{}: slowloris: good client p99 {p99:?} over {} echoes", backend.name(), samples.len());
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(h.stats().total.open >= 2000);
    drop(slow);
    drop(good);
    assert_settled(&h);
}

/// With a descriptor limit far below the load, accepting fails without spinning, open
/// connections keep being served, and queued connections are accepted once descriptors
/// free up.
fn descriptor_exhaustion(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on_with_nofile(backend, 48, &["--tcp", "127.0.0.1:0", "--workers", "1"], 1);
    let addr = server.tcp(0);
    let mut first = connect(addr);
    assert_eq!(echo_once(&mut first, b"one").unwrap(), b"one");
    // Far more connections than descriptors: the kernel queues them in the backlog.
    let mut crowd: Vec<TcpStream> = (0..150).map(|_| connect(addr)).collect();
    for s in crowd.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let _ = s.write_all(b"?");
    }
    // The server is not spinning on failing accepts while it is full.
    let cpu = || cpu_ticks(server.child.id());
    let (c0, t0) = (cpu(), Instant::now());
    std::thread::sleep(Duration::from_millis(1000)); // a measuring window, not synchronisation
    let ticks = cpu() - c0;
    let busy = ticks as f64 / 100.0 / t0.elapsed().as_secs_f64();
    assert!(busy < 0.3, "{}: {busy:.2} CPU while accepts fail", backend.name());
    assert_eq!(echo_once(&mut first, b"two").unwrap(), b"two", "open connections are still served");
    // Free descriptors: the rest are accepted and answered.
    let late = crowd.split_off(100);
    drop(crowd);
    for mut s in late {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"?");
    }
    server.signal(libc::SIGTERM);
    let (code, out) = server.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0));
    assert!(!out.contains("err_accept=0 "), "accept failures were counted: {out}");
}
