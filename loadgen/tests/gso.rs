//! UDP batching (UDP_SEGMENT sends, UDP_GRO receives): every datagram of a train keeps
//! its own header and comes back whole, against a server that batches too (ringecho) and
//! against a plain recvfrom/sendto loop, for which the kernel splits the trains.

mod util;

use ringload::{Model, SizeSpec, Stop, Target};
use std::sync::atomic::{AtomicUsize, Ordering};
use util::*;

/// The longest datagram the plain loop below was handed.
static LONGEST: AtomicUsize = AtomicUsize::new(0);

fn echo_noting_length(_: u64, d: &[u8], out: &mut Vec<Vec<u8>>) {
    LONGEST.fetch_max(d.len(), Ordering::Relaxed);
    out.push(d.to_vec());
}

/// Against a recvfrom loop: the loop sees single datagrams (never a train), every reply
/// is matched exactly, and the client sent far fewer times than it had datagrams.
#[test]
fn trains_against_a_plain_recvfrom_loop_are_exact() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(echo_noting_length);
    let r = run(plan(Some(Target::Udp(addr)), |p| {
        p.connections = 4;
        p.model = Model::Closed { depth: 16 };
        p.stop = Stop::Requests(40_000);
        p.udp_timeout = std::time::Duration::from_secs(2);
    }));
    let c = r.counters;
    eprintln!("plain loop: {c:?}");
    assert_eq!(LONGEST.load(Ordering::Relaxed), 64, "the loop was handed something other than one datagram");
    assert_eq!((c.completed, c.lost, c.duplicates, c.garbage, c.mismatched_messages), (40_000, 0, 0, 0, 0));
    // How the replies trickle back decides later trains; the first train of each flow
    // holds its whole depth, so at least 4 × 15 sends were saved.
    assert!(c.sends + 60 <= c.completed, "{} sends for {} datagrams: not batched", c.sends, c.completed);
    assert_eq!(r.exit_code(), 0, "{:?}", r.warnings);
}

/// Against ringecho with and without GRO, and with ringload's batching off: exact every
/// time, mixed sizes included (a train ends where the size changes); the server counts
/// the datagrams the client sent, one by one.
#[test]
fn trains_against_ringecho_with_and_without_gro_are_exact() {
    if !uring_available() {
        return;
    }
    for (server_gro, client_gso) in [(true, true), (false, true), (true, false)] {
        let config = ringecho::Config {
            listen: vec![ringecho::Listen::Udp("127.0.0.1:0".parse().unwrap()).into()],
            workers: Some(1),
            gro: server_gro,
            ..ringecho::Config::default()
        };
        let server = ringecho::Server::start(config).unwrap();
        let addr = server.udp_addr().unwrap();
        let r = run(plan(Some(Target::Udp(addr)), |p| {
            p.connections = 4;
            p.model = Model::Closed { depth: 16 };
            p.size = SizeSpec { min: 24, max: 1_200 };
            p.stop = Stop::Requests(20_000);
            p.udp_timeout = std::time::Duration::from_secs(2);
            p.gso = client_gso;
        }));
        server.shutdown();
        let totals = server.join().total;
        let c = r.counters;
        let case = format!("server gro {server_gro}, client gso {client_gso}");
        eprintln!("{case}: {c:?}, server in {} echoed {}", totals.dgrams_in, totals.dgrams_echoed);
        assert_eq!(
            (c.completed, c.lost, c.duplicates, c.garbage, c.mismatched_messages),
            (20_000, 0, 0, 0, 0),
            "{case}"
        );
        assert_eq!(totals.dgrams_in, totals.dgrams_echoed, "{case}");
        assert!(totals.dgrams_in >= 20_000, "{case}: the server counted {} datagrams", totals.dgrams_in);
        assert_eq!(totals.buf_errors, 0);
        if client_gso {
            assert!(c.sends + 60 <= c.completed, "{case}: {} sends for {} datagrams", c.sends, c.completed);
        } else {
            assert!(c.sends >= c.completed, "{case}: {} sends for {} datagrams", c.sends, c.completed);
        }
        assert_eq!(r.exit_code(), 0, "{case}: {:?}", r.warnings);
    }
}
