//! The words a plan is made of: how sizes are chosen ([`SizeSpec`]), how load is offered
//! ([`Model`]), when a run stops ([`Stop`]), how replies are timed ([`Timestamps`]), and the refusal of a plan that breaks a
//! rule ([`PlanError`], naming the flag).

use std::time::Duration;

/// How message sizes are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SizeSpec {
    /// Smallest message, bytes.
    pub min: u32,
    /// Largest message, bytes (equal to `min` for a fixed size).
    pub max: u32,
}

impl SizeSpec {
    /// Parses `64`, `4KiB` or `MIN..MAX` (`--size`).
    pub fn parse(text: &str) -> Result<SizeSpec, String> {
        let one = crate::units::parse_u32_size;
        match text.split_once("..") {
            Some((lo, hi)) => Ok(SizeSpec { min: one(lo)?, max: one(hi)? }),
            None => {
                let n = one(text)?;
                Ok(SizeSpec { min: n, max: n })
            }
        }
    }
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this long (after the warm-up).
    Duration(#[serde(with = "super::fields::secs")] Duration),
    /// After this many measured messages (all workers together).
    Requests(u64),
}

/// How a reply's arrival is timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timestamps {
    /// The kernel's receive stamp where the socket gives one (TCP, UDP, Unix datagram),
    /// else the moment the worker sees the reply. An open loop then takes replies in
    /// batches at its due times instead of waking for each one.
    #[default]
    Kernel,
    /// The moment the worker sees the reply (`--user-timestamps`): the worker wakes for
    /// each one, as ringload did before kernel stamps.
    User,
}

impl Timestamps {
    /// Replies are timed in user space.
    pub fn is_user(&self) -> bool {
        *self == Timestamps::User
    }
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

impl PlanError {
    /// A refusal of `flag`, saying what is wrong.
    pub fn new(flag: &'static str, problem: impl Into<String>) -> PlanError {
        PlanError { flag, problem: problem.into() }
    }
}
