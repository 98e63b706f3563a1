//! A validated load plan: everything a run needs, checked once. Built from the command
//! line by [`crate::cli`], or directly by tests and embedders.

use crate::target::Target;
use std::time::Duration;

/// How message sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SizeSpec {
    /// Smallest message, bytes.
    pub min: u32,
    /// Largest message, bytes (equal to `min` for a fixed size).
    pub max: u32,
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Model {
    /// Each connection keeps `depth` messages in flight.
    Closed {
        /// Messages in flight per connection.
        depth: u32,
    },
    /// Messages are due at a fixed total rate; latency counts from when each was due.
    Open {
        /// Messages per second, all connections together.
        rate: f64,
    },
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this long (after the warm-up).
    Duration(#[serde(with = "crate::plan::secs")] Duration),
    /// After this many measured messages (all workers together).
    Requests(u64),
}

/// A validated plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The target; `None` runs against a built-in ringecho server.
    #[serde(serialize_with = "crate::plan::target_str")]
    pub target: Option<Target>,
    /// Connections (flows, for datagrams), all workers together.
    pub connections: u32,
    /// Load model.
    pub model: Model,
    /// Message sizes.
    pub size: SizeSpec,
    /// When to stop.
    pub stop: Stop,
    /// Run but do not count this long first.
    #[serde(with = "crate::plan::secs")]
    pub warmup: Duration,
    /// Check every echoed byte.
    pub verify: bool,
    /// CPUs to run load workers on (one worker each).
    pub cpus: Vec<usize>,
    /// A datagram unanswered this long is lost.
    #[serde(with = "crate::plan::secs")]
    pub udp_timeout: Duration,
    /// Connecting gives up after this long.
    #[serde(with = "crate::plan::secs")]
    pub connect_timeout: Duration,
    /// After the stop, wait this long for replies still in flight.
    #[serde(with = "crate::plan::secs")]
    pub drain: Duration,
    /// Seed for sizes and payloads.
    pub seed: u64,
    /// Connection churn: close each connection after this many messages and open a new
    /// one (closed loop, stream transports).
    pub churn: Option<u32>,
}

/// A plan that cannot run, naming the flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: {problem}")]
pub struct PlanError {
    /// The flag at fault.
    pub flag: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn err(flag: &'static str, problem: impl Into<String>) -> PlanError {
    PlanError { flag, problem: problem.into() }
}

impl Plan {
    /// Checks the plan.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.connections == 0 {
            return Err(err("--connections", "must be at least 1"));
        }
        if self.connections > 1_000_000 {
            return Err(err("--connections", "at most 1,000,000"));
        }
        if self.size.min == 0 || self.size.min > self.size.max {
            return Err(err("--size", "sizes must be at least 1 and MIN ≤ MAX"));
        }
        let datagram = self.target.as_ref().is_some_and(Target::is_datagram);
        if datagram && self.size.min < crate::header::LEN as u32 {
            return Err(err(
                "--size",
                format!("datagrams carry a {}-byte header: --size must be at least that", crate::header::LEN),
            ));
        }
        if datagram && self.size.max > 65_507 {
            return Err(err("--size", "a UDP datagram carries at most 65,507 bytes"));
        }
        if self.size.max > 64 << 20 {
            return Err(err("--size", "at most 64 MiB per message"));
        }
        match self.model {
            Model::Closed { depth } if depth == 0 || depth > 65_536 => {
                return Err(err("--depth", "must be between 1 and 65536"));
            }
            Model::Open { rate } if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) => {
                return Err(err("--rate", "must be a positive number of messages per second"));
            }
            _ => {}
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return Err(err("--duration", "must be more than 0")),
            Stop::Requests(0) => return Err(err("--requests", "must be at least 1")),
            _ => {}
        }
        if self.cpus.is_empty() {
            return Err(err("--threads/--cpus", "no CPU to run on"));
        }
        if self.cpus.len() > self.connections as usize {
            return Err(err("--threads", "more workers than connections"));
        }
        if let Some(m) = self.churn {
            if m == 0 {
                return Err(err("--churn", "at least 1 message per connection"));
            }
            if datagram || matches!(self.model, Model::Open { .. }) {
                return Err(err("--churn", "needs a stream target and the closed loop"));
            }
        }
        if self.udp_timeout.is_zero() {
            return Err(err("--udp-timeout", "must be more than 0"));
        }
        Ok(())
    }

    /// The run's length after warm-up, if it is time-bound.
    pub fn duration(&self) -> Option<Duration> {
        match self.stop {
            Stop::Duration(d) => Some(d),
            Stop::Requests(_) => None,
        }
    }
}

pub(crate) mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub(crate) fn target_str<S: serde::Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_str("builtin"),
    }
}
