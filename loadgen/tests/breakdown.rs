//! The latency breakdown by kernel stamps puts time where it was spent: a server that
//! sleeps before each reply shows in *network + server*, not in the client's parts; a
//! client that takes its replies late shows in *client receive*, not in the latency or
//! the network; and the parts add up to what they split. TCP and UDP, loopback only.

mod util;

use ringload::{Model, Report, Stop, Target};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::{plan, run, tcp_server, udp_server, uring_available};

const MS: u64 = 1_000_000;

/// Echo after sleeping 2 ms.
fn echo_slowly(mut s: TcpStream, _: Instant) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn p50(h: &ringload::hist::Hist) -> u64 {
    h.value_at_quantile(0.5)
}

/// The sleeping server's time is in net+server and the latency; the client's send and
/// receive stay short (a closed loop wakes for each reply).
fn assert_server_time_is_the_servers(r: &Report) {
    let b = &r.breakdown;
    assert!(b.tally.stamped > 0 && b.tally.split > 10, "stamps and probes: {:?}", b.tally);
    assert!(p50(&b.network_server) >= 2 * MS, "net+server p50 {}", p50(&b.network_server));
    assert!(p50(&b.client_send) < MS, "client send p50 {}", p50(&b.client_send));
    assert!(p50(&b.client_receive) < MS, "client receive p50 {}", p50(&b.client_receive));
    assert!(p50(&r.latency) >= 2 * MS, "latency p50 {}", p50(&r.latency));
}

#[test]
fn a_slow_tcp_server_shows_in_network_and_server() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(echo_slowly);
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.connections = 1;
        p.stop = Stop::Duration(Duration::from_millis(800));
    }));
    assert_eq!(r.counters.failed(), 0, "{:?}", r.counters);
    assert_server_time_is_the_servers(&r);
}

#[test]
fn a_slow_udp_server_shows_in_network_and_server() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| {
        std::thread::sleep(Duration::from_millis(2));
        out.push(d.to_vec());
    });
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.connections = 1;
        p.stop = Stop::Duration(Duration::from_millis(800));
    }));
    assert_eq!(r.counters.lost, 0, "{:?}", r.counters);
    assert_server_time_is_the_servers(&r);
}

/// An open loop at 100 msg/s takes its replies at its next due time, up to 10 ms later:
/// that wait is the client's receive, not the latency, nor the network and server.
fn assert_late_taking_is_the_clients(r: &Report) {
    let b = &r.breakdown;
    assert!(b.tally.stamped > 0, "{:?}", b.tally);
    assert!(p50(&b.client_receive) >= 3 * MS, "client receive p50 {}", p50(&b.client_receive));
    assert!(p50(&r.latency) < 3 * MS, "latency p50 {} (the wait is not in it)", p50(&r.latency));
    assert!(p50(&b.network_server) < 3 * MS, "net+server p50 {}", p50(&b.network_server));
    // The parts add up: for every stamped reply, latency + client receive is what a
    // loop timing in user space sees.
    let sum = r.latency.mean() + b.client_receive.mean();
    let whole = b.user_to_user.mean();
    assert!((sum - whole).abs() <= whole * 0.01, "{sum} vs {whole}");
    let probes = b.probe_lag.mean() + b.client_send.mean() + b.network_server.mean();
    let latency = b.probe_latency.mean();
    assert!((probes - latency).abs() <= latency * 0.01 + 1_000.0, "{probes} vs {latency}");
}

fn open_plan(target: Target) -> ringload::Plan {
    plan(Some(target), |p| {
        p.connections = 1;
        p.model = Model::Open { rate: 100.0 };
        p.stop = Stop::Duration(Duration::from_secs(1));
    })
}

#[test]
fn a_client_that_takes_replies_late_shows_in_client_receive_tcp() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(|mut s, _| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let r = run(open_plan(Target::Tcp(addr)));
    assert_late_taking_is_the_clients(&r);
}

#[test]
fn a_client_that_takes_replies_late_shows_in_client_receive_udp() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| out.push(d.to_vec()));
    let r = run(open_plan(Target::Udp(addr)));
    assert_late_taking_is_the_clients(&r);
}

#[test]
fn user_timestamps_wake_for_each_reply_and_split_nothing() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| out.push(d.to_vec()));
    let mut p = open_plan(Target::Udp(addr));
    p.timestamps = ringload::plan::Timestamps::User;
    let r = run(p);
    assert!(r.counters.completed > 50, "{:?}", r.counters);
    let b = &r.breakdown;
    assert_eq!((b.tally.stamped, b.tally.probes), (0, 0), "{:?}", b.tally);
    assert!(b.client_receive.is_empty() && b.network_server.is_empty());
}

