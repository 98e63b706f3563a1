//! `--metrics`: OpenMetrics text over HTTP, parsed by an OpenMetrics parser, whose
//! per-worker series sum to the stats API's totals (nothing double-counted), with the
//! process metrics; idle scrapers delay no one, and hostile ones starve no one (clients
//! holding partial requests, silent clients, bare-LF requests, HEAD).

mod util;

use openmetrics_parser::{MetricNumber, OpenMetricsValue};
use ringecho::Backend;
use ringecho::metrics::http::{MAX_SCRAPERS, REQUEST_DEADLINE};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// Sends `request` and reads the whole answer (the server closes after it): its head and
/// its body; an error when the connection ended without one.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(request)?;
    let mut text = Vec::new();
    s.read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| io::Error::other(format!("no answer: {text:?}")))?;
    Ok((head.to_owned(), body.to_owned()))
}

fn start_with_metrics(backend: Backend) -> Option<(TestServer, SocketAddr)> {
    let h = start(backend, |c| c.metrics = Some("127.0.0.1:0".parse().unwrap()))?;
    let addr = h.metrics_addr().unwrap();
    Some((h, addr))
}

/// More clients than the endpoint holds, each with a partial request: 20 scrapes one after
/// another all get their answer, because a new connection evicts the oldest partial one
/// instead of being refused; the oldest holders are the ones closed.
fn scrapes_get_through_clients_holding_partial_requests(backend: Backend) {
    let Some((_h, addr)) = start_with_metrics(backend) else { return };
    let (holders, connected): (Vec<TcpStream>, Vec<Instant>) = (0..MAX_SCRAPERS + 44)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let at = Instant::now();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            (s, at)
        })
        .unzip();
    for i in 1..=20 {
        let (head, body) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|e| panic!("scrape {i} of 20 behind {} partial requests: {e}", holders.len()));
        assert!(head.starts_with("HTTP/1.1 200 "), "scrape {i}: {head}");
        assert!(body.contains("ringecho_bytes_in_total") && body.ends_with("# EOF\n"), "scrape {i}: {body}");
    }
    let scraped = Instant::now();
    // Closed (end of stream or reset) or still held (nothing to read yet), oldest first.
    let closed: Vec<bool> = holders
        .iter()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            match (&*s).read(&mut [0u8; 16]) {
                Ok(0) => true,
                Ok(n) => panic!("a partial request got {n} B of answer"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(_) => true,
            }
        })
        .collect();
    let evicted = closed.iter().take_while(|c| **c).count();
    assert!(closed[evicted..].iter().all(|c| !c), "the oldest are evicted, not others: {closed:?}");
    assert!(
        evicted >= holders.len() - MAX_SCRAPERS,
        "{evicted} evicted: the endpoint held more than its cap"
    );
    assert!(evicted <= holders.len() - MAX_SCRAPERS + 20, "{evicted} evicted");
    // The holders still held were all within their deadline until the last scrape, so the
    // eviction, not the deadline, made room for the scrapes.
    let oldest_held = connected[evicted];
    assert!(
        scraped < oldest_held + REQUEST_DEADLINE,
        "too slow to show anything: {:?}",
        scraped - oldest_held
    );
}

/// With fewer descriptors than clients holding partial requests, scrapes still get
/// through at once: the endpoint closes the oldest holder to make room instead of leaving
/// its listener stuck on failing accepts until the holders' deadline.
fn scrapes_get_through_when_descriptors_run_out(backend: Backend) {
    if !available(backend) {
        return;
    }
    let args = ["--tcp", "127.0.0.1:0", "--workers", "1", "--metrics", "127.0.0.1:0"];
    let server = Binary::start_on_with_nofile(backend, 128, &args, 2);
    let addr: SocketAddr =
        server.addrs[1].strip_prefix("metrics ").expect("the metrics line").parse().unwrap();
    let holders: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    for i in 1..=20 {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(REQUEST_DEADLINE * 3)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        let read = s.read_to_string(&mut text);
        let took = t0.elapsed();
        assert!(
            read.is_ok() && text.starts_with("HTTP/1.1 200 ") && text.ends_with("# EOF\n"),
            "scrape {i} behind {} partial requests at 128 descriptors, after {took:?}: {read:?} {text:?}",
            holders.len()
        );
        assert!(took < REQUEST_DEADLINE / 2, "scrape {i} took {took:?}: it waited for the holders' deadline");
    }
}

/// A request whose lines end in a bare LF is answered.
fn bare_lf_request_is_answered(backend: Backend) {
    let Some((_h, addr)) = start_with_metrics(backend) else { return };
    let (head, body) = exchange(addr, b"GET /metrics HTTP/1.1\nHost: x\n\n").expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

/// HEAD gets GET's headers, its Content-Length included, and no body.
fn head_is_answered_without_a_body(backend: Backend) {
    let Some((_h, addr)) = start_with_metrics(backend) else { return };
    let (head, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    assert!(length.parse::<usize>().unwrap() > 100, "{head}");
    assert_eq!(body, "", "HEAD has no body");
}

/// A client that sends nothing, and one that trickles a request too slowly, are closed once
/// the request deadline passes: not before, and not long after.
fn silent_and_trickling_clients_are_closed_at_the_deadline(backend: Backend) {
    let Some((_h, addr)) = start_with_metrics(backend) else { return };
    let margin = Duration::from_secs(1);
    let silent = TcpStream::connect(addr).unwrap();
    let trickler = TcpStream::connect(addr).unwrap();
    let connected = Instant::now();
    let mut writer = trickler.try_clone().unwrap();
    // One byte every 200 ms (pacing, not synchronisation): never a whole head.
    let trickle = std::thread::spawn(move || {
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle().take(100) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    for (name, mut s) in [("silent", silent), ("trickling", trickler)] {
        s.set_read_timeout(Some(REQUEST_DEADLINE + margin)).unwrap();
        let got = s.read(&mut [0u8; 64]);
        let waited = connected.elapsed();
        let closed =
            matches!(got, Ok(0)) || matches!(&got, Err(e) if e.kind() == io::ErrorKind::ConnectionReset);
        assert!(closed, "{name}: not closed within {:?}: {got:?}", REQUEST_DEADLINE + margin);
        assert!(waited >= REQUEST_DEADLINE, "{name}: closed after {waited:?}, before the deadline");
        assert!(waited <= REQUEST_DEADLINE + margin, "{name}: closed after {waited:?}");
    }
    trickle.join().unwrap();
}

for_each_backend!(
    metrics_match_stats,
    scrapes_get_through_clients_holding_partial_requests,
    scrapes_get_through_when_descriptors_run_out,
    bare_lf_request_is_answered,
    head_is_answered_without_a_body,
    silent_and_trickling_clients_are_closed_at_the_deadline
);
