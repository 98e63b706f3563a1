//! Reading a remote ringecho's `--metrics` page (`--server-metrics`): a plain HTTP GET
//! with one deadline, the Prometheus text parsed by `prometheus-parse`, and ringecho's
//! series picked out. The page is untrusted: a value that is not a finite, non-negative
//! count of a series ringload needs makes the whole reading unusable (never a figure of
//! 0 or infinity), and two readings are used only when they make sense together
//! ([`consistent`]).

use super::reading::{ServerReading, TimingReading};
use ringecho::parthist::{BOUNDS_NS, BUCKETS, Histogram};
use ringecho::procfs::CpuTime;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most a `--server-metrics` read may take, connecting included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `--metrics` answer read.
const MAX_SCRAPE: u64 = 4 << 20;
/// The largest count taken from a page: past 2⁵³ a float no longer counts in ones.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Why `--server-metrics` gave no figures.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL is not `http://HOST:PORT/PATH`.
    #[error("not an http://HOST:PORT/PATH URL")]
    Url,
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Nothing came back in time.
    #[error("no answer within {} s", SCRAPE_TIMEOUT.as_secs())]
    Timeout,
    /// The answer was not `200`.
    #[error("the server answered {0:?}, not a ringecho --metrics page")]
    Status(String),
    /// The answer had no ringecho worker CPU series.
    #[error(
        "no ringecho_worker_cpu_seconds_total series: not a ringecho --metrics endpoint (or one too old)"
    )]
    NotRingecho,
    /// A series ringload needs had a value no counter has.
    #[error("the page gave {value} for {series}: not a count")]
    BadValue {
        /// The series and its labels.
        series: String,
        /// The value as read.
        value: f64,
    },
}

/// The host, port and path of `url` (`http://HOST:PORT[/PATH]`; the path defaults to
/// `/metrics`), checked as `--server-metrics` is given, before any load.
pub fn parse_url(url: &str) -> Result<(&str, &str), ScrapeError> {
    let rest = url.strip_prefix("http://").ok_or(ScrapeError::Url)?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let port_ok = hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok || path.contains(char::is_whitespace) || path.chars().any(char::is_control) {
        return Err(ScrapeError::Url);
    }
    Ok((hostport, path))
}

/// Reads `url` (`http://HOST:PORT/metrics`) and picks out ringecho's series.
pub fn scrape(url: &str) -> Result<ServerReading, ScrapeError> {
    let (hostport, path) = parse_url(url)?;
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let addr = hostport.to_socket_addrs()?.next().ok_or(ScrapeError::Url)?;
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .map_err(|e| if is_timeout(&e) { ScrapeError::Timeout } else { ScrapeError::Io(e) })?;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_write_timeout(Some(left()))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut body = Vec::new();
    loop {
        s.set_read_timeout(Some(left()))?;
        let mut chunk = [0u8; 16384];
        match (&mut s).take(MAX_SCRAPE - body.len() as u64).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A server that keeps the connection open: what came is the answer.
            Err(e) if is_timeout(&e) && !body.is_empty() => break,
            Err(e) if is_timeout(&e) => return Err(ScrapeError::Timeout),
            Err(e) => return Err(e.into()),
        }
        if body.len() as u64 >= MAX_SCRAPE || Instant::now() >= deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(ScrapeError::Status(status.chars().take(80).collect()));
    }
    parse_metrics(payload)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// ringecho's series from a `--metrics` text: an error when it has no worker CPU series,
