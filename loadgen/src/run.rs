//! One run: [`run`] takes a validated plan and returns its [`Report`]. With no target
//! it starts a ringecho server in-process on loopback and measures that, pinned apart
//! from the load when the machine has more than one CPU; around the engine it reads the
//! window's CPU and counters (`observe`), assembles the workers' results into the
//! report, and lets the report and the truth checks (`verdict`) judge it.
//!
//! Invariant: the library never prints: progress goes to the caller's [`Progress`]
//! callback, problems into the report's warnings.

use crate::document::Builtin;
use crate::engine::{self, Breakdown, Live, RunError, Shared, WorkerResult};
use crate::figures::Bulk;
use crate::hist;
use crate::observe;
use crate::plan::{CpuSplit, Plan};
use crate::report::Report;
use crate::target::Target;
use crate::warning::Warning;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A progress line, once a second while the run goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tick {
    /// Connections are being made (before the clock starts).
    Connecting {
        /// Made so far.
        connected: u64,
        /// Planned.
        planned: u32,
    },
    /// The load runs.
    Running {
        /// Seconds since the start (warm-up included).
        elapsed_s: f64,
        /// Messages answered in the last second.
        rate: f64,
        /// Measured messages answered so far.
        completed: u64,
        /// Failed so far.
        failed: u64,
        /// Still in the warm-up.
        warmup: bool,
    },
    /// Bulk connections moved bytes (a bulk mode, or the background flows).
    Bytes {
        /// Seconds since the start (warm-up included).
        elapsed_s: f64,
        /// Bytes sent in the last second.
        sent_per_s: f64,
        /// Bytes received in the last second.
        received_per_s: f64,
        /// Still in the warm-up.
        warmup: bool,
        /// The background flows', beside the measured request/response ones.
        background: bool,
    },
}

/// How the run talks to the person watching.
pub enum Progress {
    /// Nothing.
    Hide,
    /// Calls this once a second with the progress (on a thread of its own).
    Report(Box<dyn FnMut(Tick) + Send>),
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
    start_at: Option<SystemTime>,
) -> Result<Report, RunError> {
    run_until(plan, interrupted, progress, start_at, None)
}

/// The moment a run or a workflow bounded by `max_duration` must be over: that long after
/// now, or after `start_at` (the wait for it is not counted).
pub fn deadline(max_duration: Duration, start_at: Option<SystemTime>) -> Instant {
    let wait = start_at.and_then(|at| at.duration_since(SystemTime::now()).ok()).unwrap_or_default();
    let now = Instant::now();
    now.checked_add(wait.saturating_add(max_duration)).unwrap_or(now + crate::plan::MAX_DURATION)
}

