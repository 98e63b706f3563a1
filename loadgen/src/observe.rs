//! Readings at the start and the end of the measured window: ringload's worker threads'
//! CPU, the server's (the built-in one in-process, or a remote ringecho's `--metrics`),
//! and the kernel's network counters; their differences make [`crate::views::Views`].
//!
//! A sampler thread waits for the warm-up to end, reads, then re-reads every
//! `POLL` until the window ends (its planned end, or the run's): a worker thread that
//! has already ended keeps its last reading. A remote server is read only twice; one that
//! cannot be read costs a warning, never the run.

use crate::engine::Shared;
use crate::views::{ServerView, SideCpu, Views};
use ringecho::procfs::{self, CpuTime, NetCounters};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often thread CPU is re-read (so that a thread's last figures are recent).
const POLL: Duration = Duration::from_millis(100);
/// The most a `--server-metrics` read may take, connecting included.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `--metrics` answer read.
const MAX_SCRAPE: u64 = 4 << 20;

/// Where the server's figures come from.
pub enum ServerSource {
    /// None.
    None,
    /// The built-in server.
    Builtin(ringecho::StatsSource),
    /// A remote ringecho's `--metrics` URL.
    Remote(String),
}

/// One server reading: each worker's CPU, the process's, and the counters ringload needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerReading {
    /// Per worker, in worker order.
    pub workers: Vec<Option<CpuTime>>,
    /// The process's CPU seconds.
    pub process_cpu_s: Option<f64>,
    /// Receive completions, all workers.
    pub recv_ops: u64,
    /// Datagrams received, all workers.
    pub dgrams_in: u64,
}

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
}

/// Reads `url` (`http://HOST:PORT/metrics`) and picks out ringecho's series.
pub fn scrape(url: &str) -> Result<ServerReading, ScrapeError> {
    let rest = url.strip_prefix("http://").ok_or(ScrapeError::Url)?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if hostport.is_empty() || !hostport.contains(':') || path.contains(char::is_whitespace) {
        return Err(ScrapeError::Url);
    }
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
    parse_metrics(payload).ok_or(ScrapeError::NotRingecho)
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// ringecho's series from a `--metrics` text; `None` when it has no worker CPU series.
pub fn parse_metrics(text: &str) -> Option<ServerReading> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    let mut workers: HashMap<usize, CpuTime> = HashMap::new();
    let mut r = ServerReading::default();
    for s in &scrape.samples {
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if !v.is_finite() || v < 0.0 {
            continue;
        }
        let worker = s.labels.get("worker").and_then(|w| w.parse::<usize>().ok()).filter(|w| *w < 4096);
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
            ("ringecho_recv_ops_total", Some(_)) => r.recv_ops = r.recv_ops.saturating_add(v as u64),
            ("ringecho_dgrams_in_total", Some(_)) => r.dgrams_in = r.dgrams_in.saturating_add(v as u64),
            ("process_cpu_seconds_total", None) => r.process_cpu_s = Some(v),
            _ => {}
        }
    }
    if workers.is_empty() {
        return None;
    }
    let n = workers.keys().max().map_or(0, |m| m + 1);
    r.workers = (0..n).map(|i| workers.get(&i).copied()).collect();
    Some(r)
}

/// One reading of everything.
#[derive(Debug, Clone, Default)]
struct Reading {
    at: Option<Instant>,
    client: Vec<Option<CpuTime>>,
    net: Option<NetCounters>,
    server: Option<(Instant, ServerReading)>,
}

/// The sampler: started before the run, [`Sampler::finish`]ed after.
pub struct Sampler {
    thread: std::thread::JoinHandle<(Reading, Reading, Option<String>)>,
    source_name: Option<String>,
}

/// What the sampler leaves: the figures, and a warning when the server could not be read.
pub struct Observed {
    /// The figures (none when the window never began).
    pub views: Option<Views>,
    /// Why `--server-metrics` gave nothing, when it did not.
    pub server_warning: Option<(String, String)>,
}

impl Sampler {
    /// Starts sampling for the run behind `shared`; `done` is set when the run is over.
    pub fn start(shared: Arc<Shared>, server: ServerSource, done: Arc<AtomicBool>) -> Sampler {
        let source_name = match &server {
            ServerSource::None => None,
            ServerSource::Builtin(_) => Some("built-in".to_string()),
            ServerSource::Remote(url) => Some(url.clone()),
        };
        let thread = std::thread::spawn(move || sample(&shared, &server, &done));
        Sampler { thread, source_name }
    }

