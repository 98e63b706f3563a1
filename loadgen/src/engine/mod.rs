//! The load engine: one pinned worker per CPU, each with its own io_uring and its share
//! of the connections; per-worker histograms merged at the end.
//!
//! Map: `worker` runs one worker's loop over a `transport::Transport` (`stream` for TCP
//! and Unix stream, `dgram` for UDP and Unix datagram); `token` is the one layout of every
//! operation's `user_data`; the `Clock` below schedules, `recorder` measures.
//!
//! Time: every timestamp is nanoseconds since the common start instant, read once per
//! loop turn. A message's latency is measured from its *intended* send time (open loop:
//! when the schedule said it was due; closed loop: when the previous reply freed its
//! slot), so a stalled server shows up in full (no coordinated omission); the service
//! time from the actual send is recorded beside it.

mod bulk;
mod dgram;
mod recorder;
mod stream;
mod token;
mod transport;
mod worker;

pub use crate::counters::Counters;
use crate::hist::Hist;
use crate::plan::{Model, Plan, Stop};
use crate::target::Target;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What one worker measured.
pub struct WorkerResult {
    /// Counts.
    pub counters: Counters,
    /// Latency from the intended send time.
    pub latency: Hist,
    /// Latency from the actual send (service time).
    pub service: Hist,
    /// Open loop: how late each measured message was handed out after its intended
    /// send time (the client's own lag behind its schedule).
    pub lag: Hist,
    /// Per-second latency histograms: (start and length in ns since the run began,
    /// histogram); the last one may be shorter than a second.
    pub intervals: Vec<(u64, u64, String)>,
    /// CPU time the worker thread used.
    pub cpu: Duration,
    /// Connection set-up latencies (ns), one per connection.
    pub connect: Hist,
    /// When the last measured message was answered (ns since the run began).
    pub last_completion: u64,
    /// Connections this worker made at the start.
    pub connected: usize,
    /// Why its first connection failed, if one did.
    pub connect_error: Option<std::io::Error>,
    /// When (ns) the run stopped because every connection was gone, if it did.
    pub all_gone_at: Option<u64>,
    /// A request-bound run stopped at `--max-duration` before handing out its requests.
    pub time_limit_hit: bool,
    /// The largest datagram answered, and the smallest lost (bytes; datagram runs).
    pub sizes: SizeFates,
    /// Bulk connections: bytes per second of the window, window CPU.
    pub bulk: crate::throughput::figures::Tally,
    /// The worker ran background flows (`--background`), not the measured connections.
    pub background: bool,
}

/// Which datagram sizes were answered and which were lost: a target with a size limit
/// answers the small ones only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeFates {
    /// The largest datagram answered in full (0: none).
    pub answered_max: u32,
    /// The smallest datagram lost (`u32::MAX`: none).
    pub lost_min: u32,
}

impl Default for SizeFates {
    fn default() -> Self {
        SizeFates { answered_max: 0, lost_min: u32::MAX }
    }
}

impl SizeFates {
    /// Both workers' fates together.
    pub fn merge(&mut self, o: &SizeFates) {
        self.answered_max = self.answered_max.max(o.answered_max);
        self.lost_min = self.lost_min.min(o.lost_min);
    }
}

/// Live figures the workers publish for the progress line.
#[derive(Default)]
pub struct Live {
    /// Connections made so far (before the clock starts), all workers together.
    pub connected: AtomicU64,
    /// Measured messages completed so far, per worker.
    pub completed: Vec<AtomicU64>,
    /// Failures so far, per worker.
    pub failed: Vec<AtomicU64>,
    /// Bytes sent and received so far (warm-up included), per worker: the measured
    /// workers first, then the background ones.
    pub bytes: Vec<[AtomicU64; 2]>,
}