/// [`run_at`], over by `deadline` if that comes before the plan's own `--max-duration`
/// (a workflow's bound: what is left of it). Connecting, the warm-up, the measured part
/// and the drain all end by then: a connect not made has timed out, and the stop comes
/// early enough for the drain.
pub fn run_until(
    plan: Plan,
    interrupted: Arc<AtomicBool>,
    progress: Progress,
    start_at: Option<SystemTime>,
    deadline: Option<Instant>,
) -> Result<Report, RunError> {
    let own = self::deadline(plan.max_duration, start_at);
    let deadline = deadline.map_or(own, |d| d.min(own));
    let mut warnings = Vec::new();
    // Each connection is a descriptor: the soft limit up to the hard one (always allowed;
    // where it cannot be raised, a connect that runs out says so with a hint).
    let _ = ringecho::sys::raise_nofile_limit();
    if let Some(at) = start_at {
        match at.duration_since(SystemTime::now()) {
            Ok(wait) if wait > Duration::from_secs(24 * 3600) => return Err(RunError::StartAtTooFar),
            Ok(_) => {} // the workers connect, then wait for it
            Err(late) => warnings.push(Warning::LateStart { late_s: late.duration().as_secs_f64() }),
        }
    }
    if plan.throughput.zerocopy {
        let features = ringecho::ring::probe().map_err(RunError::Ring)?;
        if !features.send_zc {
            return Err(RunError::NoZerocopy);
        }
    }
    let (target, builtin_server) = match plan.target.clone() {
        Some(t) => (t, None),
        None => {
            let (server, cpus, addr) = start_builtin(&plan)?;
            (Target::Tcp(addr), Some((server, cpus)))
        }
    };
    let workers = plan.cpus.len() + engine::background_workers(&plan).len();
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        target: target.clone(),
        interrupted: interrupted.clone(),
        live: Live {
            connected: AtomicU64::new(0),
            completed: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..workers).map(|_| Default::default()).collect(),
        },
        start: std::sync::OnceLock::new(),
        started_unix: std::sync::OnceLock::new(),
        start_at,
        deadline,
        tids: Default::default(),
    });
    let done = Arc::new(AtomicBool::new(false));
    let server_source = match (&builtin_server, &plan.server_metrics, plan.server_pid) {
        (Some((server, _)), ..) => observe::ServerSource::Builtin(server.stats_source()),
        (None, Some(url), _) => observe::ServerSource::Remote(url.clone()),
        (None, None, Some(pid)) => observe::ServerSource::Pid(pid),
        (None, None, None) => observe::ServerSource::None,
    };
    let sampler = observe::Sampler::start(shared.clone(), server_source, done.clone());
    let progress_thread = match progress {
        Progress::Hide => None,
        Progress::Report(f) => Some(spawn_progress(shared.clone(), done.clone(), f)),
    };
    let results = engine::run(shared.clone());
    done.store(true, Ordering::Relaxed);
    if let Some(t) = progress_thread {
        let _ = t.join();
    }
    let observed = sampler.finish(plan.spin);
    let results = results?;
    let builtin = builtin_server.map(|(server, server_cpus)| {
        // The totals once every worker has stopped: final, not a snapshot of a moment.
        server.shutdown();
        let stats = server.join().total;
        Builtin {
            server_cpus,
            server_bytes_in: stats.bytes_in,
            server_bytes_out: stats.bytes_out,
            server_recv_ops: stats.recv_ops,
        }
    });
    let mut report = assemble(&shared, &results, builtin);
    report.warnings = warnings;
    let mut unpinned: Vec<(usize, &str)> =
        results.iter().filter_map(|r| r.pin_error.as_ref().map(|(cpu, e)| (*cpu, e.as_str()))).collect();
    unpinned.dedup_by_key(|(cpu, _)| *cpu);
    for (cpu, cause) in unpinned {
        report.warnings.push(Warning::PinFailed { cpu, cause: cause.to_owned() });
    }
    report.views = observed.views;
    report.assess();
    if let (true, Some(url)) = (report.builtin.is_some(), &plan.server_metrics) {
        let cause = "ignored: the built-in server's figures are read in-process".to_string();
        report.warnings.push(Warning::ServerMetrics { url: url.clone(), cause });
    }
    if let Some((url, cause)) = observed.server_warning {
        report.warnings.push(Warning::ServerMetrics { url, cause });
    }
    crate::verdict::judge(&mut report, &results);
    Ok(report)
}

