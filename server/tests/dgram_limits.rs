//! End-to-end tests of the datagram limits: `--dgram-buffer-size` (an oversized datagram
//! is dropped and counted, never cut; the limit is exact on every kind of listener) and
//! `--udp-rate-limit` (the excess dropped and counted).

mod util;

use ringecho::{Backend, Listen};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use util::dgram::*;
use util::*;

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

for_each_backend!(
    oversized_datagram_is_dropped_not_truncated,
    dgram_limit_is_exact_whatever_listeners_share_a_worker,
    rate_limit_drops_and_counts_the_excess
);
