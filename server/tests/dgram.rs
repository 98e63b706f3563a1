//! End-to-end datagram tests: UDP over IPv4 and IPv6, Unix datagram, truncation, rate
//! limiting, and the no-amplification rule.

mod util;

use ringecho::{Backend, Endpoint, Listen, Mode, ServerHandle};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use util::*;

fn udp_client(server: std::net::SocketAddr) -> UdpSocket {
    let local = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The server's UDP addresses, in listener order.
fn udp_addrs(h: &ServerHandle) -> Vec<std::net::SocketAddr> {
    h.local_addrs()
        .iter()
        .map(|a| match a {
            ringecho::BoundAddr::Udp(a) => *a,
            other => panic!("not UDP: {other}"),
        })
        .collect()
}

/// Waits until the server has counted at least `received` datagrams and accounted for
/// every one, and returns its counters.
fn settled_dgrams(h: &ServerHandle, received: u64) -> ringecho::Counters {
    let accounted = |t: &ringecho::Counters| {
        t.dgrams_echoed
            + t.dgrams_discarded
            + t.dgram_drop_truncated
            + t.dgram_drop_rate_limited
            + t.dgram_drop_unanswerable
            + t.dgram_drop_send_error
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let t = h.stats().total;
            t.dgrams_in >= received && t.dgrams_in == accounted(&t) && t.buf_ring_available == t.buf_ring_size
        }),
        "datagrams not accounted for: {:?}",
        h.stats().total
    );
    h.stats().total
}

fn udp_sizes_byte_for_byte_ipv4_and_ipv6(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![
            Listen::Udp("127.0.0.1:0".parse().unwrap()).into(),
            Listen::Udp("[::1]:0".parse().unwrap()).into(),
        ];
        // The largest datagrams need room for the recvmsg header and the address too.
        c.buffer_size = 66 * 1024;
        c.buffers = 64;
        c.max_conn_buffer = 66 * 1024;
    }) else {
        return;
    };
    let addrs = udp_addrs(&h);
    for (addr, max) in [(addrs[0], 65_507), (addrs[1], 65_527)] {
        let s = udp_client(addr);
        for size in [0usize, 1, 1_472, 8_192, max] {
            let data = payload(size as u64, size);
            s.send(&data).unwrap();
            let mut back = vec![0u8; 70_000];
            let n = s.recv(&mut back).unwrap();
            assert_eq!(n, size, "{addr}: reply size");
            assert!(back[..n] == data[..], "{addr}: {size} B differ");
        }
    }
    let t = settled_dgrams(&h, 10);
    assert_eq!(t.dgrams_in, 10);
    assert_eq!(t.dgrams_echoed, 10);
}

