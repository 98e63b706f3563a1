//! `--metrics`: Prometheus text over HTTP whose counters match the stats API.

mod util;

use ringecho::Backend;
use std::io::{Read, Write};
use std::time::Duration;
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

/// Parses the exposition text: every sample line is `name{labels} value`; returns
/// (name, labels, value) triples.
fn parse(body: &str) -> Vec<(String, String, f64)> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name {name:?}");
            (name.to_owned(), labels.trim_end_matches('}').to_owned(), value.parse().expect("numeric value"))
        })
        .collect()
}

fn metrics_match_stats(backend: Backend) {
    let Some(h) = start(backend, |c| c.metrics = Some("127.0.0.1:0".parse().unwrap())) else { return };
    let data = payload(1, 100_000);
    assert!(echo_full_duplex(connect(h.tcp_addr().unwrap()), data.clone()).unwrap() == data);
    assert_settled(&h);
    let addr = h.metrics_addr().unwrap();
    let (head, body) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let samples = parse(&body);
    let total = h.stats().total;
    let find = |name: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == "worker=\"all\"")
            .unwrap_or_else(|| panic!("no {name}"))
            .2 as u64
    };
    assert_eq!(find("ringecho_bytes_in_total"), total.bytes_in);
    assert_eq!(find("ringecho_bytes_out_total"), total.bytes_out);
    assert_eq!(find("ringecho_accepted_total"), total.accepted);
    assert_eq!(find("ringecho_open"), total.open);
    assert!(body.ends_with("# EOF\n"));
    let (head, _) = get(addr, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // A scraper that connects and says nothing does not block the next one for long.
    let _idle = std::net::TcpStream::connect(addr).unwrap();
    let t0 = std::time::Instant::now();
    let (head, _) = get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

for_each_backend!(metrics_match_stats);
