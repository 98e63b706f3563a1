//! Runs whose figures would look right but are not: targets that are not echo servers, a
//! server that dies mid-run, connections never made, datagrams dropped for their size,
//! a request-bound run against a target that stops answering. Each must fail (exit 2),
//! say why, and report only the window it measured.

mod util;

use ringload::warning::Warning;
use ringload::{Model, SizeSpec, Stop, Target};
use std::time::{Duration, Instant};
use util::*;

fn has(r: &ringload::Report, f: impl Fn(&Warning) -> bool) -> bool {
    r.warnings.iter().any(f)
}

/// The test's server: a stop closes every connection at once (the server "dies").
fn ringecho(listen: ringecho::Listen, mode: ringecho::Mode) -> ringecho::ServerHandle {
    util::ringecho(listen, mode, |c| c.drain_timeout = Duration::ZERO)
}

/// A `source@` listener (TCP and Unix): it sends without being asked. Not an echo: the
/// run fails and says so, whatever it "answered".
#[test]
fn a_source_target_is_not_an_echo() {
    if !uring_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.sock");
    let tcp = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Source);
    let _unix = ringecho(ringecho::Listen::Unix(path.clone()), ringecho::Mode::Source);
    for target in [Target::Tcp(tcp.tcp_addr().unwrap()), Target::Unix(path)] {
        let r = run(plan(Some(target.clone()), |p| {
            p.verify = false;
            p.stop = Stop::Duration(Duration::from_millis(500));
        }));
        assert!(has(&r, |w| matches!(w, Warning::NotEcho { .. })), "{target}: {:?}", r.warnings);
        assert_eq!(r.exit_code(), 2, "{target}");
        assert!(
            ringload::text::run::report(&r).contains("FAILED: the target sent"),
            "{}",
            ringload::text::run::report(&r)
        );
    }
}

/// A `discard@` listener takes everything and answers nothing: the run fails and names
/// discard as the likely cause.
#[test]
fn a_discard_target_answers_nothing() {
    if !uring_available() {
        return;
    }
    let server = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Discard);
    let r = run(plan(Some(Target::Tcp(server.tcp_addr().unwrap())), |p| {
        p.stop = Stop::Duration(Duration::from_millis(300));
        p.drain = Duration::from_millis(100);
    }));
    assert!(
        has(&r, |w| matches!(w, Warning::NoAnswer { bytes_sent } if *bytes_sent > 0)),
        "{:?}",
        r.warnings
    );
    assert!(ringload::text::run::report(&r).contains("discard"), "{}", ringload::text::run::report(&r));
    assert_eq!(r.exit_code(), 2);
}

/// A server that echoes everything twice passes --verify byte for byte, but sends twice
/// what it was sent: the run fails.
#[test]
fn an_echo_twice_server_fails_even_when_verified() {
    if !uring_available() {
        return;
    }
    fn echo_twice(mut s: std::net::TcpStream, _: Instant) {
        use std::io::{Read, Write};
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    }
    let mut r = run(plan(Some(Target::Tcp(tcp_server(echo_twice))), |p| p.stop = Stop::Requests(200)));
    r.check(None, None);
    assert!(r.counters.unsolicited_bytes > 0, "{:?}", r.counters);
    assert!(has(&r, |w| matches!(w, Warning::NotEcho { .. })));
    assert_eq!(r.exit_code(), 2);
}

/// A UDP server that answers each datagram ten times: not an echo.
#[test]
fn a_udp_server_answering_ten_times_fails() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| out.extend((0..10).map(|_| d.to_vec())));
    let r = run(plan(Some(Target::Udp(addr)), |p| p.stop = Stop::Requests(300)));
    assert!(r.counters.duplicates >= 2_000, "{:?}", r.counters);
    assert!(has(&r, |w| matches!(w, Warning::Duplicates { .. })));
    assert_eq!(r.exit_code(), 2);
}

/// The server dies a second into a four-second run: every connection is lost, the run
/// fails, and the figures cover the second it ran, not four.
#[test]
fn a_server_that_dies_mid_run_fails_the_run() {
    if !uring_available() {
        return;
    }
    let server = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Echo);
    let addr = server.tcp_addr().unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1)); // the moment of death, not synchronisation
        server.shutdown();
        server.join()
    });
    let t0 = Instant::now();
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.connections = 4;
        p.stop = Stop::Duration(Duration::from_secs(4));
    }));
    let took = t0.elapsed();
    killer.join().unwrap();
    let c = r.counters;
    assert_eq!(c.conns_lost, 4, "{c:?}");
    assert!(has(&r, |w| matches!(w, Warning::ConnectionsLost { conns_lost: 4, .. })), "{:?}", r.warnings);
    assert_eq!(r.exit_code(), 2);
    assert!(r.elapsed < Duration::from_millis(2500), "measured window {:?} beyond the death", r.elapsed);
    assert!(took < Duration::from_secs(3), "the run stops when every connection is gone ({took:?})");
}

