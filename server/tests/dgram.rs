//! End-to-end datagram tests: UDP over IPv4 and IPv6 (every legal size, many clients, a
//! flood of sizes from many ports), Unix datagram (bound and unbound senders), and the
//! discard mode; every reply exactly its request, to its sender. The limits are in
//! `dgram_limits.rs`, GSO/GRO trains in `dgram_trains.rs`.

mod util;

use ringecho::{Backend, Endpoint, Listen, Mode};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use util::dgram::*;
use util::*;

/// With default flags, every legal size is echoed byte for byte: the datagram buffers do
/// not depend on the stream `--buffer-size` (16 KiB by default).
fn udp_sizes_byte_for_byte_ipv4_and_ipv6(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![
            Listen::Udp("127.0.0.1:0".parse().unwrap()).into(),
            Listen::Udp("[::1]:0".parse().unwrap()).into(),
        ];
    }) else {
        return;
    };
    assert!(h.listening_lines().iter().all(|l| !l.contains("max-datagram")), "{:?}", h.listening_lines());
    let addrs = udp_addrs(&h);
    let sizes = [0usize, 1, 1_472, 8_192, 16_000, 16_352, 16_353, 20_000, 65_000];
    for (addr, max) in [(addrs[0], 65_507), (addrs[1], 65_527)] {
        let s = udp_client(addr);
        for size in sizes.into_iter().chain([max]) {
            let data = payload(size as u64, size);
            s.send(&data).unwrap();
            let mut back = vec![0u8; 70_000];
            let n = s.recv(&mut back).unwrap();
            assert_eq!(n, size, "{addr}: reply size");
            assert!(back[..n] == data[..], "{addr}: {size} B differ");
        }
    }
    let t = settled_dgrams(&h, 20);
    assert_eq!(t.dgrams_in, 20);
    assert_eq!(t.dgrams_echoed, 20);
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
    // The largest Unix datagram the server's socket can send back: its send buffer less
    // the kernel's 32 bytes (212,960 B with Linux's defaults), far over 64 KiB.
    let largest = socket2::SockRef::from(&client).send_buffer_size().unwrap() - 32;
    for size in [70_000, largest] {
        let data = payload(size as u64, size);
        match client.send(&data) {
            Ok(_) => {}
            // This client's own send buffer is smaller than the server's: nothing to test.
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => continue,
            Err(e) => panic!("send {size}: {e}"),
        }
        let mut back = vec![0u8; size + 1];
        let n = client.recv(&mut back).unwrap();
        assert!(n == size && back[..n] == data[..], "{size} B: got {n} B back");
    }
    let t = settled_dgrams(&h, 202);
    assert_eq!(t.dgram_drop_unanswerable, 100);
    assert_eq!(t.dgrams_echoed, 102);
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
    unix_datagram_bound_and_unbound_senders,
    udp_discard_answers_nothing,
    udp_flood_of_sizes_from_many_ports
);
