//! End-to-end echo tests against an in-process server on loopback.

mod util;

use rand::{Rng, SeedableRng, rngs::StdRng};
use ringecho::{Backend, Listen};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;
use util::*;

/// 64 connections, each streaming messages of random length (1 B to 4 MiB, log-uniform,
/// seeded) with writes and reads on separate threads; every echoed byte is checked.
fn integrity_under_pipelining(backend: Backend) {
    let Some(h) = start(backend, |_| {}) else { return };
    let addr = h.tcp_addr().unwrap();
    let clients: Vec<_> = (0..64u64)
        .map(|id| {
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(id);
                let mut data = Vec::new();
                while data.len() < 3 << 20 {
                    let len = (2f64.powf(rng.random_range(0.0..22.0)) as usize).clamp(1, 4 << 20);
                    let start = data.len();
                    data.resize(start + len, 0);
                    rng.fill(&mut data[start..]);
                }
                let back = echo_full_duplex(connect(addr), data.clone()).expect("echo");
                assert_eq!(back.len(), data.len(), "client {id}: length");
                assert!(back == data, "client {id}: bytes differ");
                data.len() as u64
            })
        })
        .collect();
    let sent: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_settled(&h);
    let t = h.stats().total;
    assert_eq!(t.bytes_in, sent);
    assert_eq!(t.bytes_out, sent);
    assert_eq!(t.accepted, 64);
    assert_eq!(t.closed, 64);
}

/// The client half-closes: every byte comes back, then EOF.
fn half_close_echoes_everything_then_eof(backend: Backend) {
    let Some(h) = start(backend, |_| {}) else { return };
    let mut s = connect(h.tcp_addr().unwrap());
    let data = payload(7, 100_000);
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert!(back == data, "got {} of {} bytes, or different bytes", back.len(), data.len());
    assert_settled(&h);
}

/// A client that resets mid-stream leaves 10 others, echoing at the same time, untouched;
/// its buffers all come back.
fn reset_does_not_disturb_others(backend: Backend) {
    let Some(h) = start(backend, |_| {}) else { return };
    let addr = h.tcp_addr().unwrap();
    let others: Vec<_> = (0..10u64)
        .map(|id| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..200u64 {
                    let data = payload(id * 1000 + round, 1 + (round as usize * 97) % 8000);
                    assert_eq!(echo_once(&mut s, &data).unwrap(), data);
                }
            })
        })
        .collect();
    for round in 0..20u64 {
        let s = connect(addr);
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        (&s).write_all(&payload(round, 1 << 20)).unwrap();
        drop(s); // linger 0: RST with data in flight both ways
    }
    for o in others {
        o.join().unwrap();
    }
    assert_settled(&h);
    // Counters are published by the workers as they go: wait for them.
    assert!(eventually(Duration::from_secs(5), || h.stats().total.closed == 30), "{:?}", h.stats().total);
}

/// 1,000 connections open at once, each completes an echo.
fn thousand_concurrent_connections(backend: Backend) {
    let Some(h) = start(backend, |_| {}) else { return };
    let addr = h.tcp_addr().unwrap();
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&(i as u32).to_le_bytes()).unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(u32::from_le_bytes(back), i as u32);
    }
    assert!(eventually(Duration::from_secs(5), || h.stats().total.open == 1000), "{:?}", h.stats().total);
    drop(conns);
    assert_settled(&h);
}

