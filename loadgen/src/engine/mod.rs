//! The load engine: one pinned worker per CPU, each with its own io_uring and its share
//! of the connections; per-worker histograms merged at the end.
//!
//! Map: `worker` runs one worker's loop over a `transport::Transport` (`stream` for TCP
//! and Unix stream, `bulk` for the byte-counting modes and background flows, `dgram` for
//! UDP and Unix datagram, with `ledger` matching datagram replies to their sequences);
//! `token` is the one layout of every operation's `user_data`; `clock` schedules,
//! `recorder` measures; `types` holds what the engine shares with its caller.
//!
//! Time: every timestamp is nanoseconds since the common start instant, read once per
//! loop turn. A message's latency is measured from its *intended* send time (open loop:
//! when the schedule said it was due; closed loop: when the previous reply freed its
//! slot), so a stalled server shows up in full (no coordinated omission); the service
//! time from the actual send is recorded beside it.

mod bulk;
mod clock;
mod dgram;
mod ledger;
mod recorder;
mod stamps;
mod stream;
mod token;
mod transport;
mod types;
mod worker;

pub use stamps::StampTally;
pub use types::{Breakdown, Live, RunError, Shared, SizeFates, Tally, WorkerResult, connect_hint};

use crate::plan::Plan;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use worker::WorkerArgs;

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
                // An unpinned worker still measures, only less steadily: the report says so.
                let pin_error = pin(cpu);
                let tid = ringecho::sys::gettid();
                shared.tids.lock().unwrap_or_else(|p| p.into_inner()).push((index, tid));
                let args =
                    WorkerArgs { index, workers, first_conn, conns, shared: &shared, barrier: &barrier };
                let result = if shared.target.is_datagram() {
                    worker::run::<dgram::Dgram>(args)
                } else if shared.plan.throughput.mode.is_bulk() {
                    worker::run::<bulk::Bulk<false>>(args)
                } else {
                    worker::run::<stream::Stream>(args)
                };
                result.map(|r| WorkerResult { pin_error, ..r })
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
                let pin_error = pin(cpu);
                let index = measured + k;
                let args =
                    WorkerArgs { index, workers, first_conn, conns, shared: &shared, barrier: &barrier };
                worker::run::<bulk::Bulk<true>>(args).map(|r| WorkerResult { pin_error, ..r })
            })
            .map_err(|error| RunError::Io { step: "spawning a background worker".into(), error })?;
        handles.push(h);
    }
    Ok(handles)
}

/// Pins the calling worker to `cpu`; the CPU and the error when the kernel refused.
fn pin(cpu: usize) -> Option<(usize, String)> {
    ringecho::sys::pin_current_thread(cpu).err().map(|e| (cpu, e.to_string()))
}

fn share_of(total: u32, index: usize, workers: usize) -> u32 {
    total / workers as u32 + u32::from((index as u32) < total % workers as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Model, SizeSpec, Stop};
    use crate::target::Target;
    use std::time::Duration;

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
            send_window: None,
            gso: true,
            max_duration: Duration::from_secs(60),
            intervals: false,
            throughput: Default::default(),
            spin: false,
            server_metrics: None,
            server_pid: None,
            timestamps: crate::plan::Timestamps::Kernel,
        };
        Shared {
            plan,
            target: Target::Tcp(([127, 0, 0, 1], 9).into()),
            interrupted: Arc::default(),
            live: Live::default(),
            start: std::sync::OnceLock::new(),
            started_unix: std::sync::OnceLock::new(),
            start_at: None,
            deadline: std::time::Instant::now() + Duration::from_secs(60),
            tids: Default::default(),
        }
    }
}
