//! Hostile clients and floods, against every backend: nothing is lost, nothing grows
//! without bound, and well-behaved clients keep being served.

mod util;

use ringecho::Backend;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// 100 connections write without ever reading; a well-behaved client is served with a
/// p99 under 50 ms meanwhile, and the server's queues stay within their bound.
fn hundred_never_reading_clients(backend: Backend) {
    const MAX: u32 = 256 * 1024;
    let Some(h) = start(backend, |c| c.max_conn_buffer = MAX) else { return };
    let addr = h.tcp_addr().unwrap();
    let rss_before = rss_kib();
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
    let grown = rss_kib().saturating_sub(rss_before);
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

for_each_backend!(hundred_never_reading_clients, reset_storm, flood_past_max_conns);