/// Why the run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target cannot be reached.
    #[error("cannot connect to {target}: {error} ({})", crate::verdict::connect_hint(error))]
    Connect {
        /// The target.
        target: String,
        /// The first error seen.
        error: std::io::Error,
    },
    /// A worker's io_uring could not be set up.
    #[error("setting up a load worker's io_uring")]
    Ring(#[source] ringecho::ring::UringError),
    /// The ring refused an operation (the kernel stopped taking submissions).
    #[error("a load worker's io_uring refused an operation")]
    Push(#[source] ringecho::ring::PushError),
    /// A system call of the run failed.
    #[error("{step}")]
    Io {
        /// What was being done.
        step: String,
        /// Why it failed.
        #[source]
        error: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("a load worker panicked")]
    WorkerPanicked,
    /// The built-in server could not start.
    #[error("starting the built-in ringecho server")]
    Builtin(#[source] ringecho::StartError),
    /// `--start-at` is too far away.
    #[error("--start-at is more than a day away")]
    StartAtTooFar,
    /// `--zerocopy` where the kernel's io_uring has no SEND_ZC (Linux 6.0+).
    #[error(
        "--zerocopy: this kernel's io_uring has no SEND_ZC (it needs Linux 6.0 or later); run without --zerocopy"
    )]
    NoZerocopy,
}

/// State shared by the workers and the caller.
pub struct Shared {
    /// The plan.
    pub plan: Plan,
    /// Where load goes (resolved; the built-in server's address when there is one).
    pub target: Target,
    /// Set to stop the run early (Ctrl-C).
    pub interrupted: Arc<AtomicBool>,
    /// Live figures.
    pub live: Live,
    /// The instant all timestamps count from: set by the first worker past the start
    /// barrier, after every worker has connected (and waited for `start_at`).
    pub start: std::sync::OnceLock<Instant>,
    /// The same moment as Unix seconds.
    pub started_unix: std::sync::OnceLock<f64>,
    /// When to start (`--start-at`); connections are made before it.
    pub start_at: Option<std::time::SystemTime>,
    /// Each worker's thread id, `(worker, tid)`, recorded as it starts (for its CPU time).
    pub tids: std::sync::Mutex<Vec<(usize, i32)>>,
}

impl Shared {
    /// The common start instant, set on first call.
    pub fn begin(&self) -> Instant {
        *self.start.get_or_init(|| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let _ = self.started_unix.set(unix);
            Instant::now()
        })
    }

    /// Sleeps until `start_at` (if any), waking for Ctrl-C.
    fn wait_for_start_at(&self) {
        let Some(at) = self.start_at else { return };
        let Ok(wait) = at.duration_since(std::time::SystemTime::now()) else { return };
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.interrupted.load(Ordering::Relaxed) {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
        }
    }
}

/// A worker's schedule: the warm-up, the stop, its share of a request budget, the
/// open loop's due times (or the closed loop's depth) and the message sizes.
pub(crate) struct Clock {
    pub start: Instant,
    /// Warm-up ends, ns.
    pub warm_end: u64,
    /// Scheduling stops, ns (for a request-bound run, at `--max-duration` at the latest).
    pub stop_at: u64,
    /// Measured messages this worker should complete (request-bound runs).
    pub budget: Option<u64>,
    /// Open loop: ns between this worker's messages, and when the next is due.
    pub interval: Option<f64>,
    pub next_due: f64,
    /// Closed loop: messages in flight per connection.
    pub depth: u32,
    rng: StdRng,
    size: (u32, u32),
}