/// A client that writes 256 MiB and never reads: the server's queue for it stays within
/// --max-conn-buffer, and other clients keep getting echoes meanwhile.
fn never_reading_client_costs_bounded_memory(backend: Backend) {
    const MAX: u32 = 256 * 1024;
    let Some(h) = start(backend, |c| c.max_conn_buffer = MAX) else { return };
    let addr = h.tcp_addr().unwrap();
    let hostile = connect(addr);
    hostile.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let writer = {
        let mut hostile = hostile.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = payload(1, 1 << 20);
            let mut written = 0u64;
            while written < 256 << 20 {
                match hostile.write(&chunk) {
                    Ok(n) => written += n as u64,
                    // The server stopped reading and the socket buffers are full.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("hostile write: {e}"),
                }
            }
            written
        })
    };
    if matches!(backend, Backend::Threads | Backend::TokioUring) {
        // These read one buffer and block writing it back: a connection holds at most
        // one buffer and has no queue to pause.
        eprintln!("{} backend: one buffer per connection, no pause to observe", backend.name());
    } else {
        assert!(
            eventually(Duration::from_secs(10), || h.stats().total.paused == 1),
            "never paused: {:?}",
            h.stats().total
        );
    }
    for id in 0..5u64 {
        let data = payload(100 + id, 1 << 20);
        assert!(echo_full_duplex(connect(addr), data.clone()).unwrap() == data);
    }
    let written = writer.join().unwrap();
    assert!(written < 256 << 20, "the server kept reading: {written} bytes accepted");
    let t = h.stats().total;
    if backend != Backend::Uring || h.features().recv_total_limit {
        assert!(
            t.conn_queue_high_water <= u64::from(MAX),
            "queue high water {} > {MAX}",
            t.conn_queue_high_water
        );
    } else {
        eprintln!("note: kernel lacks multishot receive limits (6.17); the bound is approximate");
        assert!(t.conn_queue_high_water <= u64::from(MAX) + 64 * u64::from(h.config().buffer_size));
    }
    assert!(t.queued_bytes <= u64::from(MAX));
    assert!(t.pauses >= 1 || matches!(backend, Backend::Threads | Backend::TokioUring));
    drop(hostile);
    assert_settled(&h);
}

/// IPv6 loopback and a Unix stream socket, from the same server.
fn ipv6_and_unix_stream(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Tcp("[::1]:0".parse().unwrap()).into(), Listen::Unix(path.clone()).into()];
    }) else {
        return;
    };
    let v6 = h.tcp_addr().unwrap();
    assert!(v6.is_ipv6());
    let data = payload(3, 300_000);
    assert!(echo_full_duplex(connect(v6), data.clone()).unwrap() == data);

    let mut u = std::os::unix::net::UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let small = payload(4, 10_000);
    assert_eq!(echo_once(&mut u, &small).unwrap(), small);
    drop(u);
    assert_settled(&h);
    drop(h);
    assert!(!path.exists(), "socket file removed on shutdown");
}

/// Idle connections are closed after --idle-timeout; busy ones are not.
fn idle_timeout_closes_idle_connections(backend: Backend) {
    let Some(h) = start(backend, |c| c.idle_timeout = Some(Duration::from_millis(300))) else { return };
    let mut idle = connect(h.tcp_addr().unwrap());
    let mut buf = [0u8; 1];
    // The server closes it: read sees EOF well before the client's own timeout.
    let t0 = std::time::Instant::now();
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(eventually(Duration::from_secs(5), || h.stats().total.idle_closed == 1), "{:?}", h.stats().total);
}

/// The SQPOLL ring (a kernel thread submits) echoes like the default one.
#[test]
fn sqpoll_ring_echoes() {
    let Some(h) = start(Backend::Uring, |c| {
        c.sqpoll = true;
        c.workers = Some(1);
    }) else {
        return;
    };
    let data = payload(11, 2 << 20);
    assert!(echo_full_duplex(connect(h.tcp_addr().unwrap()), data.clone()).unwrap() == data);
    assert_settled(&h);
}

/// SEND_ZC above a threshold echoes the same bytes, and its buffers return only after
/// their notifications (all are back once idle).
#[test]
fn zero_copy_send_echoes_correctly() {
    let Some(h) = start(Backend::Uring, |c| c.zc_threshold = Some(4096)) else { return };
    if !h.features().send_zc {
        testkit::unavailable("SEND_ZC (Linux 6.0)", "the kernel does not support it");
        return;
    }
    let data = payload(9, 8 << 20);
    assert!(echo_full_duplex(connect(h.tcp_addr().unwrap()), data.clone()).unwrap() == data);
    assert_settled(&h);
    let t = h.stats().total;
    assert!(t.zc_sends > 0);
    // Loopback has no device to read the pages from: the kernel reports it copied.
    eprintln!("SEND_ZC: {} sends, {} notifications reported a copy", t.zc_sends, t.zc_copied);
    assert!(t.zc_copied > 0 && t.zc_copied <= t.zc_sends, "{t:?}");
}

for_each_backend!(
    integrity_under_pipelining,
    half_close_echoes_everything_then_eof,
    reset_does_not_disturb_others,
    thousand_concurrent_connections,
    never_reading_client_costs_bounded_memory,
    ipv6_and_unix_stream,
    idle_timeout_closes_idle_connections
);