    /// Waits for the sampler and turns its readings into views. The verdict is left to
    /// the report ([`crate::report::Report::assess`]), which knows whether an open
    /// loop's client kept to its schedule.
    pub fn finish(self, spin: bool) -> Observed {
        let Ok((first, last, warning)) = self.thread.join() else {
            return Observed { views: None, server_warning: None };
        };
        let server_warning = warning.map(|w| (self.source_name.clone().unwrap_or_default(), w));
        let (Some(t0), Some(t1)) = (first.at, last.at) else {
            return Observed { views: None, server_warning };
        };
        let window = t1.saturating_duration_since(t0).as_secs_f64().max(1e-9);
        let client = side(&first.client, &last.client, window);
        let server = match (&first.server, &last.server) {
            (Some((a_at, a)), Some((b_at, b))) => {
                let w = b_at.saturating_duration_since(*a_at).as_secs_f64().max(1e-9);
                Some(ServerView {
                    source: self.source_name.clone().unwrap_or_default(),
                    cpu: side(&a.workers, &b.workers, w),
                    process_cpu_s: a.process_cpu_s.zip(b.process_cpu_s).map(|(a, b)| (b - a).max(0.0)),
                    recv_ops: b.recv_ops.saturating_sub(a.recv_ops),
                    dgrams_in: b.dgrams_in.saturating_sub(a.dgrams_in),
                })
            }
            _ => None,
        };
        let kernel = match (first.net, last.net) {
            (Some(a), Some(b)) => b.since(&a),
            _ => NetCounters::default(),
        };
        let views = Views {
            window_s: window,
            client,
            server,
            kernel,
            limit: crate::views::Limit::Unknown,
            limit_text: String::new(),
            spin,
        };
        Observed { views: Some(views), server_warning }
    }
}

/// Each worker's CPU between two readings, over `window` seconds.
fn side(first: &[Option<CpuTime>], last: &[Option<CpuTime>], window: f64) -> SideCpu {
    let mut s = SideCpu::default();
    for (a, b) in first.iter().zip(last) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        let d = b.since(a);
        s.cpu_s += d.user_s + d.system_s;
        s.busy.push((d.demand_s() / window).min(1.0));
        s.waiting.push((d.wait_s / window).min(1.0));
    }
    s
}

fn read_server(source: &ServerSource, warning: &mut Option<String>) -> Option<(Instant, ServerReading)> {
    match source {
        ServerSource::None => None,
        ServerSource::Remote(_) if warning.is_some() => None, // the first read failed
        ServerSource::Builtin(stats) => {
            let cpu = stats.cpu();
            let total = stats.snapshot().total;
            let reading = ServerReading {
                workers: cpu.workers,
                process_cpu_s: None, // the process is ringload's too
                recv_ops: total.recv_ops,
                dgrams_in: total.dgrams_in,
            };
            Some((Instant::now(), reading))
        }
        ServerSource::Remote(url) => match scrape(url) {
            Ok(r) => Some((Instant::now(), r)),
            Err(e) => {
                warning.get_or_insert_with(|| e.to_string());
                None
            }
        },
    }
}

fn read_client(shared: &Shared, last: &mut Vec<Option<CpuTime>>) {
    let tids = shared.tids.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let n = tids.iter().map(|(i, _)| i + 1).max().unwrap_or(0);
    last.resize(n.max(last.len()), None);
    for (i, tid) in tids {
        if let Some(c) = procfs::thread_cpu(tid) {
            last[i] = Some(c);
        }
    }
}