/// or a value of a series ringload needs that is not a finite count.
pub fn parse_metrics(text: &str) -> Result<ServerReading, ScrapeError> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|_| ScrapeError::NotRingecho)?;
    let mut workers: HashMap<usize, CpuTime> = HashMap::new();
    let mut r = ServerReading::default();
    let mut dgrams = [0u64; 3];
    // Per part (wake, send): the bucket counts and the sum in ns, all workers together. A
    // histogram that cannot be read as ours (other bounds: another version) costs the
    // parts, not the reading.
    let mut parts: [Option<(Vec<u64>, u64)>; 2] = [None, None];
    let mut unreadable = false;
    for s in &scrape.samples {
        if let Some((part, sum)) = timed_part(&s.metric) {
            let worker = s.labels.get("worker").and_then(|w| w.parse::<usize>().ok()).filter(|w| *w < 4096);
            if worker.is_none() {
                continue;
            }
            let (counts, sum_ns) = parts[part].get_or_insert_with(|| (vec![0; BUCKETS], 0));
            match (&s.value, sum) {
                (prometheus_parse::Value::Histogram(buckets), false) => match bucket_counts(buckets) {
                    Some(these) => {
                        for (a, b) in counts.iter_mut().zip(these) {
                            *a = a.saturating_add(b);
                        }
                    }
                    None => unreadable = true,
                },
                (
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v),
                    true,
                ) => {
                    if !(v.is_finite() && (0.0..=MAX_COUNT / 1e9).contains(v)) {
                        unreadable = true;
                        continue;
                    }
                    *sum_ns = sum_ns.saturating_add((v * 1e9).round() as u64);
                }
                _ => {}
            }
            continue;
        }
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let worker = s.labels.get("worker").and_then(|w| w.parse::<usize>().ok()).filter(|w| *w < 4096);
        let needed = matches!(
            (s.metric.as_str(), worker),
            ("ringecho_worker_cpu_seconds_total" | "ringecho_worker_cpu_wait_seconds_total", Some(_))
                | ("process_cpu_seconds_total", None)
        ) || (worker.is_some() && counted(&s.metric).is_some());
        if !needed {
            continue;
        }
        if !(v.is_finite() && (0.0..=MAX_COUNT).contains(&v)) {
            let series = format!("{}{}", s.metric, s.labels);
            return Err(ScrapeError::BadValue { series, value: v });
        }
        match (s.metric.as_str(), worker) {
            ("ringecho_worker_cpu_seconds_total", Some(w)) => {
                let c = workers.entry(w).or_default();
                match s.labels.get("mode") {
                    Some("user") => c.user_s = v,
                    Some("system") => c.system_s = v,
                    _ => {}
                }
            }
            ("ringecho_worker_cpu_wait_seconds_total", Some(w)) => workers.entry(w).or_default().wait_s = v,
            ("process_cpu_seconds_total", None) => r.process_cpu_s = Some(v),
            (metric, Some(_)) => match counted(metric) {
                Some(Count::RecvOps) => r.recv_ops = r.recv_ops.saturating_add(v as u64),
                Some(Count::DgramsIn) => r.dgrams_in = r.dgrams_in.saturating_add(v as u64),
                Some(Count::Echoed) => dgrams[0] = dgrams[0].saturating_add(v as u64),
                Some(Count::Dropped) => dgrams[1] = dgrams[1].saturating_add(v as u64),
                Some(Count::Enobufs) => dgrams[2] = dgrams[2].saturating_add(v as u64),
                None => {}
            },
            _ => {}
        }
    }
    if workers.is_empty() {
        return Err(ScrapeError::NotRingecho);
    }
    let n = workers.keys().max().map_or(0, |m| m + 1);
    r.workers = (0..n).map(|i| workers.get(&i).copied()).collect();
    r.dgrams = Some(dgrams);
    if let ([Some((wake, wake_sum)), Some((send, send_sum))], false) = (parts, unreadable) {
        let wake = Histogram::from_parts(wake, wake_sum);
        let send = Histogram::from_parts(send, send_sum);
        // Counts that overflow together are no figures: the parts are left out.
        r.timing = wake.ok().zip(send.ok()).map(|(wake, send)| TimingReading { wake, send });
    }
    Ok(r)
}

/// A series of the server's timed parts (`ringecho --timestamps`): which part (0 wake,
/// 1 send), and whether it is the histogram's `_sum` (else its buckets, or its `_count`,
/// which the buckets already hold).
fn timed_part(metric: &str) -> Option<(usize, bool)> {
    let (name, sum) = match metric.rsplit_once("_seconds") {
        Some((name, "")) | Some((name, "_count")) => (name, false),
        Some((name, "_sum")) => (name, true),
        _ => return None,
    };
    match name {
        "ringecho_server_wake" => Some((0, sum)),
        "ringecho_server_send" => Some((1, sum)),
        _ => None,
    }
}

