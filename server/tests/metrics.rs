//! `--metrics`: OpenMetrics text over HTTP, parsed by an OpenMetrics parser, whose
//! per-worker series sum to the stats API's totals (nothing double-counted), with the
//! process metrics; idle scrapers delay no one.

mod util;

use openmetrics_parser::{MetricNumber, OpenMetricsValue};
use ringecho::Backend;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use util::*;

fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn number(v: &OpenMetricsValue) -> f64 {
    let n = match v {
        OpenMetricsValue::Counter(c) => &c.value,
        OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n,
        other => panic!("unexpected value {other:?}"),
    };
    match n {
        MetricNumber::Int(i) => *i as f64,
        MetricNumber::Float(f) => *f,
    }
}

fn metrics_match_stats(backend: Backend) {
    let Some(h) = start(backend, |c| c.metrics = Some("127.0.0.1:0".parse().unwrap())) else { return };
    let data = payload(1, 100_000);
    assert!(echo_full_duplex(connect(h.tcp_addr().unwrap()), data.clone()).unwrap() == data);
    assert_settled(&h);
    let addr = h.metrics_addr().unwrap();
    let (head, body) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let exposition = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{body}"));
    let total = h.stats().total;
    // Every ringecho_* family is per worker only: summing it gives the total, once.
    let sum = |family: &str| -> f64 {
        let f = exposition.families.get(family).unwrap_or_else(|| panic!("no {family}"));
        assert_eq!(f.get_label_names(), ["worker"], "{family}: worker label only");
        f.iter_samples().map(|s| number(&s.value)).sum()
    };
    for (family, expect) in [
        ("ringecho_bytes_in", total.bytes_in),
        ("ringecho_bytes_out", total.bytes_out),
        ("ringecho_accepted", total.accepted),
        ("ringecho_closed", total.closed),
        ("ringecho_open", total.open),
        ("ringecho_buf_errors", 0),
    ] {
        assert_eq!(sum(family) as u64, expect, "{family}");
    }
    assert!(!body.contains("worker=\"all\""), "a total beside the workers double-counts");
    assert!(!body.contains(".."), "help texts end with one period");
    // CPU time may still be under a clock tick; the others cannot be zero.
    for (family, min) in [
        ("process_cpu_seconds", 0.0),
        ("process_open_fds", 1.0),
        ("process_max_fds", 1.0),
        ("process_resident_memory_bytes", 1.0),
        ("process_start_time_seconds", 1e9),
    ] {
        let f = exposition.families.get(family).unwrap_or_else(|| panic!("no {family}"));
        assert!(f.iter_samples().all(|s| number(&s.value) >= min), "{family}");
    }
    let build = exposition.families.get("ringecho_build").expect("build info");
    assert!(matches!(build.family_type, openmetrics_parser::OpenMetricsType::Info));
    assert!(body.contains(&format!("backend=\"{}\"", backend.name())), "{body}");

    let (head, _) = get(addr, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // Scrapers that connect and say nothing (or trickle) delay no other scrape.
    let idle: Vec<_> = (0..50).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let mut trickler = std::net::TcpStream::connect(addr).unwrap();
    trickler.write_all(b"GET /metr").unwrap();
    // The fastest of three: a scrape that waited for the idle ones would take 2 s each.
    let fastest = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            let (head, _) = get(addr, "/metrics");
            assert!(head.starts_with("HTTP/1.1 200"));
            t0.elapsed()
        })
        .min()
        .unwrap();
    assert!(fastest < Duration::from_millis(500), "a scrape behind idle ones took {fastest:?}");
    drop(idle);
}

for_each_backend!(metrics_match_stats);
