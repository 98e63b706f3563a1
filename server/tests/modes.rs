//! Stream discard and source modes.

mod util;

use ringecho::{Backend, Endpoint, Listen, Mode};
use std::io::{Read, Write};
use util::*;

/// 1 GiB into a discard listener: every byte counted, the server's RSS does not grow
/// with it.
fn discard_takes_a_gigabyte_in_bounded_memory(backend: Backend) {
    if !available(backend) {
        return;
    }
    let server = Binary::start_on(backend, &["--tcp", "discard@127.0.0.1:0", "--workers", "1"], 1);
    assert!(server.addrs[0].ends_with(" discard"), "{:?}", server.addrs);
    let addr: std::net::SocketAddr = server.addrs[0].split(' ').nth(1).unwrap().parse().unwrap();
    let chunk = payload(5, 1 << 20);
    // Warm-up: let every buffer of the ring be touched once.
    let mut warm = connect(addr);
    for _ in 0..64 {
        warm.write_all(&chunk).unwrap();
    }
    warm.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(warm.read(&mut [0u8; 1]).unwrap(), 0, "discard closes after EOF");
    let before = rss_kib(server.child.id());
    let mut s = connect(addr);
    for _ in 0..1024 {
        s.write_all(&chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0, "nothing comes back from discard");
    let after = rss_kib(server.child.id());
    assert!(after <= before + 4096, "RSS grew from {before} KiB to {after} KiB");
    server.signal(libc::SIGTERM);
    let (code, out) = server.wait(std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("bytes_in={} ", (1024 + 64) << 20)), "{out}");
    assert!(out.contains("bytes_out=0 "), "{out}");
}

/// A client reads 100 MiB from a source listener and checks the pattern.
fn source_streams_a_verifiable_pattern(backend: Backend) {
    let Some(h) = start(backend, |c| {
        c.listen = vec![Endpoint { listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()), mode: Mode::Source }];
    }) else {
        return;
    };
    let mut s = connect(h.tcp_addr().unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < 100 << 20 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "source closed early at {offset}");
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, ringecho::source_byte(offset + i as u64), "at offset {}", offset + i as u64);
        }
        offset += n as u64;
    }
    drop(s);
    assert_settled(&h);
    assert!(h.stats().total.bytes_out >= 100 << 20);
}

for_each_backend!(discard_takes_a_gigabyte_in_bounded_memory, source_streams_a_verifiable_pattern);