impl Clock {
    fn new(shared: &Shared, worker: usize, workers: usize) -> Clock {
        let plan = &shared.plan;
        let warm_end = plan.warmup.as_nanos() as u64;
        let (stop_at, budget) = match plan.stop {
            Stop::Duration(d) => (warm_end + d.as_nanos() as u64, None),
            Stop::Requests(n) => {
                let share = n / workers as u64 + u64::from((worker as u64) < n % workers as u64);
                // Still bounded in time: a target that stops answering cannot hold the run.
                (warm_end.saturating_add(plan.max_duration.as_nanos() as u64), Some(share))
            }
        };
        let (interval, depth) = match plan.model {
            Model::Open { rate } => (Some(1e9 * workers as f64 / rate), 0),
            Model::Closed { depth } => (None, depth),
        };
        Clock {
            // Replaced by the common start once every worker is connected.
            start: Instant::now(),
            warm_end,
            stop_at,
            budget,
            interval,
            // Workers start evenly staggered through one interval, not all at once.
            next_due: interval.map_or(0.0, |i| i * worker as f64 / workers as f64),
            depth,
            rng: StdRng::seed_from_u64(plan.seed ^ (worker as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            size: (plan.size.min, plan.size.max),
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Admits one more message due at `intended`: false when a request-bound run has
    /// handed out its share; counts it as sent when it falls after the warm-up.
    pub fn admit(&mut self, intended: u64, counters: &mut Counters) -> bool {
        if intended >= self.stop_at {
            return false;
        }
        if intended >= self.warm_end {
            match self.budget.as_mut() {
                Some(0) => return false,
                Some(b) => *b -= 1,
                None => {}
            }
            counters.sent += 1;
        }
        true
    }

    /// The size of the next message.
    pub fn next_size(&mut self) -> u32 {
        if self.size.0 == self.size.1 {
            self.size.0
        } else {
            self.rng.random_range(self.size.0..=self.size.1)
        }
    }
}

/// Runs the plan against `target`: connects every worker's share, starts them together,
/// and returns each worker's result. Fails (without measuring) only if no connection at
/// all could be made.
pub fn run(shared: Arc<Shared>) -> Result<Vec<WorkerResult>, RunError> {
    let cpus = shared.plan.cpus.clone();
    let workers = cpus.len();
    let background = background_workers(&shared.plan);
    let barrier = Arc::new(Barrier::new(workers + background.len()));
    let mut handles = Vec::new();
    for (index, cpu) in cpus.into_iter().enumerate() {
        let shared = shared.clone();
        let barrier = barrier.clone();
        let conns = share_of(shared.plan.connections, index, workers);
        let first_conn = (0..index).map(|w| share_of(shared.plan.connections, w, workers)).sum::<u32>();
        let h = std::thread::Builder::new()
            .name(format!("ringload-{index}"))
            .spawn(move || -> Result<WorkerResult, RunError> {
                // Best effort: an unpinned worker still measures, only less steadily.
                let _ = ringecho::sys::pin_current_thread(cpu);
                let tid = ringecho::sys::gettid();
                shared.tids.lock().unwrap_or_else(|p| p.into_inner()).push((index, tid));
                let args =
                    WorkerArgs { index, workers, first_conn, conns, shared: &shared, barrier: &barrier };
                if shared.target.is_datagram() {
                    worker::run::<dgram::Dgram>(args)
                } else if shared.plan.throughput.mode.is_bulk() {
                    worker::run::<bulk::Bulk<false>>(args)
                } else {
                    worker::run::<stream::Stream>(args)
                }
            })
            .map_err(|error| RunError::Io { step: "spawning a load worker".into(), error })?;
        handles.push(h);
    }
    handles.extend(spawn_background(&shared, &barrier, &background)?);
    let mut results = Vec::new();
    let mut first_err = None;
    for (k, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(mut r)) => {
                r.background = k >= workers;
                results.push(r);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(RunError::WorkerPanicked);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // A worker whose connections all failed still reports its counts; the run fails only
    // when no worker connected at all. Interrupted while connecting, it is a (partial,
    // empty) run: the report says so and the exit is 130, not a connection error.
    let interrupted = shared.interrupted.load(Ordering::Relaxed);
    if !interrupted && results.iter().filter(|r| !r.background).all(|r| r.connected == 0) {
        let source = results
            .iter_mut()
            .find_map(|r| r.connect_error.take())
            .unwrap_or_else(|| std::io::Error::other("no connection"));
        return Err(RunError::Connect { target: shared.target.to_string(), error: source });
    }
    Ok(results)
}

/// The background flows' workers (`--background`): the CPUs they run on, one worker per
/// load CPU at most, beside the measured workers.
pub(crate) fn background_workers(plan: &Plan) -> Vec<usize> {
    let n = plan.throughput.background as usize;
    plan.cpus.iter().copied().take(n).collect()
}

/// The run-wide number of the first background connection: apart from the measured
/// ones, so that the two never share a payload phase by accident of numbering.
const BACKGROUND_FIRST_CONN: u32 = 1 << 30;

/// Starts the background workers (worker indices after the measured ones).
fn spawn_background(
    shared: &Arc<Shared>,
    barrier: &Arc<Barrier>,
    cpus: &[usize],
) -> Result<Vec<std::thread::JoinHandle<Result<WorkerResult, RunError>>>, RunError> {
    let total = shared.plan.throughput.background;
    let (workers, measured) = (cpus.len(), shared.plan.cpus.len());
    let mut handles = Vec::new();
    for (k, &cpu) in cpus.iter().enumerate() {
        let shared = shared.clone();
        let barrier = barrier.clone();
        let conns = share_of(total, k, workers);
        let first_conn = BACKGROUND_FIRST_CONN + (0..k).map(|w| share_of(total, w, workers)).sum::<u32>();
        let h = std::thread::Builder::new()
            .name(format!("ringload-bg-{k}"))
            .spawn(move || -> Result<WorkerResult, RunError> {
                // Best effort, as the measured workers.
                let _ = ringecho::sys::pin_current_thread(cpu);
                let index = measured + k;
                let args =
                    WorkerArgs { index, workers, first_conn, conns, shared: &shared, barrier: &barrier };
                worker::run::<bulk::Bulk<true>>(args)
            })
            .map_err(|error| RunError::Io { step: "spawning a background worker".into(), error })?;
        handles.push(h);
    }
    Ok(handles)
}

fn share_of(total: u32, index: usize, workers: usize) -> u32 {
    total / workers as u32 + u32::from((index as u32) < total % workers as u32)
}

/// What a worker is given: its place among the workers and its share of the connections.
pub(crate) struct WorkerArgs<'a> {
    pub index: usize,
    pub workers: usize,
    /// The run-wide number of its first connection.
    pub first_conn: u32,
    pub conns: u32,
    pub shared: &'a Shared,
    pub barrier: &'a Barrier,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SizeSpec;

    pub(super) fn shared(model: Model, stop: Stop) -> Shared {
        let second = Duration::from_secs(1);
        let plan = Plan {
            target: None,
            connections: 8,
            model,
            size: SizeSpec { min: 64, max: 64 },
            stop,
            warmup: second,
            verify: false,
            cpus: vec![0, 1, 2],
            udp_timeout: second,
            connect_timeout: second,
            drain: second,
            seed: 1,
            churn: None,
            coalesce: false,
            gso: true,
            max_duration: Duration::from_secs(60),
            intervals: false,
            throughput: Default::default(),
            spin: false,
            server_metrics: None,
        };
        Shared {
            plan,
            target: Target::Tcp(([127, 0, 0, 1], 9).into()),
            interrupted: Arc::default(),
            live: Live::default(),
            start: std::sync::OnceLock::new(),
            started_unix: std::sync::OnceLock::new(),
            start_at: None,
            tids: Default::default(),
        }
    }

    #[test]
    fn a_request_budget_is_shared_exactly() {
        let s = shared(Model::Closed { depth: 1 }, Stop::Requests(10));
        let budgets: Vec<_> = (0..3).map(|w| Clock::new(&s, w, 3).budget).collect();
        assert_eq!(budgets, [Some(4), Some(3), Some(3)]);
        let mut clock = Clock::new(&s, 1, 3);
        let mut counters = Counters::default();
        let warm_end = clock.warm_end;
        assert!(clock.admit(warm_end - 1, &mut counters), "warm-up messages are free");
        assert_eq!(counters.sent, 0);
        let admitted = (0..10).filter(|_| clock.admit(warm_end, &mut counters)).count();
        assert_eq!((admitted, counters.sent, clock.budget), (3, 3, Some(0)));
    }

    #[test]
    fn nothing_is_admitted_after_the_stop() {
        let s = shared(Model::Closed { depth: 1 }, Stop::Duration(Duration::from_secs(2)));
        let mut clock = Clock::new(&s, 0, 1);
        let mut counters = Counters::default();
        assert_eq!(clock.stop_at, 3_000_000_000, "warm-up, then the duration");
        assert!(clock.admit(clock.stop_at - 1, &mut counters));
        assert!(!clock.admit(clock.stop_at, &mut counters));
        assert_eq!(counters.sent, 1);
    }

    #[test]
    fn open_loop_workers_start_staggered() {
        let s = shared(Model::Open { rate: 3000.0 }, Stop::Duration(Duration::from_secs(1)));
        let clocks: Vec<_> = (0..3).map(|w| Clock::new(&s, w, 3)).collect();
        let interval = 1e9 * 3.0 / 3000.0;
        for (w, c) in clocks.iter().enumerate() {
            assert_eq!(c.interval, Some(interval));
            assert_eq!(c.depth, 0);
            assert!((c.next_due - interval * w as f64 / 3.0).abs() < 1e-6, "worker {w}: {}", c.next_due);
        }
    }
}