/// The report from the workers' results: counters and histograms merged, the measured
/// window decided.
fn assemble(shared: &Shared, results: &[WorkerResult], builtin: Option<Builtin>) -> Report {
    let plan = &shared.plan;
    let mut counters = crate::counters::Counters::default();
    let (mut latency, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut lag = hist::new();
    let mut breakdown = Breakdown::default();
    let mut per_second: std::collections::BTreeMap<u64, (u64, Vec<&str>)> = Default::default();
    let mut load_cpu = Duration::ZERO;
    for r in results {
        load_cpu += r.cpu;
        if r.background {
            continue; // their own figures: `background`
        }
        counters.merge(&r.counters);
        // Every histogram has the same bounds: adding cannot fail.
        let _ = latency.add(&r.latency);
        let _ = service.add(&r.service);
        let _ = lag.add(&r.lag);
        let _ = connect.add(&r.connect);
        breakdown.merge(&r.breakdown);
        for (start_ns, length, h) in &r.intervals {
            let (len, parts) = per_second.entry(*start_ns).or_default();
            *len = (*len).max(*length);
            parts.push(h);
        }
    }
    // One interval at a time: decoded, added across workers, encoded again.
    let intervals =
        per_second.into_iter().map(|(start, (len, parts))| (start, len, sum_encoded(&parts))).collect();
    let interrupted = shared.interrupted.load(Ordering::Relaxed);
    let elapsed = measured_window(plan, results, interrupted);
    let spare_cpus = spare_cpus(plan, builtin.as_ref());
    Report {
        bulk: measured(plan, results, elapsed),
        background: background(plan, results, elapsed),
        plan: plan.clone(),
        target: shared.target.to_string(),
        builtin,
        elapsed,
        counters,
        latency,
        service,
        lag,
        connect,
        intervals,
        load_cpu,
        wall: shared.start.get().map_or(Duration::ZERO, |s| s.elapsed()),
        interrupted,
        warnings: Vec::new(),
        failed_checks: Vec::new(),
        label: None,
        started_unix: shared.started_unix.get().copied().unwrap_or(0.0),
        views: None,
        spare_cpus,
        breakdown,
    }
}

fn figures(plan: &Plan, results: &[WorkerResult], elapsed: Duration, background: bool) -> Bulk {
    let t = &plan.throughput;
    let (mode, connections) =
        if background { (t.background_mode, t.background) } else { (t.mode, plan.connections) };
    let tallies: Vec<_> =
        results.iter().filter(|r| r.background == background).map(|r| (&r.bulk, r.cpu)).collect();
    Bulk::of(mode, connections, t, &tallies, elapsed)
}

/// The measured connections' figures, in a bulk mode.
fn measured(plan: &Plan, results: &[WorkerResult], elapsed: Duration) -> Option<Bulk> {
    plan.throughput.mode.is_bulk().then(|| figures(plan, results, elapsed, false))
}

/// The background flows' figures, when there are some.
fn background(plan: &Plan, results: &[WorkerResult], elapsed: Duration) -> Option<Bulk> {
    (plan.throughput.background > 0).then(|| figures(plan, results, elapsed, true))
}

/// CPUs this process may use that neither the load nor the built-in server used.
fn spare_cpus(plan: &Plan, builtin: Option<&Builtin>) -> usize {
    let allowed = ringecho::sys::allowed_cpus().unwrap_or_default();
    let server = builtin.map_or(&[][..], |b| &b.server_cpus[..]);
    allowed.iter().filter(|c| !plan.cpus.contains(c) && !server.contains(c)).count()
}

/// The sum of encoded histograms (the workers' parts of one interval), encoded. Our own
/// encodings: decoding cannot fail, nor can adding histograms of the same bounds.
fn sum_encoded(parts: &[&str]) -> String {
    let mut sum = hist::new();
    for part in parts {
        if let Ok(h) = hist::decode(part) {
            let _ = hist::add(&mut sum, &h);
        }
    }
    hist::encode(&sum)
}

/// The window the figures cover, after the warm-up: the planned duration; or, when the
/// run ended otherwise (request-bound, interrupted, every connection gone), up to the
/// last answer or the moment the last connection went, whichever is later.
fn measured_window(plan: &Plan, results: &[WorkerResult], interrupted: bool) -> Duration {
    let results: Vec<&WorkerResult> = results.iter().filter(|r| !r.background).collect();
    let last_answer = results.iter().map(|r| r.last_completion).max().unwrap_or(0);
    let workers_alive = results.iter().filter(|r| r.connected > 0);
    let all_gone =
        workers_alive.clone().count() > 0 && workers_alive.clone().all(|r| r.all_gone_at.is_some());
    let gone_at = workers_alive.filter_map(|r| r.all_gone_at).max().unwrap_or(0);
    let since_warmup = |ns: u64| Duration::from_nanos(ns).saturating_sub(plan.warmup);
    // Where the deadline stopped the run (it stops every worker at the same moment).
    let cut_at = results.iter().filter(|r| r.time_limit_hit).map(|r| r.stop_at).max();
    let planned = match (cut_at, plan.duration()) {
        (Some(at), _) => since_warmup(at),
        (None, Some(d)) => d,
        (None, None) => plan.max_duration,
    };
    if all_gone && !interrupted {
        return since_warmup(gone_at.max(last_answer)).min(planned);
    }
    match plan.duration() {
        _ if cut_at.is_some() && !interrupted => planned,
        Some(d) if !interrupted => d,
        _ => since_warmup(last_answer),
    }
}

/// Starts the built-in server on its CPU of the split ([`CpuSplit::server_beside`]: the
/// first allowed CPU the load does not use, else the first allowed CPU).
fn start_builtin(
    plan: &Plan,
) -> Result<(ringecho::ServerHandle, Vec<usize>, std::net::SocketAddr), RunError> {
    let allowed = ringecho::sys::allowed_cpus().unwrap_or_default();
    let server_cpu = CpuSplit::server_beside(&allowed, &plan.cpus);
    let server_cpus: Vec<usize> = server_cpu.into_iter().collect();
    let config = ringecho::Config {
        listen: vec![ringecho::Endpoint {
            listen: ringecho::Listen::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            // The listener the mode measures: discard for send, source for receive.
            mode: plan.throughput.mode.server_mode(),
        }],
        cpus: if server_cpus.is_empty() {
            ringecho::Cpus::Allowed
        } else {
            ringecho::Cpus::List(server_cpus.clone())
        },
        workers: Some(1),
        // The echo server times its own parts when the client times its own: one run then
        // says where each microsecond went on both sides. (Not for the throughput modes'
        // discard and source listeners: they keep the plain receive path.)
        timestamps: plan.timestamps == crate::plan::Timestamps::Kernel
            && plan.throughput.mode.server_mode() == ringecho::Mode::Echo,
        ..ringecho::Config::default()
    };
    let server = ringecho::Server::start(config).map_err(RunError::Builtin)?;
    let addr = server.tcp_addr().ok_or_else(|| RunError::Io {
        step: "the built-in server's address".into(),
        error: std::io::Error::other("no TCP listener"),
    })?;
    Ok((server, server_cpus, addr))
}

/// Calls `report` once a second: while connecting, the connections made; then the rate.
fn spawn_progress(
    shared: Arc<Shared>,
    done: Arc<AtomicBool>,
    mut report: Box<dyn FnMut(Tick) + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let pause = |until: Instant| {
            while Instant::now() < until && !done.load(Ordering::Relaxed) {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
            }
        };
        // Until the clock starts: the connections being made.
        let mut tick = Instant::now() + Duration::from_secs(1);
        let start = loop {
            if let Some(s) = shared.start.get() {
                break *s;
            }
            if done.load(Ordering::Relaxed) {
                return;
            }
            if Instant::now() >= tick {
                let connected = shared.live.connected.load(Ordering::Relaxed);
                report(Tick::Connecting { connected, planned: shared.plan.connections });
                tick += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut tick, mut last) = (start + Duration::from_secs(1), 0u64);
        let measured = shared.plan.cpus.len();
        let t = &shared.plan.throughput;
        // The workers whose bytes the progress shows: the measured ones in a bulk mode,
        // else the background ones.
        let bulk_workers = if t.mode.is_bulk() { 0..measured } else { measured..shared.live.bytes.len() };
        let mut last_bytes = [0u64; 2];
        loop {
            pause(tick);
            if done.load(Ordering::Relaxed) {
                return;
            }
            tick += Duration::from_secs(1);
            let completed: u64 = shared.live.completed.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let failed: u64 = shared.live.failed.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let elapsed_s = start.elapsed().as_secs_f64();
            let warmup = elapsed_s < shared.plan.warmup.as_secs_f64();
            if !bulk_workers.is_empty() {
                let sum = |k: usize| -> u64 {
                    shared.live.bytes[bulk_workers.clone()].iter().map(|b| b[k].load(Ordering::Relaxed)).sum()
                };
                let now = [sum(0), sum(1)];
                report(Tick::Bytes {
                    elapsed_s,
                    sent_per_s: now[0].saturating_sub(last_bytes[0]) as f64,
                    received_per_s: now[1].saturating_sub(last_bytes[1]) as f64,
                    warmup,
                    background: !t.mode.is_bulk(),
                });
                last_bytes = now;
                if t.mode.is_bulk() {
                    continue;
                }
            }
            report(Tick::Running {
                elapsed_s,
                rate: completed.saturating_sub(last) as f64,
                completed,
                failed,
                warmup,
            });
            last = completed;
        }
    })
}
