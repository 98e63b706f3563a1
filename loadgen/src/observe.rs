//! Readings at the start and the end of the measured window: ringload's worker threads'
//! CPU, the server's (the built-in one in-process, a remote ringecho's `--metrics`, or a
//! local process's threads with `--server-pid`), every other process's CPU (to name what
//! ran beside the load), and the kernel's network counters; their differences make
//! [`crate::views::Views`].
//!
//! A sampler thread waits for the warm-up to end, reads, then re-reads every `POLL`
//! until the window ends (its planned end, or the run's): a worker thread that has
//! already ended keeps its last reading. A remote server is read only twice; one that
//! cannot be read, or whose two readings do not make sense together, costs a warning and
//! its figures, never the run.

mod procs;
mod reading;
mod scrape;

pub use procs::process_cpu;
pub use reading::{ServerReading, TimingReading};
pub use scrape::{ScrapeError, parse_metrics, parse_url, scrape};

use crate::engine::Shared;
use crate::views::{Limit, PartFigures, ServerDgrams, ServerTiming, ServerView, SideCpu, Views};
use ringecho::procfs::{self, CpuTime, NetCounters};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often thread CPU is re-read (so that a thread's last figures are recent).
const POLL: Duration = Duration::from_millis(100);

/// Where the server's figures come from.
pub enum ServerSource {
    /// None.
    None,
    /// The built-in server.
    Builtin(ringecho::StatsSource),
    /// A remote ringecho's `--metrics` URL.
    Remote(String),
    /// A server process on this machine (`--server-pid`): its threads.
    Pid(u32),
}

/// One reading of everything.
#[derive(Debug, Clone, Default)]
struct Reading {
    at: Option<Instant>,
    client: Vec<Option<CpuTime>>,
    net: Option<NetCounters>,
    server: Option<(Instant, ServerReading)>,
    /// Every process's name and CPU seconds.
    procs: HashMap<u32, (String, f64)>,
}

/// The sampler: started before the run, [`Sampler::finish`]ed after.
pub struct Sampler {
    thread: std::thread::JoinHandle<(Reading, Reading, Option<String>)>,
    source_name: Option<String>,
    server_pid: Option<u32>,
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
            ServerSource::Pid(pid) => Some(format!("pid {pid}")),
        };
        let server_pid = match &server {
            ServerSource::Pid(pid) => Some(*pid),
            _ => None,
        };
        let thread = std::thread::spawn(move || sample(&shared, &server, &done));
        Sampler { thread, source_name, server_pid }
    }

    /// Waits for the sampler and turns its readings into views. The verdict is left to
    /// the report ([`crate::report::Report::assess`]), which knows whether an open
    /// loop's client kept to its schedule.
    pub fn finish(self, spin: bool) -> Observed {
        let Ok((first, last, warning)) = self.thread.join() else {
            return Observed { views: None, server_warning: None };
        };
        let source = self.source_name.clone().unwrap_or_default();
        let mut server_warning = warning.map(|w| (source.clone(), w));
        let (Some(t0), Some(t1)) = (first.at, last.at) else {
            return Observed { views: None, server_warning };
        };
        let window = t1.saturating_duration_since(t0).as_secs_f64().max(1e-9);
        let client = side(&first.client, &last.client, window);
        let server = match (&first.server, &last.server) {
            (Some((a_at, a)), Some((b_at, b))) => {
                let w = b_at.saturating_duration_since(*a_at).as_secs_f64().max(1e-9);
                let b = &a.matched(b);
                match scrape::consistent(a, b, w) {
                    Ok(()) => Some(server_view(source.clone(), a, b, w)),
                    Err(why) => {
                        server_warning =
                            Some((source.clone(), format!("its two readings do not add up: {why}")));
                        None
                    }
                }
            }
            _ => None,
        };
        let ours: Vec<u32> = std::iter::once(std::process::id()).chain(self.server_pid).collect();
        let others = procs::others(&first.procs, &last.procs, window, &ours);
        let kernel = match (first.net, last.net) {
            (Some(a), Some(b)) => b.since(&a),
            _ => NetCounters::default(),
        };
        let views = Views {
            window_s: window,
            client,
            server,
            kernel,
            others,
            limit: Limit::Unknown,
            limit_text: String::new(),
            spin,
        };
        Observed { views: Some(views), server_warning }
    }
}