/// A scraped histogram's cumulative buckets as counts per bucket of
/// [`ringecho::parthist`]: `None` unless its bounds are exactly those (one `le` per
/// bound, within rounding, and `+Inf`), and its counts whole, finite and never falling.
fn bucket_counts(buckets: &[prometheus_parse::HistogramCount]) -> Option<Vec<u64>> {
    if buckets.len() != BUCKETS {
        return None;
    }
    let mut sorted: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut counts = Vec::with_capacity(BUCKETS);
    let mut below = 0.0;
    for (i, (le, cumulative)) in sorted.into_iter().enumerate() {
        let bound_ok = match BOUNDS_NS.get(i) {
            Some(&b) => (le * 1e9 - b as f64).abs() <= 0.5 + b as f64 * 1e-9,
            None => le == f64::INFINITY,
        };
        if !bound_ok || !cumulative.is_finite() || cumulative < below || cumulative > MAX_COUNT {
            return None;
        }
        counts.push((cumulative - below) as u64);
        below = cumulative;
    }
    Some(counts)
}

/// The per-worker counters ringload sums.
enum Count {
    RecvOps,
    DgramsIn,
    Echoed,
    Dropped,
    Enobufs,
}

fn counted(metric: &str) -> Option<Count> {
    Some(match metric {
        "ringecho_recv_ops_total" => Count::RecvOps,
        "ringecho_dgrams_in_total" => Count::DgramsIn,
        "ringecho_dgrams_echoed_total" => Count::Echoed,
        "ringecho_dgram_drop_truncated_total"
        | "ringecho_dgram_drop_rate_limited_total"
        | "ringecho_dgram_drop_unanswerable_total"
        | "ringecho_dgram_drop_send_error_total" => Count::Dropped,
        "ringecho_enobufs_total" => Count::Enobufs,
        _ => return None,
    })
}

/// Whether two readings `window_s` apart make sense together: every counter only grew,
/// and no worker used more CPU than the window had (with a little slack for the two
/// reads' own timing). Two readings that do not are no figures at all.
pub fn consistent(a: &ServerReading, b: &ServerReading, window_s: f64) -> Result<(), String> {
    let room = window_s * 1.1 + 0.05;
    for (i, (x, y)) in a.workers.iter().zip(&b.workers).enumerate() {
        let (Some(x), Some(y)) = (x, y) else { continue };
        for (what, before, after) in
            [("CPU", x.user_s + x.system_s, y.user_s + y.system_s), ("wait", x.wait_s, y.wait_s)]
        {
            let grew = after - before;
            if !grew.is_finite() || grew < 0.0 {
                return Err(format!(
                    "worker {i}'s {what} seconds went from {before} to {after}: a counter that does not only grow"
                ));
            }
            if grew > room {
                return Err(format!(
                    "worker {i}'s {what} seconds grew by {grew:.3} in a {window_s:.3} s window: more than a thread can use"
                ));
            }
        }
    }
    let counts =
        [("receive completions", a.recv_ops, b.recv_ops), ("datagrams in", a.dgrams_in, b.dgrams_in)];
    for (what, before, after) in counts {
        if after < before {
            return Err(format!(
                "its {what} went from {before} to {after}: a counter that does not only grow"
            ));
        }
    }
    if let (Some(x), Some(y)) = (a.process_cpu_s, b.process_cpu_s) {
        if y < x {
            return Err(format!("its process CPU seconds went from {x} to {y}"));
        }
    }
    if let (Some(x), Some(y)) = (&a.timing, &b.timing) {
        if y.wake.since(&x.wake).is_err() || y.send.since(&x.send).is_err() {
            return Err(
                "its timed parts (--timestamps) went back: a server restarted between the readings?".into()
            );
        }
    }
    Ok(())
}