/// 8 clients × 20,000 datagrams, windowed: every reply reaches the client that sent it
/// with its own content; at least 99% are answered.
fn udp_many_clients_no_misdirected_or_altered_replies(backend: Backend) {
    let Some(h) = start(backend, |c| c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()])
    else {
        return;
    };
    let addr = h.udp_addr().unwrap();
    const PER_CLIENT: u32 = 20_000;
    const WINDOW: u32 = 32;
    let clients: Vec<_> = (0..8u32)
        .map(|id| {
            std::thread::spawn(move || {
                let s = udp_client(addr);
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let body = |seq: u32| -> Vec<u8> {
                    let mut d = Vec::with_capacity(64);
                    d.extend_from_slice(&id.to_le_bytes());
                    d.extend_from_slice(&seq.to_le_bytes());
                    d.extend(payload(u64::from(id) << 32 | u64::from(seq), 56));
                    d
                };
                let (mut next, mut outstanding) = (0u32, 0u32);
                let mut answered = HashSet::new();
                let (mut misdirected, mut altered, mut duplicates) = (0u32, 0u32, 0u32);
                let mut buf = [0u8; 2048];
                while next < PER_CLIENT || outstanding > 0 {
                    while next < PER_CLIENT && outstanding < WINDOW {
                        s.send(&body(next)).unwrap();
                        next += 1;
                        outstanding += 1;
                    }
                    match s.recv(&mut buf) {
                        Ok(n) => {
                            outstanding = outstanding.saturating_sub(1);
                            let (rid, seq) = (
                                u32::from_le_bytes(buf[0..4].try_into().unwrap()),
                                u32::from_le_bytes(buf[4..8].try_into().unwrap()),
                            );
                            if n < 8 || rid != id {
                                misdirected += 1;
                            } else if buf[..n] != body(seq)[..] {
                                altered += 1;
                            } else if !answered.insert(seq) {
                                duplicates += 1;
                            }
                        }
                        // Nothing for 500 ms: whatever is outstanding was lost.
                        Err(_) => outstanding = 0,
                    }
                }
                (answered.len() as u32, misdirected, altered, duplicates)
            })
        })
        .collect();
    for (id, c) in clients.into_iter().enumerate() {
        let (answered, misdirected, altered, duplicates) = c.join().unwrap();
        assert_eq!((misdirected, altered, duplicates), (0, 0, 0), "client {id}");
        assert!(answered >= PER_CLIENT * 99 / 100, "client {id}: only {answered} of {PER_CLIENT} answered");
    }
    let t = settled_dgrams(&h, u64::from(8 * PER_CLIENT * 99 / 100));
    assert!(t.dgrams_echoed >= u64::from(8 * PER_CLIENT * 99 / 100));
}

/// A datagram that does not fit the buffer gets no reply (not a partial one) and is
/// counted.
fn oversized_datagram_is_dropped_not_truncated(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
        c.buffer_size = 2048;
        c.max_conn_buffer = 2048;
    }) else {
        return;
    };
    let s = udp_client(h.udp_addr().unwrap());
    s.send(&payload(1, 4000)).unwrap();
    s.send(b"small").unwrap();
    let mut buf = [0u8; 8192];
    // Same socket pair, same worker, in order: the first reply must be the small one.
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"small");
    let t = settled_dgrams(&h, 2);
    assert_eq!(t.dgram_drop_truncated, 1);
    assert_eq!(t.dgrams_echoed, 1);
}

/// --udp-rate-limit 1000: a client blasting 5,000 datagrams gets about 1,000 per second
/// plus the burst; the counters account for every datagram received.
fn rate_limit_drops_and_counts_the_excess(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
        c.udp_rate_limit = Some(1000);
    }) else {
        return;
    };
    let s = udp_client(h.udp_addr().unwrap());
    let started = Instant::now();
    for seq in 0..5000u32 {
        s.send(&seq.to_le_bytes()).unwrap();
    }
    let blast = started.elapsed();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut replies = 0u64;
    let mut buf = [0u8; 64];
    while s.recv(&mut buf).is_ok() {
        replies += 1;
    }
    let t = settled_dgrams(&h, replies);
    assert_eq!(t.dgrams_echoed, replies);
    // Burst (a tenth of a second) plus 1,000/s for as long as datagrams kept arriving.
    let ceiling = 100.0 + 1000.0 * (blast.as_secs_f64() + 0.05) + 5.0;
    assert!((replies as f64) <= ceiling, "{replies} replies in {blast:?} (ceiling {ceiling})");
    assert!(replies >= 100, "at least the burst is answered: {replies}");
    assert_eq!(t.dgram_drop_rate_limited, t.dgrams_in - replies);
    eprintln!("rate limit: sent 5000 in {blast:?}, server got {}, answered {replies}", t.dgrams_in);
}

