//! Criterion benchmarks of the hot paths: buffer-ring take/recycle, histogram record and
//! merge, payload verification, datagram header encode/decode, and one 64-byte round
//! trip over loopback per server backend. `cargo bench -p ringecho-benches`; never gates
//! CI by time.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringecho::ring::BufRing;
use ringload::header::{self, Header};
use ringload::hist;
use ringload::payload::Pattern;
use std::hint::black_box;
use std::io::{Read, Write};

fn buf_ring(c: &mut Criterion) {
    // Not registered with a ring: this measures the bookkeeping and the tail publication,
    // which are the user-space cost per received buffer.
    let mut ring = BufRing::unregistered(1024, 4096).expect("mapping");
    let mut bid = 0u16;
    c.bench_function("buf_ring/take_recycle_publish", |b| {
        b.iter(|| {
            let buf = ring.take(black_box(bid)).unwrap();
            ring.give_back(buf).unwrap();
            ring.publish();
            bid = (bid + 1) % 1024;
        })
    });
}

fn histograms(c: &mut Criterion) {
    let mut h = hist::new();
    let mut v = 12_345u64;
    c.bench_function("hist/record", |b| {
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            hist::record(&mut h, black_box(1_000 + (v >> 44)));
        })
    });
    let mut other = hist::new();
    for i in 1..100_000u64 {
        hist::record(&mut other, i * 37);
    }
    c.bench_function("hist/merge_100k_samples", |b| {
        b.iter(|| {
            let mut acc = hist::new();
            acc.add(black_box(&other)).unwrap();
            acc
        })
    });
    c.bench_function("hist/encode_v2_deflate_base64", |b| b.iter(|| hist::encode(black_box(&other))));
}

fn verify(c: &mut Criterion) {
    let pattern = Pattern::new(1);
    let mut g = c.benchmark_group("payload/verify");
    for size in [64usize, 4096, 65_536] {
        let data = pattern.slice(12_345, size).to_vec();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| assert_eq!(pattern.mismatches(12_345, black_box(data)), 0))
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let mut buf = [0u8; header::LEN];
    let mut seq = 0u64;
    c.bench_function("dgram_header/encode_decode", |b| {
        b.iter(|| {
            seq += 1;
            Header { flow: 7, seq, sent_ns: seq * 3 }.encode(&mut buf);
            black_box(Header::decode(black_box(&buf)))
        })
    });
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback_round_trip_64B");
    for backend in [
        ringecho::Backend::Uring,
        ringecho::Backend::Epoll,
        ringecho::Backend::TokioUring,
        ringecho::Backend::Threads,
    ] {
        let config = ringecho::Config {
            backend,
            listen: vec![ringecho::Listen::Tcp("127.0.0.1:0".parse().unwrap()).into()],
            workers: Some(1),
            ..ringecho::Config::default()
        };
        let server = match ringecho::Server::start(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping {}: {e}", backend.name());
                continue;
            }
        };
        let mut s = std::net::TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
        s.set_nodelay(true).unwrap();
        let msg = [0x5au8; 64];
        let mut back = [0u8; 64];
        g.bench_function(backend.name(), |b| {
            b.iter(|| {
                s.write_all(&msg).unwrap();
                s.read_exact(&mut back).unwrap();
            })
        });
        drop(s);
        server.shutdown();
        server.join();
    }
    g.finish();
}

criterion_group!(benches, buf_ring, histograms, verify, headers, round_trip);
criterion_main!(benches);
