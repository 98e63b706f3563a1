//! Byte throughput (`--mode send|receive|bulk`) and latency under load (`--background`):
//! the byte counts against the server's own counters, the source pattern checked (and a
//! corrupted one caught), misuse named and failed, both parts of a latency-under-load run.

mod util;

use ringload::plan::Mode;
use ringload::warning::Warning;
use ringload::{Report, Stop, Target};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use util::*;

/// The test's server, on the default backend.
fn ringecho(listen: ringecho::Listen, mode: ringecho::Mode) -> ringecho::ServerHandle {
    util::ringecho(listen, mode, |c| c.backend = ringecho::Config::default().backend)
}

/// A short bulk run in `mode` against `target` (None: the built-in server).
fn bulk(target: Option<Target>, mode: Mode) -> Report {
    run(plan(target, |p| {
        p.throughput.mode = mode;
        p.stop = Stop::Duration(Duration::from_millis(300));
        p.drain = Duration::from_secs(2);
    }))
}

/// The server's totals once they reach `want` (they are published once per worker turn),
/// or as they are after two seconds.
fn server_total(server: &ringecho::ServerHandle, pick: fn(&ringecho::Counters) -> u64, want: u64) -> u64 {
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        let now = pick(&server.stats().total);
        if now == want || Instant::now() >= give_up {
            return now;
        }
        std::thread::yield_now();
    }
}

fn has(r: &Report, f: impl Fn(&Warning) -> bool) -> bool {
    r.warnings.iter().any(f)
}

/// Send-only against discard@ and receive-only against source@, over TCP and Unix: every
/// byte ringload counts is a byte the server counts, exactly; the figures add up.
#[test]
fn one_way_byte_counts_equal_the_servers() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (mode, server_mode) in
        [(Mode::Send, ringecho::Mode::Discard), (Mode::Receive, ringecho::Mode::Source)]
    {
        let path = dir.path().join(format!("{}.sock", mode.name()));
        let tcp = ringecho(ringecho::Listen::Tcp(loopback()), server_mode);
        let unix = ringecho(ringecho::Listen::Unix(path.clone()), server_mode);
        for (server, target) in [(&tcp, Target::Tcp(tcp.tcp_addr().unwrap())), (&unix, Target::Unix(path))] {
            let r = bulk(Some(target.clone()), mode);
            let c = r.counters;
            assert_eq!(r.exit_code(), 0, "{target} {mode:?}: {}", ringload::text::run::report(&r));
            let b = r.bulk.as_ref().expect("bulk figures");
            let (ours, theirs) = match mode {
                Mode::Send => (c.bytes_sent, server_total(server, |s| s.bytes_in, c.bytes_sent)),
                _ => (c.bytes_received, server_total(server, |s| s.bytes_out, c.bytes_received)),
            };
            assert!(ours > 0, "{target} {mode:?}");
            assert_eq!(ours, theirs, "{target} {mode:?}: ringload and the server disagree");
            let window = if mode == Mode::Send { b.bytes_sent } else { b.bytes_received };
            assert!(window > 0 && window <= ours, "{target} {mode:?}: window {window} of {ours}");
            let summed: u64 = b.intervals.iter().map(|i| i.bytes_sent + i.bytes_received).sum();
            assert_eq!(summed, b.moved(), "the intervals are the window");
            assert!((b.gbit_per_s - b.bytes_per_s * 8.0 / 1e9).abs() < 1e-9);
            assert!(b.cpu_s > 0.0 && b.cpu_ns_per_byte > 0.0, "{b:?}");
            assert_eq!(c.mismatched_bytes, 0, "{target}: verified");
            assert!(
                ringload::text::run::report(&r).contains("Gbit/s"),
                "{}",
                ringload::text::run::report(&r)
            );
        }
    }
}

/// The built-in server follows the mode (discard for send, source for receive, echo for
/// bulk), and its final totals equal ringload's.
#[test]
fn the_builtin_server_serves_each_mode() {
    if !uring_available() {
        return;
    }
    for mode in [Mode::Send, Mode::Receive, Mode::Bulk] {
        let r = bulk(None, mode);
        assert_eq!(r.exit_code(), 0, "{mode:?}: {}", ringload::text::run::report(&r));
        let s = r.builtin.as_ref().unwrap();
        let c = r.counters;
        assert_eq!((s.server_bytes_in, s.server_bytes_out), (c.bytes_sent, c.bytes_received), "{mode:?}");
        match mode {
            Mode::Send => assert!(c.bytes_sent > 0 && c.bytes_received == 0),
            Mode::Receive => assert!(c.bytes_received > 0 && c.bytes_sent == 0),
            _ => assert!(c.bytes_received == c.bytes_sent && c.bytes_sent > 0, "{c:?}"),
        }
        assert_eq!(c.mismatched_bytes, 0, "{mode:?}: verified");
        let doc = r.document();
        assert_eq!(doc.bulk.as_ref().map(|b| b.mode), Some(mode));
    }
}

/// `--zerocopy`: sends go as SEND_ZC where the kernel has it (the run refuses otherwise,
/// saying so), and the counts still equal the server's.
#[test]
fn zerocopy_sends_count_exactly_or_are_refused() {
    if !uring_available() {
        return;
    }
    let p = plan(None, |p| {
        p.throughput.mode = Mode::Send;
        p.throughput.zerocopy = true;
        p.stop = Stop::Duration(Duration::from_millis(300));
    });
    let has_zc = ringecho::ring::probe().unwrap().send_zc;
    match ringload::run(p, Arc::default(), ringload::Progress::Hide) {
        Ok(r) => {
            assert!(has_zc, "ran without SEND_ZC");
            assert_eq!(r.exit_code(), 0, "{}", ringload::text::run::report(&r));
            let b = r.bulk.as_ref().unwrap();
            assert!(
                b.zerocopy && ringload::text::run::report(&r).contains("(SEND_ZC)"),
                "{}",
                ringload::text::run::report(&r)
            );
            assert_eq!(r.builtin.as_ref().unwrap().server_bytes_in, r.counters.bytes_sent);
        }
        Err(e) => {
            assert!(!has_zc, "{e}");
            assert!(e.to_string().contains("no SEND_ZC"), "{e}");
        }
    }
}

