//! `--spin` (busy polling) and the server's own CPU time: a spinning server echoes, sees
//! the shutdown signal and stops by itself; the totals and `--metrics` carry each
//! worker's CPU time.

mod util;

use ringecho::Backend;
use std::time::{Duration, Instant};
use util::*;

/// A spinning server echoes, stops within its bounded drain on SIGTERM (the wake-up is
/// still seen while it polls), and its totals say how much CPU its worker burnt.
fn spin_echoes_and_stops(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on(backend, &["--tcp", "127.0.0.1:0", "--spin", "--drain-timeout", "1s"], 1);
    let mut s = connect(server.tcp(0));
    for i in 0..100u8 {
        assert_eq!(echo_once(&mut s, &[i; 32]).unwrap(), vec![i; 32]);
    }
    // The connection stays open: the drain timeout, not the client, ends the drain.
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let (code, out) = server.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
    assert!(signalled.elapsed() < Duration::from_secs(5), "spin must not hide the stop");
    assert!(out.contains("totals:") && out.contains("cpu process="), "{out}");
    assert!(out.contains(" w0=") && out.contains("(user "), "{out}");
}

/// The threads and tokio-uring backends refuse `--spin` with a sentence, exit 2.
#[test]
fn spin_refused_where_it_cannot_poll() {
    for backend in ["threads", "tokio-uring"] {
        let (code, err) = run_binary(&["--backend", backend, "--tcp", "127.0.0.1:0", "--spin"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("--spin") && err.contains("cannot busy-poll"), "{err}");
    }
}

/// `--metrics` shows each worker's CPU time and the kernel's counters.
#[test]
fn metrics_carry_worker_cpu_and_kernel_counters() {
    if !available(Backend::Epoll) {
        return;
    }
    let server = Binary::start_on(Backend::Epoll, &["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"], 2);
    let metrics: std::net::SocketAddr = server.addrs[1].strip_prefix("metrics ").unwrap().parse().unwrap();
    let mut c = connect(metrics);
    use std::io::{Read, Write};
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    for series in [
        "ringecho_worker_cpu_seconds_total{worker=\"0\",mode=\"user\"}",
        "ringecho_worker_cpu_seconds_total{worker=\"0\",mode=\"system\"}",
        "ringecho_worker_cpu_wait_seconds_total{worker=\"0\"}",
        "ringecho_kernel_tcp_retrans_segs_total ",
        "ringecho_kernel_listen_overflows_total ",
        "ringecho_kernel_udp_rcvbuf_errors_total ",
        "process_cpu_seconds_total ",
    ] {
        assert!(text.contains(series), "{series} missing: {text}");
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn spin_echoes_and_stops_uring() {
    spin_echoes_and_stops(Backend::Uring)
}

#[test]
fn spin_echoes_and_stops_epoll() {
    spin_echoes_and_stops(Backend::Epoll)
}