fn sample(shared: &Shared, server: &ServerSource, done: &AtomicBool) -> (Reading, Reading, Option<String>) {
    let mut warning = None;
    let nothing = || (Reading::default(), Reading::default(), None);
    let wait_until = |until: Instant| {
        while Instant::now() < until && !done.load(Ordering::Relaxed) {
            std::thread::sleep((until - Instant::now()).min(POLL));
        }
    };
    let start = loop {
        if let Some(s) = shared.start.get() {
            break *s;
        }
        if done.load(Ordering::Relaxed) {
            return nothing();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    wait_until(start + shared.plan.warmup);
    if done.load(Ordering::Relaxed) {
        return nothing();
    }
    // A remote read may take its whole timeout: it must not move the client's window.
    let remote_first = match server {
        ServerSource::Remote(url) => {
            let url = url.clone();
            Some(std::thread::spawn(move || scrape(&url).map(|r| (Instant::now(), r))))
        }
        _ => None,
    };
    let builtin_first = match server {
        ServerSource::Builtin(_) => read_server(server, &mut warning),
        _ => None,
    };
    let mut first = Reading { server: builtin_first, ..Reading::default() };
    read_client(shared, &mut first.client);
    first.net = NetCounters::read();
    first.at = Some(Instant::now());
    let planned_end = shared.plan.duration().map(|d| start + shared.plan.warmup + d);
    let mut last = Reading { client: first.client.clone(), ..Reading::default() };
    let mut builtin_last = None;
    loop {
        let now = Instant::now();
        if done.load(Ordering::Relaxed) || planned_end.is_some_and(|e| now >= e) {
            break;
        }
        let next = (now + POLL).min(planned_end.unwrap_or(now + POLL));
        wait_until(next);
        if done.load(Ordering::Relaxed) && planned_end.is_some() {
            break; // the workers have gone: keep the last readings
        }
        read_client(shared, &mut last.client);
        last.at = Some(Instant::now());
        if matches!(server, ServerSource::Builtin(_)) {
            builtin_last = read_server(server, &mut warning);
        }
    }
    last.net = NetCounters::read();
    if let Some(t) = remote_first {
        match t.join() {
            Ok(Ok(r)) => first.server = Some(r),
            Ok(Err(e)) => warning = Some(e.to_string()),
            Err(_) => warning = Some("the metrics reader failed".into()),
        }
    }
    last.server = match server {
        ServerSource::Builtin(_) => builtin_last.or_else(|| read_server(server, &mut warning)),
        _ => read_server(server, &mut warning),
    };
    if last.at.is_none() {
        read_client(shared, &mut last.client);
        last.at = Some(Instant::now());
    }
    if first.server.is_none() || last.server.is_none() {
        first.server = None;
        last.server = None;
    }
    (first, last, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ringecho_metrics() {
        let text = "# TYPE ringecho_recv_ops counter\nringecho_recv_ops_total{worker=\"0\"} 10\nringecho_recv_ops_total{worker=\"1\"} 5\n\
            ringecho_worker_cpu_seconds_total{worker=\"1\",mode=\"user\"} 1.5\nringecho_worker_cpu_seconds_total{worker=\"1\",mode=\"system\"} 0.5\n\
            ringecho_worker_cpu_wait_seconds_total{worker=\"1\"} 0.25\nprocess_cpu_seconds_total 3\n# EOF\n";
        let r = parse_metrics(text).unwrap();
        assert_eq!(r.recv_ops, 15);
        assert_eq!(r.process_cpu_s, Some(3.0));
        assert_eq!(r.workers.len(), 2);
        assert_eq!(r.workers[0], None);
        let w1 = r.workers[1].unwrap();
        assert_eq!((w1.user_s, w1.system_s, w1.wait_s), (1.5, 0.5, 0.25));
    }

    #[test]
    fn not_ringecho_or_garbage_is_none() {
        assert_eq!(parse_metrics("node_cpu_seconds_total{cpu=\"0\"} 5\n"), None);
        assert_eq!(parse_metrics("<html>hello</html>"), None);
        assert_eq!(parse_metrics(""), None);
        let huge = "ringecho_worker_cpu_seconds_total{worker=\"99999999999\",mode=\"user\"} 1\n";
        assert_eq!(parse_metrics(huge), None, "a worker index past the bound is ignored");
        let nan = "ringecho_worker_cpu_seconds_total{worker=\"0\",mode=\"user\"} NaN\n";
        assert_eq!(parse_metrics(nan), None);
    }

    #[test]
    fn bad_urls_and_unreachable_servers_are_errors() {
        for bad in ["ftp://x:1/", "http://", "http://nohostport/metrics", "http://127.0.0.1:1/a b"] {
            assert!(matches!(scrape(bad), Err(ScrapeError::Url)), "{bad}");
        }
        // Port 1 on loopback: nothing listens there (connection refused at once).
        assert!(matches!(scrape("http://127.0.0.1:1/metrics"), Err(ScrapeError::Io(_))));
    }
}