/// Connections that cannot be made (a listener that never accepts, with a backlog of
/// one) fail the run, naming the cause with a hint.
#[test]
fn connections_never_made_fail_the_run() {
    if !uring_available() {
        return;
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&loopback().into()).unwrap();
    sock.listen(1).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.connections = 8;
        p.connect_timeout = Duration::from_millis(200);
        p.stop = Stop::Duration(Duration::from_millis(200));
        p.drain = Duration::from_millis(100);
    }));
    let failed = r.warnings.iter().find_map(|w| match w {
        Warning::ConnectsFailed { connects_failed, cause, .. } => Some((*connects_failed, cause.clone())),
        _ => None,
    });
    let (n, cause) = failed.unwrap_or_else(|| panic!("no connects_failed: {:?}", r.warnings));
    assert!(n >= 4, "{n}");
    assert!(cause.contains("connect-timeout") || cause.contains("backlog"), "{cause}");
    assert_eq!(r.exit_code(), 2);
    drop(sock);
}

/// A UDP echo that drops datagrams over 1,000 bytes: with sizes 64..2000 the report says
/// the loss depends on size; with 2,000 bytes only, that nothing was answered.
#[test]
fn datagrams_dropped_for_their_size_are_named() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| {
        if d.len() <= 1000 {
            out.push(d.to_vec());
        }
    });
    // A timeout long enough that no answered datagram is taken for lost on a busy machine.
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.size = SizeSpec { min: 64, max: 2000 };
        p.udp_timeout = Duration::from_millis(500);
        p.stop = Stop::Duration(Duration::from_millis(2500));
    }));
    let limit = r.warnings.iter().find_map(|w| match w {
        Warning::SizeLimit { answered_max, lost_min } => Some((*answered_max, *lost_min)),
        _ => None,
    });
    let (answered_max, lost_min) = limit.unwrap_or_else(|| panic!("{:?}", r.warnings));
    assert!(answered_max <= 1000 && lost_min > 1000, "{answered_max} {lost_min}");
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.size = SizeSpec { min: 2000, max: 2000 };
        p.udp_timeout = Duration::from_millis(500);
        p.stop = Stop::Duration(Duration::from_millis(1500));
    }));
    assert!(has(&r, |w| matches!(w, Warning::NoDatagramAnswered { .. })), "{:?}", r.warnings);
    assert!(ringload::text::run::report(&r).contains("size limit"), "{}", ringload::text::run::report(&r));
    assert_eq!(r.exit_code(), 2);
}

/// A request-bound run against a server that never answers still ends, at
/// --max-duration, with the unanswered counted.
#[test]
fn a_request_bound_run_ends_at_the_time_limit() {
    if !uring_available() {
        return;
    }
    fn never_answer(mut s: std::net::TcpStream, _: Instant) {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    }
    let t0 = Instant::now();
    let r = run(plan(Some(Target::Tcp(tcp_server(never_answer))), |p| {
        p.stop = Stop::Requests(100);
        p.max_duration = Duration::from_secs(1);
        p.drain = Duration::from_millis(200);
    }));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(has(&r, |w| matches!(w, Warning::TimeLimit { .. })), "{:?}", r.warnings);
    assert!(r.counters.unanswered_at_end > 0);
    assert_eq!(r.exit_code(), 2);
}

/// Open loop: one message, one send, by default (as wrk2 sends requests); with
/// --coalesce, messages due together share sends.
#[test]
fn open_loop_sends_one_message_per_send() {
    if !uring_available() {
        return;
    }
    // One connection at 200k/s: several messages fall due between two wake-ups.
    let open = |coalesce| {
        run(plan(None, |p| {
            p.connections = 1;
            p.model = Model::Open { rate: 200_000.0 };
            p.coalesce = coalesce;
            p.stop = Stop::Duration(Duration::from_millis(700));
        }))
    };
    let r = open(false);
    let c = r.counters;
    let messages = c.completed + c.warmup_completed + c.failed();
    assert_eq!(c.sends, messages, "one send per message: {c:?}");
    assert!(
        ringload::text::run::report(&r).contains("1.00 messages per send"),
        "{}",
        ringload::text::run::report(&r)
    );
    let r = open(true);
    let c = r.counters;
    assert!(c.sends < c.completed + c.warmup_completed + c.failed(), "--coalesce joins due messages: {c:?}");
}

/// `tcp://localhost:PORT` reaches a server on either family the name resolves to (on
/// machines where `localhost` is IPv4 only, just that one): the name's addresses are
/// tried in turn, as `connect` users expect.
#[test]
fn localhost_reaches_either_family() {
    if !uring_available() {
        return;
    }
    use std::net::ToSocketAddrs;
    let families: Vec<bool> = ("localhost", 0).to_socket_addrs().unwrap().map(|a| a.is_ipv6()).collect();
    for v6 in [false, true].into_iter().filter(|f| families.contains(f)) {
        let listen = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let server = ringecho(ringecho::Listen::Tcp(listen.parse().unwrap()), ringecho::Mode::Echo);
        let port = server.tcp_addr().unwrap().port();
        let target = Target::parse(&format!("tcp://localhost:{port}")).unwrap();
        let r = run(plan(Some(target.clone()), |p| p.stop = Stop::Requests(100)));
        assert_eq!(r.counters.completed, 100, "{listen} via {target}: {:?}", r.warnings);
        assert_eq!(r.exit_code(), 0);
    }
}
