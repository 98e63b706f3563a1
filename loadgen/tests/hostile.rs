//! ringload against targets it does not control: each misbehaviour gives clear counts and
//! the right exit code, within bounded time — never a hang or a panic.

mod util;

use ringload::{Stop, Target};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

fn timed(plan: ringload::Plan) -> (ringload::Report, Duration) {
    let t0 = Instant::now();
    let r = run(plan);
    (r, t0.elapsed())
}

fn accept_and_close(s: TcpStream, _: Instant) {
    drop(s);
}

fn never_answer(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

fn reset_at_once(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
}

fn hello_then_echo(mut s: TcpStream, started: Instant) {
    let _ = s.write_all(b"HELLO\r\n");
    echo_bytewise(s, started);
}

#[test]
fn server_that_closes_at_once() {
    if !uring_available() {
        return;
    }
    let (r, took) = timed(plan(Some(Target::Tcp(tcp_server(accept_and_close))), |p| {
        p.stop = Stop::Duration(Duration::from_secs(5));
    }));
    let c = r.counters;
    assert!(c.unexpected_eof + c.reset >= 1, "{c:?}");
    assert_eq!(c.completed, 0);
    assert_eq!(r.exit_code(), 2, "nothing answered");
    assert!(took < Duration::from_secs(3), "every connection died: the run stops early ({took:?})");
}

#[test]
fn server_that_never_answers() {
    if !uring_available() {
        return;
    }
    let (r, took) = timed(plan(Some(Target::Tcp(tcp_server(never_answer))), |p| {
        p.stop = Stop::Duration(Duration::from_millis(500));
        p.drain = Duration::from_millis(300);
    }));
    let c = r.counters;
    assert_eq!(c.completed, 0);
    assert_eq!(c.unanswered_at_end, c.sent, "{c:?}");
    assert_eq!(r.exit_code(), 2);
    assert!(took < Duration::from_secs(3), "run ends on time ({took:?})");
}

#[test]
fn server_that_resets() {
    if !uring_available() {
        return;
    }
    let (r, _) = timed(plan(Some(Target::Tcp(tcp_server(reset_at_once))), |p| {
        p.stop = Stop::Duration(Duration::from_secs(2));
    }));
    let c = r.counters;
    assert!(c.reset + c.unexpected_eof >= 2, "{c:?}");
    assert!(c.failed_messages >= 1, "{c:?}");
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn server_that_talks_out_of_turn() {
    if !uring_available() {
        return;
    }
    let mut r = run(plan(Some(Target::Tcp(tcp_server(hello_then_echo))), |p| {
        p.stop = Stop::Requests(200);
    }));
    r.check(None, None);
    let c = r.counters;
    // Seven stray bytes shift the stream: every echo after them differs from what was sent,
    // and seven bytes are left over that were never sent: not an echo, the run fails.
    assert!(c.mismatched_messages > 0 && c.mismatched_bytes > 0, "{c:?}");
    assert_eq!(c.unsolicited_bytes, 7 * 2, "seven per connection: {c:?}");
    assert!(r.warnings.iter().any(|w| matches!(w, ringload::warning::Warning::NotEcho { .. })));
    assert_eq!(r.exit_code(), 2, "not an echo");
}

#[test]
fn udp_target_answering_garbage() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|n, d, out| {
        let mut junk = d.to_vec();
        for (i, b) in junk.iter_mut().enumerate() {
            *b = (n as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        out.push(junk);
        if n % 3 == 0 {
            out.push(Vec::new()); // and some empty datagrams
        }
    });
    let (r, took) = timed(plan(Some(Target::Udp(addr)), |p| {
        p.stop = Stop::Duration(Duration::from_millis(800));
        p.udp_timeout = Duration::from_millis(100);
    }));
    let c = r.counters;
    assert!(c.garbage > 0 && c.lost > 0, "{c:?}");
    assert_eq!(c.completed, 0);
    assert_eq!(r.exit_code(), 2);
    assert!(took < Duration::from_secs(3), "{took:?}");
}
