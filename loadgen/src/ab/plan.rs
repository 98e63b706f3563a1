//! A validated `ab` comparison: the two server commands, how each is started, pinned
//! and stopped, the load of every run and the thresholds checked.

use super::process::Address;
use crate::plan::Plan;
use std::time::Duration;

/// A validated `ab` comparison.
#[derive(Debug, Clone)]
pub struct AbPlan {
    /// The server commands, A then B, each run by `sh -c`.
    pub servers: [String; 2],
    /// CPUs each server is pinned to (None: not pinned).
    pub server_cpus: Option<Vec<usize>>,
    /// How a server's address is known.
    pub address: Address,
    /// The load of every run (its target is set per run).
    pub load: Plan,
    /// Runs per side.
    pub runs: u32,
    /// Unmeasured runs against each fresh server before its measured run.
    pub warmup_runs: u32,
    /// How long a server may take to listen.
    pub start_timeout: Duration,
    /// How long a server may take to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// `--max-p99`, checked on every run.
    pub max_p99: Option<Duration>,
    /// `--max-error-rate`, checked on every run.
    pub max_error_rate: Option<f64>,
    /// `--max-slowdown`: B's median msg/s at most this far below A's, its p99 at most this
    /// far above.
    pub max_slowdown: Option<f64>,
}