/// The built-in server times its own parts when the client does: its wake (kernel arrival
/// stamp → its worker takes the request) and its send (worker → kernel send stamp) are
/// inside the client's *network + server*, so their means add up to no more than it (the
/// rest is the loopback both ways); the report prints them under the client's parts.
#[test]
fn the_builtin_servers_parts_sit_inside_network_and_server() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 1;
        p.stop = Stop::Duration(Duration::from_millis(1500));
    }));
    assert_eq!(r.counters.failed(), 0, "{:?}", r.counters);
    let server = r.views.as_ref().and_then(|v| v.server.as_ref()).expect("the built-in server is read");
    let t = server.timing.expect("the built-in server times its parts");
    assert!(t.wake.count > 100 && t.send.count > 5, "{t:?}");
    let net = r.breakdown.network_server.mean();
    let parts = t.wake.mean_ns + t.send.mean_ns;
    assert!(r.breakdown.tally.split > 10, "{:?}", r.breakdown.tally);
    assert!(
        parts > 0.0 && parts <= net * 1.25 + 10_000.0,
        "server wake + send {parts} ns, net+server {net} ns"
    );
    let text = ringload::text::run::report(&r);
    for row in ["server wake", "server send", "= server wake"] {
        assert!(text.contains(row), "{row}: {text}");
    }
}

/// `--user-timestamps` leaves the built-in server's stamps off too.
#[test]
fn user_timestamps_leave_the_builtin_server_untimed() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 1;
        p.timestamps = ringload::plan::Timestamps::User;
        p.stop = Stop::Duration(Duration::from_millis(300));
    }));
    let server = r.views.as_ref().and_then(|v| v.server.as_ref()).expect("the built-in server is read");
    assert_eq!(server.timing, None);
}

/// `--send-window`: messages due within the window go early, together; an early one is
/// timed from its actual send, so a server that sleeps 2 ms before each reply still reads
/// as 2 ms (never less), none goes out late by the window, and the run sends what its
/// rate and duration say (nothing due after the stop goes early).
#[test]
fn a_send_window_sends_early_and_times_from_the_send() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(echo_slowly);
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.connections = 20;
        p.model = Model::Open { rate: 2_000.0 };
        p.send_window = Some(Duration::from_micros(2_000));
        p.stop = Stop::Duration(Duration::from_millis(1_000));
    }));
    assert_eq!(r.counters.failed(), 0, "{:?}", r.counters);
    // 2,000 msg/s for 1 s, the window's bursts aside.
    assert!((1_900..=2_000).contains(&r.counters.sent), "sent {}", r.counters.sent);
    // Timed from its due time, an early message would read up to the window (2 ms) less;
    // the tolerance is the stamps' placement on the run's clock (once seen 6 µs under).
    let min = r.latency.value_at_quantile(0.0);
    assert!(min >= 2 * MS - 50_000, "an early message timed from its due time reads {min} ns");
    // Sent at most a window early: none of the lag is the window's.
    assert!(r.lag.value_at_quantile(0.5) < MS, "send lag p50 {}", r.lag.value_at_quantile(0.5));
    assert!(
        ringload::text::run::report(&r).contains("send window 2.00ms"),
        "{}",
        ringload::text::run::report(&r)
    );
}

/// The batching open loop places every stamp against the time it is taken: a turn's
/// submit also runs the kernel's pending work, so replies and probes' send stamps come in
/// after the hand-out read the clock. (Placed against that older reading they looked "from
/// the future": 40% of the replies at 2k msg/s were timed when the worker saw them, too
/// early, and every probe lost its send stamp.)
#[test]
fn the_batching_open_loop_places_every_stamp() {
    if !uring_available() {
        return;
    }
    for target in [None, Some(Target::Udp(udp_server(|_, d, out| out.push(d.to_vec()))))] {
        let r = run(plan(target, |p| {
            p.connections = 10;
            p.model = Model::Open { rate: 2_000.0 };
            p.stop = Stop::Duration(Duration::from_millis(1_000));
        }));
        assert_eq!(r.counters.failed(), 0, "{:?}", r.counters);
        let t = r.breakdown.tally;
        let replies = t.stamped + t.unstamped + t.implausible;
        assert!(replies >= 1_900 && t.implausible * 100 <= replies, "{t:?}");
        assert!(t.split >= 100 && t.probes_missing * 10 <= t.probes, "{t:?}");
    }
}
