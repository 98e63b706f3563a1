//! `--metrics ADDR`: the server's counters in the Prometheus text format over HTTP, per
//! worker and in total, for capacity-test dashboards. The exposition format comes from
//! `prometheus-client`; the HTTP side is one thread answering `GET /metrics`, one request
//! at a time, with read timeouts and a bounded request size, so a slow or hostile scraper
//! costs one thread, never memory.

use crate::stats::{Counters, FIELDS, Snapshot};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: String,
}

/// Renders a snapshot: each figure once per worker (label `worker`) and once in total
/// (`worker="all"`).
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("ringecho");
    let rows: Vec<(String, &Counters)> = snapshot
        .per_worker
        .iter()
        .enumerate()
        .map(|(i, c)| (i.to_string(), c))
        .chain(std::iter::once(("all".to_string(), &snapshot.total)))
        .collect();
    for (i, (name, help, gauge)) in FIELDS.iter().enumerate() {
        let value = |c: &Counters| c.fields()[i].1;
        if *gauge {
            let family = Family::<Worker, Gauge>::default();
            for (w, c) in &rows {
                family.get_or_create(&Worker { worker: w.clone() }).set(value(c) as i64);
            }
            registry.register(*name, *help, family);
        } else {
            let family = Family::<Worker, Counter>::default();
            for (w, c) in &rows {
                family.get_or_create(&Worker { worker: w.clone() }).inc_by(value(c));
            }
            registry.register(*name, *help, family);
        }
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `addr` until `stop` is set; returns the bound address.
pub fn serve(
    addr: SocketAddr,
    snapshot: impl Fn() -> Snapshot + Send + 'static,
    stop: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    // accept() returns every 200 ms so the thread notices `stop`.
    socket2::SockRef::from(&listener).set_read_timeout(Some(Duration::from_millis(200)))?;
    let thread = std::thread::Builder::new().name("ringecho-metrics".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            if let Ok((conn, _)) = listener.accept() {
                let _ = answer(conn, &snapshot);
            }
        }
    })?;
    Ok((bound, thread))
}

fn answer(mut conn: TcpStream, snapshot: &impl Fn() -> Snapshot) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 || req.len() + n > 8192 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = req.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", render(&snapshot()))
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_string())
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let w = Counters { bytes_in: 7, open: 2, ..Counters::default() };
        let s = Snapshot { total: w, per_worker: vec![w] };
        let text = render(&s);
        assert!(text.contains("# TYPE ringecho_bytes_in counter"), "{text}");
        assert!(text.contains("ringecho_bytes_in_total{worker=\"all\"} 7"), "{text}");
        assert!(text.contains("# TYPE ringecho_open gauge"), "{text}");
        assert!(text.contains("ringecho_open{worker=\"0\"} 2"), "{text}");
    }
}
