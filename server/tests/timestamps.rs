//! `--timestamps` (uring): the server times its own parts from the kernel's software
//! stamps, and the data path it changes (TCP received with recvmsg, its bytes after a
//! header; sampled sends as sendmsg with a stamp request) still echoes every byte exactly.
//! Loopback only.

mod util;

use ringecho::{Backend, Config, Listen};
use util::dgram::{udp_addrs, udp_client};
use util::*;

/// Round trips enough for the worker to sample a few sends (one every 500 µs at most).
const ROUND_TRIPS: usize = 400;

fn timed(listen: Listen) -> Option<TestServer> {
    start(Backend::Uring, |c| {
        c.listen = vec![listen.into()];
        c.timestamps = true;
    })
}

/// Every receive of data is timed (or counted as missing a stamp: the first packets after
/// the system turns stamping on may carry none), a few sends are, and every figure is a
/// plausible time on this machine (below a second).
fn assert_parts(h: &ringecho::ServerHandle, receives: u64, sends_stamped: bool) {
    let s = h.stats();
    let t = s.timing.expect("--timestamps gives timing in the snapshot");
    let missing = s.total.stamps_missing;
    assert!(t.wake.count + missing >= receives, "{t:?}, {missing} missing, {receives} receives");
    assert!(t.wake.count >= receives / 2, "most receives carry a stamp: {t:?}, {missing} missing");
    if !sends_stamped {
        assert_eq!(t.send.count, 0, "{t:?}");
        return;
    }
    assert!(t.send.count >= 2, "a few sends sampled over {ROUND_TRIPS} round trips: {t:?}");
    for p in [t.wake, t.send] {
        let (p50, mean) = (p.p50_us.unwrap(), p.mean_us.unwrap());
        assert!(p50 > 0.0 && p50 < 1e6 && mean < 1e6, "{t:?}");
    }
    // The per-worker histograms sum to the summary, and show in --metrics' source.
    let counted: u64 = s.parts.iter().map(|p| p.wake.count()).sum();
    assert_eq!(counted, t.wake.count);
}

#[test]
fn tcp_receives_and_sampled_sends_are_timed_and_echo_exactly() {
    let Some(h) = timed(Listen::Tcp("127.0.0.1:0".parse().unwrap())) else { return };
    let addr = h.tcp_addr().unwrap();
    let mut s = connect(addr);
    for i in 0..ROUND_TRIPS {
        let data = payload(i as u64, 64);
        assert_eq!(echo_once(&mut s, &data).unwrap(), data, "round trip {i}");
    }
    drop(s);
    // A stream larger than the buffers, pipelined: the bytes after each recvmsg header
    // come back in order and whole.
    let big = payload(7, 3 << 20);
    assert_eq!(echo_full_duplex(connect(addr), big.clone()).unwrap(), big);
    assert_settled(&h);
    assert_parts(&h, ROUND_TRIPS as u64, true);
}

#[test]
fn udp_receives_and_sampled_sends_are_timed_and_echo_exactly() {
    let Some(h) = timed(Listen::Udp("127.0.0.1:0".parse().unwrap())) else { return };
    let c = udp_client(udp_addrs(&h)[0]);
    let mut buf = [0u8; 2048];
    for i in 0..ROUND_TRIPS {
        let data = payload(i as u64, 1 + i % 1400);
        c.send(&data).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &data[..], "datagram {i}");
    }
    let t = util::dgram::settled_dgrams(&h, ROUND_TRIPS as u64);
    assert_eq!(t.dgrams_echoed, ROUND_TRIPS as u64);
    // A datagram's send stamp needs its own key (SCM_TS_OPT_ID, Linux 6.13): asked of
    // the kernel the way the server asks.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let keyed =
        ringecho::tstamp::enable(std::os::fd::AsFd::as_fd(&probe), ringecho::tstamp::SocketKind::Udp).tx;
    assert_parts(&h, ROUND_TRIPS as u64, keyed);
}

#[test]
fn without_timestamps_nothing_is_timed() {
    let Some(h) = start(Backend::Uring, |_| {}) else { return };
    let mut s = connect(h.tcp_addr().unwrap());
    assert_eq!(echo_once(&mut s, b"hello").unwrap(), b"hello");
    let snap = h.stats();
    assert!(snap.timing.is_none() && snap.parts.is_empty(), "{:?}", snap.timing);
    assert!(!snap.json_line().contains("timing"));
}

#[test]
fn only_the_uring_backend_times_its_parts() {
    for backend in [Backend::Epoll, Backend::TokioUring, Backend::Threads] {
        let e = Config { backend, timestamps: true, ..Config::default() }.validate().unwrap_err().to_string();
        assert!(e.starts_with("--timestamps: ") && e.contains("--backend uring"), "{e}");
    }
    Config { timestamps: true, ..Config::default() }.validate().unwrap();
}

/// The parts reach `--metrics` as histograms, per worker, with the fixed bounds.
#[test]
fn metrics_carry_the_parts_as_histograms() {
    let Some(h) = start(Backend::Uring, |c| {
        c.timestamps = true;
        c.metrics = Some("127.0.0.1:0".parse().unwrap());
    }) else {
        return;
    };
    let mut s = connect(h.tcp_addr().unwrap());
    for i in 0..ROUND_TRIPS {
        let data = payload(i as u64, 64);
        assert_eq!(echo_once(&mut s, &data).unwrap(), data);
    }
    let text = ringecho::metrics::render(&h.stats(), &ringecho::metrics::ProcessStats::default(), "uring");
    for name in ["ringecho_server_wake_seconds", "ringecho_server_send_seconds"] {
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        let worker0 = |l: &&str| l.starts_with(&format!("{name}_bucket{{")) && l.contains("worker=\"0\"");
        assert_eq!(text.lines().filter(worker0).count(), ringecho::parthist::BUCKETS, "{name}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\",worker=\"0\"}}")), "{text}");
    }
}

/// A client that stops reading fills the server's send path: a sampled send then finds no
/// room and goes again plainly (it never waits, holding the worker's one sample), so the
/// connection neither fails nor loses a byte, and sampling goes on once the client reads.
#[test]
fn a_peer_that_stops_reading_costs_no_byte_and_no_sample() {
    let Some(h) = timed(Listen::Tcp("127.0.0.1:0".parse().unwrap())) else { return };
    let addr = h.tcp_addr().unwrap();
    let s = connect(addr);
    let data = payload(11, 8 << 20);
    let mut writer = s.try_clone().unwrap();
    let sent = data.clone();
    let w = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    // Nothing is read until the server holds data it cannot send.
    assert!(
        testkit::eventually(std::time::Duration::from_secs(10), || h.stats().total.paused > 0),
        "the server never paused: {:?}",
        h.stats().total
    );
    let mut back = Vec::new();
    let mut reader = s;
    std::io::Read::read_to_end(&mut reader, &mut back).unwrap();
    w.join().unwrap();
    assert!(back == data, "{} of {} bytes back, the same: {}", back.len(), data.len(), back == data);
    let t = h.stats().total;
    assert_eq!((t.err_other, t.err_reset, t.err_pipe), (0, 0, 0), "{t:?}");
    // Sampling goes on: a few more round trips are sampled.
    let before = h.stats().timing.unwrap().send.count;
    let mut c = connect(addr);
    let mut i = 0;
    while h.stats().timing.unwrap().send.count == before && i < 20_000 {
        assert_eq!(echo_once(&mut c, b"again").unwrap(), b"again");
        i += 1;
    }
    assert!(h.stats().timing.unwrap().send.count > before, "no send sampled after the stall");
}
