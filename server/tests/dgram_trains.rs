//! End-to-end tests of UDP GSO/GRO trains: segmented sends echoed datagram for datagram
//! (with UDP_GRO on and off), and the rate limit charged per datagram of a train.

mod util;

use ringecho::{Backend, Listen};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::Duration;
use util::dgram::*;
use util::*;

/// One datagram as the train tests send it: the client, a sequence number, then bytes
/// that depend on both, `len` bytes in all (at least 8).
fn tagged(client: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&client.to_le_bytes());
    d.extend_from_slice(&seq.to_le_bytes());
    d.extend(payload(u64::from(client) << 32 | u64::from(seq), len - 8));
    d
}

/// Sends `datagrams` as one UDP_SEGMENT send of `segment`-byte segments (every datagram
/// but the last exactly `segment` bytes).
fn send_train(s: &UdpSocket, to: std::net::SocketAddr, datagrams: &[Vec<u8>], segment: u16) {
    use std::os::fd::AsFd;
    assert!(datagrams[..datagrams.len() - 1].iter().all(|d| d.len() == usize::from(segment)));
    let bytes: Vec<u8> = datagrams.concat();
    let to = socket2::SockAddr::from(to);
    // SAFETY: a SockAddr holds `len` initialised bytes of address.
    let name = unsafe { std::slice::from_raw_parts(to.as_ptr().cast::<u8>(), to.len() as usize) };
    let sent = ringecho::gso::sendmsg(s.as_fd(), &bytes, name, (datagrams.len() > 1).then_some(segment));
    assert_eq!(sent.unwrap(), bytes.len());
}

/// Receives until `n` datagrams came or none came for `quiet`.
fn receive_all(s: &UdpSocket, n: usize, quiet: Duration) -> Vec<Vec<u8>> {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while got.len() < n {
        match s.recv(&mut buf) {
            Ok(k) => got.push(buf[..k].to_vec()),
            Err(_) => break,
        }
    }
    got
}

/// Clients sending segmented trains (UDP_SEGMENT), with a shorter last segment, and plain
/// datagrams of mixed sizes in between, get back every datagram exactly as sent: none
/// misdirected, duplicated, merged or cut. On the backends that batch, both with UDP_GRO
/// on (each train echoed with one segmented send) and off; on the others the kernel
/// splits the trains before the server sees them.
fn gso_trains_echo_datagram_for_datagram(backend: Backend) {
    let settings: &[bool] = if backend.handles_gro() { &[true, false] } else { &[true] };
    for &gro in settings {
        let Some(h) = start(backend, |c| {
            c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
            c.gro = gro;
        }) else {
            return;
        };
        let addr = h.udp_addr().unwrap();
        let clients: Vec<UdpSocket> = (0..4).map(|_| udp_client(addr)).collect();
        let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients.len()];
        // (segment size, datagrams, length of the last one)
        let trains: [(u16, u32, usize); 5] =
            [(64, 8, 64), (64, 8, 20), (1_200, 16, 1_200), (1_000, 10, 999), (1_472, 40, 100)];
        let mut seq = 0u32;
        // One train (about 60 KB at most) in flight at a time: a burst of several would
        // overflow a receive queue as split datagrams (about 2 KiB of socket memory each)
        // and be lost, which is UDP, not the server.
        for (segment, count, last) in trains {
            for (id, s) in clients.iter().enumerate() {
                let mut want: Vec<Vec<u8>> = (0..count)
                    .map(|i| {
                        tagged(id as u32, seq + i, if i + 1 == count { last } else { usize::from(segment) })
                    })
                    .collect();
                send_train(s, addr, &want, segment);
                // A plain datagram of another size from the same sender right after.
                let single = tagged(id as u32, seq + count, 8 + (seq as usize * 131) % 3_000);
                s.send(&single).unwrap();
                want.push(single);
                let mut got = receive_all(s, want.len(), Duration::from_secs(5));
                got.sort();
                want.sort();
                assert_eq!(
                    got.len(),
                    want.len(),
                    "gro {gro}, client {id}, segment {segment}: datagrams back"
                );
                assert!(got == want, "gro {gro}, client {id}: a datagram came back altered, merged or cut");
                sent[id].extend(want);
            }
            seq += count + 1;
        }
        let total: usize = sent.iter().map(Vec::len).sum();
        let t = settled_dgrams(&h, total as u64);
        assert_eq!((t.dgrams_in, t.dgrams_echoed), (total as u64, total as u64), "gro {gro}: {t:?}");
        let bytes: usize = sent.iter().flatten().map(Vec::len).sum();
        assert_eq!((t.bytes_in, t.bytes_out), (bytes as u64, bytes as u64));
    }
}

/// The rate limit charges per datagram, trains included: a train over the budget is cut
/// at a segment boundary and the rest counted; what is echoed is whole datagrams.
fn rate_limit_counts_datagrams_of_trains(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
        // 100 per second: a burst of 10.
        c.udp_rate_limit = Some(100);
    }) else {
        return;
    };
    let addr = h.udp_addr().unwrap();
    let s = udp_client(addr);
    let train: Vec<Vec<u8>> = (0..64).map(|i| tagged(9, i, 100)).collect();
    send_train(&s, addr, &train, 100);
    let got = receive_all(&s, 64, Duration::from_millis(500));
    let t = settled_dgrams(&h, 64);
    assert_eq!(t.dgrams_in, 64, "{t:?}");
    assert_eq!(t.dgrams_echoed, got.len() as u64);
    assert_eq!(t.dgram_drop_rate_limited, 64 - got.len() as u64);
    // The burst, plus what a few milliseconds refill where datagrams arrive one by one.
    assert!((10..=15).contains(&got.len()), "{} echoed", got.len());
    let mut seen = HashSet::new();
    for d in &got {
        let seq = u32::from_le_bytes(d[4..8].try_into().unwrap());
        assert!(train.get(seq as usize) == Some(d), "a reply that is not one whole datagram");
        assert!(seen.insert(seq), "datagram {seq} echoed twice");
    }
    if backend.handles_gro() {
        // One train judged at one instant: exactly the burst, its first ten datagrams.
        assert_eq!(seen, (0..10).collect::<HashSet<u32>>());
    }
}

for_each_backend!(gso_trains_echo_datagram_for_datagram, rate_limit_counts_datagrams_of_trains);
