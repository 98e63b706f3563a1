//! ringload: an io_uring load generator for echo servers, with latency measured from
//! each message's intended send time (no coordinated omission).
//!
//! [`run`] takes a validated [`Plan`] and returns a [`Report`]; with no target it starts
//! a ringecho server in-process on loopback and measures that, pinned apart from the load
//! when the machine has more than one CPU.
#![deny(missing_docs)]

pub mod cli;
pub mod counters;
pub mod document;
pub mod engine;
pub mod header;
pub mod hist;
pub mod payload;
pub mod plan;
pub mod plot;
pub mod report;
pub mod results;
pub mod target;

pub use document::ResultDoc;
pub use plan::{Model, Plan, SizeSpec, Stop};
pub use report::Report;
pub use target::Target;

use engine::{Live, RunError, Shared};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How the run talks to the person watching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A line per second on stderr.
    Show,
    /// Nothing.
    Hide,
    /// A line per second when stderr is a terminal.
    Auto,
}

/// Runs `plan`. `interrupted` may be set (by a Ctrl-C handler) to stop early; the report
/// then covers what ran.
pub fn run(plan: Plan, interrupted: Arc<AtomicBool>, progress: Progress) -> Result<Report, RunError> {
    run_at(plan, interrupted, progress, None)
}

/// [`run`], but the load starts at `start_at` (the built-in server and the connections
/// are set up first, so every machine's first message goes out at that moment).
pub fn run_at(
    plan: Plan,
    interrupted: Arc<AtomicBool>,
    progress: Progress,
    start_at: Option<std::time::SystemTime>,
) -> Result<Report, RunError> {
    let mut plan = plan;
    let mut builtin_server = None;
    let target = match &plan.target {
        Some(t) => t.clone(),
        None => {
            let (server, server_cpus, load_cpus) = start_builtin(&plan)?;
            plan.cpus = load_cpus;
            let addr =
                server.tcp_addr().ok_or_else(|| RunError::Setup("built-in server has no address".into()))?;
            builtin_server = Some((server, server_cpus));
            Target::Tcp(addr)
        }
    };
    let workers = plan.cpus.len();
    let live = Live {
        completed: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        failed: (0..workers).map(|_| AtomicU64::new(0)).collect(),
    };
    if let Some(at) = start_at {
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(wait) if wait > Duration::from_secs(24 * 3600) => {
                return Err(RunError::Setup("--start-at is more than a day away".into()));
            }
            Ok(_) => {} // the workers connect, then wait for it
            Err(late) => eprintln!(
                "warning: --start-at passed {:.3} s ago; starting now",
                late.duration().as_secs_f64()
            ),
        }
    }
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        target: target.clone(),
        interrupted: interrupted.clone(),
        live,
        start: std::sync::OnceLock::new(),
        started_unix: std::sync::OnceLock::new(),
        start_at,
    });
    let show = match progress {
        Progress::Show => true,
        Progress::Hide => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    let done = Arc::new(AtomicBool::new(false));
    let progress_thread = show.then(|| spawn_progress(shared.clone(), done.clone()));
    let results = engine::run(shared.clone());
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    let results = results?;
    let wall = shared.start.get().map_or(Duration::ZERO, |s| s.elapsed());
    let started_unix = shared.started_unix.get().copied().unwrap_or(0.0);

    let mut counters = engine::Counters::default();
    let (mut latency, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut intervals: Vec<(u64, u64, hist::Hist)> = Vec::new();
    let mut load_cpu = Duration::ZERO;
    for r in &results {
        counters.merge(&r.counters);
        let _ = latency.add(&r.latency);
        let _ = service.add(&r.service);
        let _ = connect.add(&r.connect);
        load_cpu += r.cpu;
        for (start_ns, length, h) in &r.intervals {
            match intervals.iter_mut().find(|(s, _, _)| s == start_ns) {
                Some((_, len, acc)) => {
                    *len = (*len).max(*length);
                    let _ = acc.add(h);
                }
                None => intervals.push((*start_ns, *length, h.clone())),
            }
        }
    }
    intervals.sort_by_key(|(s, _, _)| *s);
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    // The measured window: the planned duration, or (request-bound or interrupted) from
    // the end of the warm-up to the last answer.
    let last = results.iter().map(|r| r.last_completion).max().unwrap_or(0);
    let measured = match plan.duration() {
        Some(d) if !was_interrupted => d,
        _ => Duration::from_nanos(last).saturating_sub(plan.warmup),
    };
    let builtin = builtin_server.map(|(server, server_cpus)| {
        let stats = server.stats().total;
        server.shutdown();
        let _ = server.join();
        report::Builtin { server_cpus, server_bytes_in: stats.bytes_in, server_bytes_out: stats.bytes_out }
    });
    let mut report = Report {
        plan,
        target: target.to_string(),
        builtin,
        elapsed: measured,
        counters,
        latency,
        service,
        connect,
        intervals,
        load_cpu,
        wall,
        interrupted: was_interrupted,
        warnings: Vec::new(),
        failed_checks: Vec::new(),
        label: None,
        started_unix,
    };
    report.assess();
    Ok(report)
}

/// Starts the built-in server: on the first allowed CPU, with the load on the others
/// (when there are others).
fn start_builtin(plan: &Plan) -> Result<(ringecho::ServerHandle, Vec<usize>, Vec<usize>), RunError> {
    let allowed = ringecho::sys::allowed_cpus().unwrap_or_default();
    let server_cpu =
        allowed.iter().copied().find(|c| !plan.cpus.contains(c)).or_else(|| allowed.first().copied());
    let server_cpus: Vec<usize> = server_cpu.into_iter().collect();
    let load_cpus = plan.cpus.clone();
    let config = ringecho::Config {
        listen: vec![ringecho::Listen::Tcp("127.0.0.1:0".parse().expect("literal address")).into()],
        cpus: if server_cpus.is_empty() {
            ringecho::Cpus::Allowed
        } else {
            ringecho::Cpus::List(server_cpus.clone())
        },
        workers: Some(1),
        ..ringecho::Config::default()
    };
    let server =
        ringecho::Server::start(config).map_err(|e| RunError::Setup(format!("built-in server: {e}")))?;
    Ok((server, server_cpus, load_cpus))
}

fn spawn_progress(shared: Arc<Shared>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = 0u64;
        // Wait for the workers to connect and start the clock.
        let start = loop {
            if let Some(s) = shared.start.get() {
                break *s;
            }
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut tick = start + Duration::from_secs(1);
        while !done.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < tick {
                std::thread::sleep((tick - now).min(Duration::from_millis(50)));
                continue;
            }
            tick += Duration::from_secs(1);
            let completed: u64 = shared.live.completed.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let failed: u64 = shared.live.failed.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let secs = start.elapsed().as_secs_f64();
            let phase = if secs < shared.plan.warmup.as_secs_f64() { " (warm-up)" } else { "" };
            eprintln!(
                "[{secs:5.1}s] {}{phase}, {completed} answered, {failed} failed",
                report::rate((completed - last) as f64)
            );
            last = completed;
        }
    })
}
