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

/// A connected datagram client, UDP or Unix.
trait Client {
    fn send(&self, data: &[u8]) -> std::io::Result<usize>;
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    fn set_timeout(&self, timeout: Duration);
}

impl Client for UdpSocket {
    fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        UdpSocket::send(self, data)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        UdpSocket::recv(self, buf)
    }
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl Client for UnixDatagram {
    fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        UnixDatagram::send(self, data)
    }
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        UnixDatagram::recv(self, buf)
    }
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
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

/// A datagram over `--dgram-buffer-size` gets no reply (not a partial one) and is
/// counted; the start-up line says the limit.
fn oversized_datagram_is_dropped_not_truncated(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Listen::Udp("127.0.0.1:0".parse().unwrap()).into()];
        c.dgram_buffer_size = Some(2048);
    }) else {
        return;
    };
    assert!(h.listening_lines()[0].ends_with(" max-datagram 2048"), "{:?}", h.listening_lines());
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

/// `--dgram-buffer-size 1000` holds exactly on every listener, whatever listeners share a
/// worker: beside one another, IPv4 UDP, IPv6 UDP and Unix datagram listeners (whose
/// source addresses take different room in a datagram buffer of the uring backend) each
/// echo 1,000 B and drop every datagram of 1,001 to 1,100 B, counted as truncated.
fn dgram_limit_is_exact_whatever_listeners_share_a_worker(backend: Backend) {
    const LIMIT: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let server_path = dir.path().join("echo.dgram");
    let unix = backend.has_unix_datagram();
    let Some(h) = start(backend, |c| {
        c.listen = vec![
            Listen::Udp("127.0.0.1:0".parse().unwrap()).into(),
            Listen::Udp("[::1]:0".parse().unwrap()).into(),
        ];
        if unix {
            c.listen.push(Listen::UnixGram(server_path.clone()).into());
        }
        c.dgram_buffer_size = Some(LIMIT as u32);
    }) else {
        return;
    };
    assert!(
        h.listening_lines().iter().all(|l| l.ends_with(" max-datagram 1000")),
        "{:?}",
        h.listening_lines()
    );
    let udp: Vec<_> = h
        .local_addrs()
        .iter()
        .filter_map(|a| match a {
            ringecho::BoundAddr::Udp(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(udp.len(), 2);
    // Each oversized datagram is followed by one of exactly the limit from the same
    // socket: the server answers one sender's datagrams in order, so the first reply must
    // be that one, whole — an oversized one echoed (or cut) would come first. A busy
    // loopback may lose a datagram before the server sees it (the kernel's backlog), so an
    // unanswered one of the limit is sent again (a late answer to an earlier one is
    // recognised as such). Returns how many datagrams of the limit went.
    let check = |name: &str, client: &dyn Client| -> u64 {
        let mut back = vec![0u8; 4096];
        let (mut sent, mut earlier) = (0u64, Vec::new());
        client.set_timeout(Duration::from_secs(1));
        for size in LIMIT + 1..=LIMIT + 100 {
            let exact = payload(size as u64, LIMIT);
            assert_eq!(client.send(&payload(size as u64 + (1 << 32), size)).unwrap(), size);
            'answered: for attempt in 1.. {
                assert_eq!(client.send(&exact).unwrap(), LIMIT);
                sent += 1;
                loop {
                    match client.recv(&mut back) {
                        Ok(n) if back[..n] == exact[..] => break 'answered,
                        Ok(n) if earlier.iter().any(|e: &Vec<u8>| back[..n] == e[..]) => continue,
                        Ok(n) => panic!(
                            "{name}: {n} B came back where only the {LIMIT} B datagram sent after a {size} B one should"
                        ),
                        Err(e) if attempt == 5 => {
                            panic!("{name}: no reply to {LIMIT} B in {attempt} tries: {e}")
                        }
                        Err(_) => continue 'answered,
                    }
                }
            }
            earlier.push(exact);
        }
        // Nothing after the last of them but late answers to earlier ones (the positive
        // case above is on this socket).
        client.set_timeout(Duration::from_millis(300));
        while let Ok(n) = client.recv(&mut back) {
            assert!(earlier.iter().any(|e| back[..n] == e[..]), "{name}: {n} B came back unasked");
        }
        sent
    };
    let mut exact_sent = 0;
    for addr in &udp {
        exact_sent += check(&format!("udp {addr}"), &udp_client(*addr));
    }
    let mut listeners = udp.len() as u64;
    if unix {
        let client = UnixDatagram::bind(dir.path().join("client.dgram")).unwrap();
        client.connect(&server_path).unwrap();
        exact_sent += check("unixgram", &client);
        listeners += 1;
    }
    // Every oversized datagram the server saw is counted as truncated, and nothing else
    // is: all of them, unless the kernel lost some before the server saw them.
    let sent = listeners * 100 + exact_sent;
    let all_seen = eventually(Duration::from_secs(5), || h.stats().total.dgrams_in >= sent);
    let t = settled_dgrams(&h, listeners * 100);
    assert_eq!(t.dgram_drop_truncated, t.dgrams_in - t.dgrams_echoed, "{t:?}");
    assert!(t.dgrams_echoed >= listeners * 100 && t.dgrams_echoed <= exact_sent, "{t:?}");
    if all_seen {
        assert_eq!((t.dgrams_in, t.dgram_drop_truncated), (sent, listeners * 100), "{t:?}");
    } else {
        eprintln!("{} of {sent} datagrams lost before the server saw them: {t:?}", sent - t.dgrams_in);
        assert!(t.dgram_drop_truncated > 0, "{t:?}");
    }
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
    oversized_datagram_is_dropped_not_truncated,
    dgram_limit_is_exact_whatever_listeners_share_a_worker,
    rate_limit_drops_and_counts_the_excess,
    unix_datagram_bound_and_unbound_senders,
    udp_discard_answers_nothing,
    udp_flood_of_sizes_from_many_ports,
    gso_trains_echo_datagram_for_datagram,
    rate_limit_counts_datagrams_of_trains
);
