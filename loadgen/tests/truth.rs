//! The truth tests: small servers that misbehave in known ways, and the figures ringload
//! must report for them. Each shows a figure can fail.

mod util;

use ringload::{Model, Stop, Target};
use std::time::Duration;
use util::*;

/// Open loop against a server that stalls 200 ms every second: the corrected p99 shows the
/// stall while the uncorrected p50 stays small; closed loop shows it in max.
#[test]
fn stall_shows_in_corrected_latency() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(echo_stalling);
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.model = Model::Open { rate: 2000.0 };
        p.stop = Stop::Duration(Duration::from_secs(3));
    }));
    let p99 = r.latency.value_at_quantile(0.99);
    let service_p50 = r.service.value_at_quantile(0.5);
    eprintln!("stall: corrected p99 {} service p50 {}", p99, service_p50);
    assert!(p99 >= 100_000_000, "corrected p99 {p99} ns hides the 200 ms stalls");
    assert!(service_p50 < 20_000_000, "uncorrected p50 {service_p50} ns");

    let closed = run(plan(Some(Target::Tcp(addr)), |p| p.stop = Stop::Duration(Duration::from_millis(1500))));
    assert!(closed.latency.max() >= 100_000_000, "closed-loop max {} hides the stall", closed.latency.max());
}

/// A UDP echo that drops every 10th datagram: loss 10% ± 1 point.
#[test]
fn udp_drop_every_tenth_is_ten_percent_loss() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|n, d, out| {
        if n % 10 != 9 {
            out.push(d.to_vec());
        }
    });
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.connections = 8;
        p.model = Model::Closed { depth: 4 };
        p.udp_timeout = Duration::from_millis(50);
        p.stop = Stop::Duration(Duration::from_secs(2));
    }));
    let c = r.counters;
    let loss = c.lost as f64 / (c.lost + c.completed) as f64;
    eprintln!("drop: {c:?}");
    assert!((0.09..=0.11).contains(&loss), "loss {loss}");
    assert_eq!(c.duplicates + c.garbage + c.mismatched_messages, 0);
}

/// A UDP echo that swaps each pair of datagrams: reordering is counted, nothing lost.
#[test]
fn udp_swapped_pairs_count_as_reordered() {
    if !uring_available() {
        return;
    }
    // The held datagram of the pair, per server (one flow in this test).
    static HELD: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);
    let addr = udp_server(|_, d, out| {
        let mut held = HELD.lock().unwrap();
        match held.take() {
            None => *held = Some(d.to_vec()),
            Some(first) => {
                out.push(d.to_vec());
                out.push(first);
            }
        }
    });
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.connections = 1;
        p.model = Model::Closed { depth: 4 };
        p.stop = Stop::Requests(2000);
    }));
    let c = r.counters;
    eprintln!("reorder: {c:?}");
    assert!(c.reordered >= 900, "{c:?}");
    assert_eq!(c.duplicates + c.garbage, 0);
}

/// A UDP echo that answers twice: every second reply is a duplicate.
#[test]
fn udp_double_answers_count_as_duplicates() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, d, out| {
        out.push(d.to_vec());
        out.push(d.to_vec());
    });
    let r = run(plan(Some(Target::Udp(addr)), |p| p.stop = Stop::Requests(1000)));
    let c = r.counters;
    eprintln!("dup: {c:?}");
    assert_eq!(c.completed, 1000);
    assert!(c.duplicates >= 990, "{c:?}");
    assert_eq!(c.reordered + c.lost, 0);
}

/// A TCP echo that flips one byte in every 1,000: --verify counts the mismatches and the
/// run fails its check (exit 1).
#[test]
fn corruption_is_caught_by_verify() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(echo_corrupt);
    let mut r = run(plan(Some(Target::Tcp(addr)), |p| p.stop = Stop::Requests(2000)));
    r.check(None, None);
    let c = r.counters;
    eprintln!("corrupt: {c:?}");
    // 2 connections × 2000 × 64 B / 1000 ≈ 128 flipped bytes, one per message hit.
    assert!(c.mismatched_bytes >= 100 && c.mismatched_messages == c.mismatched_bytes, "{c:?}");
    assert_eq!(r.exit_code(), 1);
}

/// A TCP echo that writes replies one byte at a time: every reply is matched, no errors.
#[test]
fn fragmented_replies_are_matched() {
    if !uring_available() {
        return;
    }
    let addr = tcp_server(echo_bytewise);
    let r = run(plan(Some(Target::Tcp(addr)), |p| {
        p.size = ringload::SizeSpec { min: 100, max: 100 };
        p.model = Model::Closed { depth: 3 };
        p.stop = Stop::Requests(600);
    }));
    let c = r.counters;
    assert_eq!(c.completed, 600, "{c:?}");
    assert_eq!(c.failed() + c.mismatched_bytes + c.unsolicited_bytes, 0, "{c:?}");
    assert_eq!(r.exit_code(), 0);
}

/// --rate 20000 for 3 s against ringecho achieves 20,000 ± 2% msg/s.
#[test]
fn open_loop_rate_is_accurate() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 10;
        p.model = Model::Open { rate: 20_000.0 };
        p.stop = Stop::Duration(Duration::from_secs(3));
        p.warmup = Duration::from_millis(200);
    }));
    let achieved = r.throughput();
    eprintln!("rate: {achieved}");
    assert!((19_600.0..=20_400.0).contains(&achieved), "achieved {achieved} msg/s");
    assert_eq!(r.counters.failed(), 0);
}

/// Bytes ringload sent and received equal what the built-in ringecho counted, warm-up
/// included.
#[test]
fn counts_agree_with_the_server() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 20;
        p.model = Model::Closed { depth: 2 };
        p.warmup = Duration::from_millis(300);
        p.stop = Stop::Duration(Duration::from_secs(1));
    }));
    let b = r.builtin.clone().expect("built-in server");
    let c = r.counters;
    assert_eq!(c.unanswered_at_end, 0, "{c:?}");
    assert_eq!(b.server_bytes_in, c.bytes_sent);
    assert_eq!(b.server_bytes_out, c.bytes_received);
    assert_eq!(c.bytes_received, (c.completed + c.warmup_completed) * 64);
}

/// Churn: every connection carries M messages and is replaced; connects are counted and
/// timed, and nothing fails.
#[test]
fn churn_reconnects_every_m_messages() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 4;
        p.churn = Some(5);
        p.stop = Stop::Requests(500);
    }));
    let c = r.counters;
    assert_eq!(c.completed, 500, "{c:?}");
    assert_eq!(c.failed(), 0, "{c:?}");
    // 4 first connections carry 20 messages, then one new connection per 5 messages.
    assert!((92..=104).contains(&c.connects), "{} connects", c.connects);
    assert!(r.connect.len() >= c.connects);
}