/// Unix datagram: a bound client gets its echoes; an unbound sender is counted, not
/// answered, and does not disturb the bound client.
fn unix_datagram_bound_and_unbound_senders(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server_path = dir.path().join("echo.dgram");
    if !backend.has_unix_datagram() {
        // Such a backend refuses the listener at start, naming the flag.
        let config = ringecho::Config {
            backend,
            listen: vec![Listen::UnixGram(server_path.clone()).into()],
            ..ringecho::Config::default()
        };
        let err = ringecho::Server::start(config).err().expect("refused").to_string();
        assert!(err.contains("--unixgram"), "{err}");
        return;
    }
    let Some(h) = start(backend, |c| c.listen = vec![Listen::UnixGram(server_path.clone()).into()]) else {
        return;
    };
    let client = UnixDatagram::bind(dir.path().join("client.dgram")).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.connect(&server_path).unwrap();
    let anon = UnixDatagram::unbound().unwrap();
    for i in 0..100u64 {
        anon.send_to(b"who am I", &server_path).unwrap();
        let data = payload(i, 1 + (i as usize * 37) % 1500);
        client.send(&data).unwrap();
        let mut back = vec![0u8; 2048];
        let n = client.recv(&mut back).unwrap();
        assert!(back[..n] == data[..]);
    }
    let t = settled_dgrams(&h, 200);
    assert_eq!(t.dgram_drop_unanswerable, 100);
    assert_eq!(t.dgrams_echoed, 100);
}

/// A discard datagram listener answers nothing and counts everything.
fn udp_discard_answers_nothing(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![
            Endpoint { listen: Listen::Udp("127.0.0.1:0".parse().unwrap()), mode: Mode::Discard },
            Listen::Udp("127.0.0.1:0".parse().unwrap()).into(),
        ];
    }) else {
        return;
    };
    let addrs = udp_addrs(&h);
    let s = udp_client(addrs[0]);
    for _ in 0..50 {
        s.send(b"into the void").unwrap();
    }
    // The echo listener answers: proof the server is up and has processed the earlier ones.
    let e = udp_client(addrs[1]);
    e.send(b"ping").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(e.recv(&mut buf).unwrap(), 4);
    let t = settled_dgrams(&h, 51);
    assert_eq!(t.dgrams_discarded + t.dgrams_echoed, t.dgrams_in);
    s.set_nonblocking(true).unwrap();
    assert!(s.recv(&mut buf).is_err(), "discard sent a reply");
    assert!(eventually(Duration::from_secs(5), || h.stats().total.dgrams_discarded == 50));
}

/// A flood of 0 B, 1 B and 65,507 B datagrams from 100 source ports: no reply is larger
/// than a request from that port, no port gets more replies than it sent, and the
/// counters account for every datagram received.
fn udp_flood_of_sizes_from_many_ports(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
        c.buffer_size = 66 * 1024;
        c.buffers = 256;
        c.max_conn_buffer = 66 * 1024;
    }) else {
        return;
    };
    let addr = h.udp_addr().unwrap();
    let sizes = [0usize, 1, 65_507];
    let socks: Vec<UdpSocket> = (0..100).map(|_| udp_client(addr)).collect();
    let big = payload(1, 65_507);
    for round in 0..6 {
        for s in &socks {
            let _ = s.send(&big[..sizes[round % 3]]);
        }
    }
    let mut replies = 0u64;
    let mut buf = vec![0u8; 70_000];
    for s in &socks {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut mine = 0;
        while let Ok(n) = s.recv(&mut buf) {
            assert!(sizes.contains(&n), "reply of {n} B matches no request");
            assert!(buf[..n] == big[..n], "altered reply");
            mine += 1;
        }
        assert!(mine <= 6, "{mine} replies to 6 requests");
        replies += mine;
    }
    let t = settled_dgrams(&h, 1);
    assert_eq!(t.dgrams_echoed, replies, "{t:?}");
    assert!(t.dgrams_in <= 600);
}

for_each_backend!(
    udp_sizes_byte_for_byte_ipv4_and_ipv6,
    udp_many_clients_no_misdirected_or_altered_replies,
    oversized_datagram_is_dropped_not_truncated,
    rate_limit_drops_and_counts_the_excess,
    unix_datagram_bound_and_unbound_senders,
    udp_discard_answers_nothing,
    udp_flood_of_sizes_from_many_ports
);