/// The server's side between two readings `window` seconds apart.
fn server_view(source: String, a: &ServerReading, b: &ServerReading, window: f64) -> ServerView {
    let dgrams = a.dgrams.zip(b.dgrams).map(|(a, b)| ServerDgrams {
        echoed: b[0].saturating_sub(a[0]),
        dropped: b[1].saturating_sub(a[1]),
        enobufs: b[2].saturating_sub(a[2]),
    });
    ServerView {
        source,
        cpu: side(&a.workers, &b.workers, window),
        process_cpu_s: a.process_cpu_s.zip(b.process_cpu_s).map(|(a, b)| (b - a).max(0.0)),
        recv_ops: b.recv_ops.saturating_sub(a.recv_ops),
        dgrams_in: b.dgrams_in.saturating_sub(a.dgrams_in),
        dgrams,
        timing: timing(a.timing.as_ref(), b.timing.as_ref()),
    }
}

/// The server's parts between two readings; none unless both have them and the second
/// only grew from the first ([`scrape::consistent`] refuses the readings otherwise).
fn timing(a: Option<&TimingReading>, b: Option<&TimingReading>) -> Option<ServerTiming> {
    let (a, b) = (a?, b?);
    Some(ServerTiming {
        wake: PartFigures::of(&b.wake.since(&a.wake).ok()?),
        send: PartFigures::of(&b.send.since(&a.send).ok()?),
    })
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
            let snapshot = stats.snapshot();
            let total = snapshot.total;
            let timing = snapshot.timing.map(|_| {
                let all = ringecho::stats::Parts::sum(&snapshot.parts);
                TimingReading { wake: all.wake, send: all.send }
            });
            let dropped = total.dgram_drop_truncated
                + total.dgram_drop_rate_limited
                + total.dgram_drop_unanswerable
                + total.dgram_drop_send_error;
            let reading = ServerReading {
                workers: cpu.workers,
                process_cpu_s: None, // the process is ringload's too
                recv_ops: total.recv_ops,
                dgrams_in: total.dgrams_in,
                dgrams: Some([total.dgrams_echoed, dropped, total.enobufs]),
                tids: Vec::new(),
                timing,
            };
            Some((Instant::now(), reading))
        }
        ServerSource::Pid(pid) => {
            let threads = procs::threads(*pid);
            if threads.is_empty() {
                warning.get_or_insert_with(|| format!("no process {pid} to read"));
                return None;
            }
            let reading = ServerReading {
                tids: threads.iter().map(|(tid, _)| *tid).collect(),
                workers: threads.into_iter().map(|(_, c)| Some(c)).collect(),
                process_cpu_s: process_cpu(*pid).map(|d| d.as_secs_f64()),
                ..ServerReading::default()
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
    let local_first = match server {
        ServerSource::Builtin(_) | ServerSource::Pid(_) => read_server(server, &mut warning),
        _ => None,
    };
    let mut first = Reading { server: local_first, procs: procs::all(), ..Reading::default() };
    read_client(shared, &mut first.client);
    first.net = NetCounters::read();
    first.at = Some(Instant::now());
    let planned_end = shared.plan.duration().map(|d| start + shared.plan.warmup + d);
    let mut last = Reading { client: first.client.clone(), ..Reading::default() };
    let mut local_last = None;
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
        if matches!(server, ServerSource::Builtin(_) | ServerSource::Pid(_)) {
            // Re-read, so a server whose threads end keeps its last figures.
            local_last = read_server(server, &mut warning).or(local_last);
        }
    }
    last.net = NetCounters::read();
    last.procs = procs::all();
    if let Some(t) = remote_first {
        match t.join() {
            Ok(Ok(r)) => first.server = Some(r),
            Ok(Err(e)) => warning = Some(e.to_string()),
            Err(_) => warning = Some("the metrics reader failed".into()),
        }
    }
    last.server = match server {
        ServerSource::Builtin(_) | ServerSource::Pid(_) => {
            local_last.or_else(|| read_server(server, &mut warning))
        }
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

    /// `ringecho --timestamps`' histograms, as its `--metrics` renders them, read back
    /// bucket by bucket and summed over the workers; a histogram with other bounds is
    /// refused, not misread.
    #[test]
    fn reads_the_servers_timed_parts_as_rendered() {
        use ringecho::parthist::Histogram;
        use ringecho::stats::{Counters, Parts, Snapshot};
        let mut parts = vec![Parts::default(), Parts::default()];
        for (i, v) in [300u64, 5_000, 40_000, 2_000_000, 1 << 40].into_iter().enumerate() {
            parts[i % 2].wake.record(v);
            parts[1].send.record(v / 2);
        }
        let snapshot = Snapshot {
            total: Counters::default(),
            per_worker: vec![Counters::default(); 2],
            timing: None,
            parts: parts.clone(),
        };
        let cpu =
            ringecho::cpu::ServerCpu { workers: vec![Some(CpuTime::default()); 2], ..Default::default() };
        let observed = ringecho::metrics::Observed { cpu, net: None };
        let process = ringecho::metrics::ProcessStats::default();
        let text = ringecho::metrics::render_observed(&snapshot, &process, "uring", &observed);
        let t = parse_metrics(&text).unwrap().timing.expect("the parts are read");
        let (mut wake, mut send) = (Histogram::default(), Histogram::default());
        for p in &parts {
            wake.merge(&p.wake);
            send.merge(&p.send);
        }
        for (read, truth) in [(&t.wake, &wake), (&t.send, &send)] {
            assert_eq!(read.counts(), truth.counts());
            let sum_error = (read.sum_ns() as f64 - truth.sum_ns() as f64).abs();
            assert!(
                sum_error <= truth.sum_ns() as f64 * 1e-12 + 1.0,
                "{} vs {}",
                read.sum_ns(),
                truth.sum_ns()
            );
        }
        // Other bounds (another version's): the parts are left out, the rest is read.
        let first = "ringecho_server_wake_seconds_bucket{le=\"";
        let at = text.find(first).unwrap() + first.len();
        let end = at + text[at..].find('"').unwrap();
        let moved = format!("{}0.5{}", &text[..at], &text[end..]);
        let r = parse_metrics(&moved).unwrap();
        assert_eq!((r.timing, r.workers.len()), (None, 2));
        // A server without --timestamps: no parts, and no error.
        let plain = Snapshot { parts: Vec::new(), ..snapshot };
        let text = ringecho::metrics::render_observed(&plain, &process, "uring", &observed);
        assert_eq!(parse_metrics(&text).unwrap().timing, None);
    }

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
    fn not_ringecho_or_garbage_is_an_error() {
        let not = |t: &str| matches!(parse_metrics(t), Err(ScrapeError::NotRingecho));
        assert!(not("node_cpu_seconds_total{cpu=\"0\"} 5\n"));
        assert!(not("<html>hello</html>"));
        assert!(not(""));
        let huge = "ringecho_worker_cpu_seconds_total{worker=\"99999999999\",mode=\"user\"} 1\n";
        assert!(not(huge), "a worker index past the bound is ignored");
        for bad in ["NaN", "+Inf", "-1", "1.7e308"] {
            let text = format!("ringecho_worker_cpu_seconds_total{{worker=\"0\",mode=\"user\"}} {bad}\n");
            assert!(matches!(parse_metrics(&text), Err(ScrapeError::BadValue { .. })), "{bad}");
        }
    }

    /// Item 6 of issue 23: a second scrape that jumps or goes back is no figure at all.
    #[test]
    fn readings_that_do_not_add_up_are_refused() {
        let at = |cpu: f64, recv: u64| ServerReading {
            workers: vec![Some(CpuTime { user_s: cpu, system_s: 0.0, wait_s: 0.0, ..CpuTime::default() })],
            recv_ops: recv,
            ..ServerReading::default()
        };
        assert!(scrape::consistent(&at(1.0, 10), &at(1.9, 20), 1.0).is_ok());
        let jump = scrape::consistent(&at(1.0, 10), &at(1e12, 20), 1.0).unwrap_err();
        assert!(jump.contains("more than a thread can use"), "{jump}");
        let back = scrape::consistent(&at(5.0, 10), &at(1.0, 20), 1.0).unwrap_err();
        assert!(back.contains("does not only grow"), "{back}");
        assert!(
            scrape::consistent(&at(1.0, 10), &at(1.5, 3), 1.0).unwrap_err().contains("receive completions")
        );
    }

    #[test]
    fn bad_urls_and_unreachable_servers_are_errors() {
        for bad in
            ["ftp://x:1/", "http://", "http://nohostport/metrics", "http://127.0.0.1:1/a b", "127.0.0.1:9107"]
        {
            assert!(matches!(scrape(bad), Err(ScrapeError::Url)), "{bad}");
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        // Port 1 on loopback: nothing listens there (connection refused at once).
        assert!(matches!(scrape("http://127.0.0.1:1/metrics"), Err(ScrapeError::Io(_))));
    }
}