/// A source that sends ringecho's pattern with one wrong byte (at offset 100,000), until
/// its peer ends the connection.
fn corrupt_source() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let done = Arc::new(AtomicBool::new(false));
                let mut reader = conn.try_clone().unwrap();
                let seen_eof = done.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                    seen_eof.store(true, Ordering::Relaxed);
                });
                let mut w = conn;
                let mut offset = 0u64;
                let mut chunk = vec![0u8; 16 * 1024];
                while !done.load(Ordering::Relaxed) {
                    for (i, b) in chunk.iter_mut().enumerate() {
                        let at = offset + i as u64;
                        *b = ringecho::source_byte(at) ^ u8::from(at == 100_000);
                    }
                    if w.write_all(&chunk).is_err() {
                        return;
                    }
                    offset += chunk.len() as u64;
                }
                let _ = w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

/// A stream with one wrong byte fails --verify (exit 1), naming one mismatched byte.
#[test]
fn a_corrupted_source_stream_is_caught() {
    if !uring_available() {
        return;
    }
    let mut r = bulk(Some(Target::Tcp(corrupt_source())), Mode::Receive);
    r.check(None, None);
    assert!(r.counters.bytes_received > 100_000, "{:?}", r.counters);
    // One wrong byte per connection.
    assert_eq!(
        r.counters.mismatched_bytes,
        u64::from(r.plan.connections),
        "{}",
        ringload::text::run::report(&r)
    );
    assert_eq!(r.exit_code(), 1, "{}", ringload::text::run::report(&r));
    assert!(
        ringload::text::run::report(&r).contains("FAILED: --verify"),
        "{}",
        ringload::text::run::report(&r)
    );

    // Both ways: an echo that flips one byte in every 1,000 is caught too.
    let mut r = bulk(Some(Target::Tcp(tcp_server(echo_corrupt))), Mode::Bulk);
    r.check(None, None);
    let c = r.counters;
    assert!(c.bytes_received > 10_000, "{c:?}");
    // Byte 999 of every 1,000 of each connection: ⌊n/1000⌋ per connection.
    let most = c.bytes_received / 1000;
    assert!((most - u64::from(r.plan.connections)..=most).contains(&c.mismatched_bytes), "{c:?}");
    assert_eq!(r.exit_code(), 1);
}

/// Send-only against an echo (it answers) and receive-only against discard (it sends
/// nothing): no figure, the cause said, exit 2.
#[test]
fn discard_and_source_misuse_fail() {
    if !uring_available() {
        return;
    }
    let echo = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Echo);
    let r = bulk(Some(Target::Tcp(echo.tcp_addr().unwrap())), Mode::Send);
    assert!(has(&r, |w| matches!(w, Warning::AnsweredSendOnly { bytes_received } if *bytes_received > 0)));
    assert_eq!(r.exit_code(), 2);
    assert!(
        ringload::text::run::report(&r).contains("not measured")
            && ringload::text::run::report(&r).contains("not a discard server"),
        "{}",
        ringload::text::run::report(&r)
    );

    let discard = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Discard);
    let r = bulk(Some(Target::Tcp(discard.tcp_addr().unwrap())), Mode::Receive);
    assert!(has(&r, |w| *w == Warning::NothingReceived), "{:?}", r.warnings);
    assert_eq!(r.exit_code(), 2);
    assert!(
        ringload::text::run::report(&r).contains("nothing received: is this a source@ listener?"),
        "{}",
        ringload::text::run::report(&r)
    );

    let r = bulk(Some(Target::Tcp(discard.tcp_addr().unwrap())), Mode::Bulk);
    assert!(has(&r, |w| matches!(w, Warning::NoAnswer { .. })), "{:?}", r.warnings);
    assert_eq!(r.exit_code(), 2);
}

/// Latency under load: the measured request/response flow's percentiles and the
/// background flows' throughput, both in the report and the document; a background flow
/// that cannot connect fails the run.
#[test]
fn latency_under_load_reports_both_parts() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.throughput.background = 2;
        p.stop = Stop::Duration(Duration::from_millis(500));
    }));
    assert_eq!(r.exit_code(), 0, "{}", ringload::text::run::report(&r));
    assert!(r.counters.completed > 0 && r.latency.len() == r.counters.completed);
    let bg = r.background.as_ref().expect("background figures");
    assert!(bg.bytes_sent > 0 && bg.bytes_received > 0, "{bg:?}");
    assert!(r.counters.bytes_sent < bg.bytes_sent, "background bytes are not the measured flow's");
    let text = ringload::text::run::report(&r);
    assert!(text.contains("latency") && text.contains("background  bulk both ways, 2 connections"), "{text}");
    let doc = r.document();
    assert!(doc.background.is_some() && doc.latency.corrected.count > 0);

    let nothing = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = nothing.local_addr().unwrap();
    drop(nothing);
    let r = run(plan(None, |p| {
        p.throughput.background = 1;
        p.throughput.background_target = Some(Target::Tcp(gone));
        p.stop = Stop::Duration(Duration::from_millis(200));
    }));
    assert!(has(
        &r,
        |w| matches!(w, Warning::BackgroundFailed { problem } if problem.contains("could not connect"))
    ));
    assert_eq!(r.exit_code(), 2);
}
