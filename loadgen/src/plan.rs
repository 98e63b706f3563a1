//! A validated load plan: everything a run needs, checked once. Built from the command
//! line by `crate::options`, or directly by tests and embedders. It is saved in the result
//! document (durations as float seconds, the target as text or `"builtin"`) and read
//! back from it in the same form.

mod fields;
mod model;
pub mod throughput;

pub use fields::MAX_CPUS;
pub use model::{Model, PlanError, SizeSpec, Stop, Timestamps};
pub use throughput::{Mode, ThroughputPlan};

use crate::target::Target;
use std::time::Duration;

/// A validated plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The target; `None` runs against a built-in ringecho server.
    #[serde(with = "crate::plan::fields::target_text")]
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
    #[serde(with = "crate::plan::fields::secs")]
    pub warmup: Duration,
    /// Check every echoed byte.
    pub verify: bool,
    /// CPUs to run load workers on (one worker each).
    #[serde(deserialize_with = "crate::plan::fields::bounded_cpus")]
    pub cpus: Vec<usize>,
    /// A datagram unanswered this long is lost.
    #[serde(with = "crate::plan::fields::secs")]
    pub udp_timeout: Duration,
    /// Connecting gives up after this long.
    #[serde(with = "crate::plan::fields::secs")]
    pub connect_timeout: Duration,
    /// After the stop, wait this long for replies still in flight.
    #[serde(with = "crate::plan::fields::secs")]
    pub drain: Duration,
    /// Seed for sizes and payloads.
    pub seed: u64,
    /// Connection churn: close each connection after this many messages and open a new
    /// one (closed loop, stream transports).
    #[serde(default)]
    pub churn: Option<u32>,
    /// Open loop over a stream: let several due messages share one send (by default each
    /// message is its own send, as wrk2 and tcpkali send requests).
    #[serde(default)]
    pub coalesce: bool,
    /// Open loop: each turn hands out every message due within this much of now, the early
    /// ones early (`--send-window`): fewer wake-ups for the client, in bursts of up to
    /// rate × window messages; an early message's latency counts from when it was sent.
    /// `None`: each message goes at its due time.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::plan::fields::opt_secs")]
    pub send_window: Option<Duration>,
    /// UDP: send a flow's datagrams that are due together as one UDP_SEGMENT send and
    /// receive with UDP_GRO (each datagram keeps its own header). Off in documents from
    /// before it existed.
    #[serde(default)]
    pub gso: bool,
    /// The longest a run lasts, whatever else: connecting, the warm-up, the measured part
    /// and the drain together (a request-bound run against a target that stops answering
    /// still ends). Documents from before it bounded the whole run hold the bound of the
    /// part after the warm-up.
    #[serde(default = "default_max_duration", with = "crate::plan::fields::secs")]
    pub max_duration: Duration,
    /// Keep a latency histogram per second (for `--hdr-log`); not part of a result.
    #[serde(skip)]
    pub intervals: bool,
    /// Byte throughput: `--mode`, write size, socket buffers, SEND_ZC, background flows.
    /// Request/response in documents from before it existed.
    #[serde(default)]
    pub throughput: ThroughputPlan,
    /// Busy-poll the rings instead of sleeping (`--spin`): the lowest latency, for a
    /// whole CPU per worker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spin: bool,
    /// A remote ringecho's `--metrics` URL, read at the start and the end of the window
    /// (`--server-metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<String>,
    /// A server process on this machine whose threads' CPU is read at the start and the
    /// end of the window (`--server-pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_pid: Option<u32>,
    /// How replies are timed. Absent means in user space: `--user-timestamps`, and every
    /// document written before kernel stamps.
    #[serde(default = "user_timestamps", skip_serializing_if = "Timestamps::is_user")]
    pub timestamps: Timestamps,
}

fn user_timestamps() -> Timestamps {
    Timestamps::User
}

/// The default `--max-duration`: five minutes.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(300);

fn default_max_duration() -> Duration {
    DEFAULT_MAX_DURATION
}

/// What the default `--max-duration` of a time-bound run leaves beyond its planned length
/// and `--connect-timeout`: setting up many connections takes time of its own.
pub const SPARE: Duration = Duration::from_secs(60);

/// The default `--max-duration` of a `--find-max-rate` search: ten minutes.
pub const DEFAULT_SEARCH_DURATION: Duration = Duration::from_secs(600);

/// The split of the allowed CPUs between the load and the built-in server, in one place:
/// with the built-in server and more than one CPU, the server takes the first allowed
/// CPU and the load the rest; otherwise the load may use every allowed CPU (and a
/// built-in server then shares the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSplit {
    /// The CPUs the load workers may run on.
    pub load: Vec<usize>,
    /// The built-in server's CPU (none without a built-in server).
    pub server: Option<usize>,
}

impl CpuSplit {
    /// The split of `allowed` (in order) for a run with or without the built-in server.
    pub fn of(allowed: &[usize], builtin: bool) -> CpuSplit {
        match (builtin, allowed) {
            (false, _) => CpuSplit { load: allowed.to_vec(), server: None },
            (true, [server, rest @ ..]) if !rest.is_empty() => {
                CpuSplit { load: rest.to_vec(), server: Some(*server) }
            }
            (true, _) => CpuSplit { load: allowed.to_vec(), server: allowed.first().copied() },
        }
    }

    /// The built-in server's CPU for `load_cpus` as a plan has them: the first allowed
    /// CPU the load does not use, else the first allowed one.
    pub fn server_beside(allowed: &[usize], load_cpus: &[usize]) -> Option<usize> {
        allowed.iter().copied().find(|c| !load_cpus.contains(c)).or_else(|| allowed.first().copied())
    }
}

/// The lowest open-loop rate: one message in about 17 minutes.
pub const MIN_RATE: f64 = 0.001;

/// The shortest measured window (`--duration`, `--step-duration`): a worker's
/// housekeeping tick; a shorter one cannot form a rate.
pub const MIN_WINDOW: Duration = Duration::from_millis(10);

/// The longest measured duration (`--duration`): 30 days.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest warm-up, drain or timeout: an hour.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The widest `--send-window`: beyond it the bursts, not the schedule, shape the load.
pub const MAX_SEND_WINDOW: Duration = Duration::from_millis(10);

impl Plan {
    /// Checks the plan.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.connections == 0 {
            return Err(PlanError::new("--connections", "must be at least 1"));
        }
        if self.connections > 1_000_000 {
            return Err(PlanError::new("--connections", "at most 1,000,000"));
        }
        if self.size.min == 0 || self.size.min > self.size.max {
            return Err(PlanError::new("--size", "sizes must be at least 1 and MIN ≤ MAX"));
        }
        let datagram = self.target.as_ref().is_some_and(Target::is_datagram);
        if datagram && self.size.min < crate::header::LEN as u32 {
            return Err(PlanError::new(
                "--size",
                format!("datagrams carry a {}-byte header: --size must be at least that", crate::header::LEN),
            ));
        }
        let most = match &self.target {
            Some(Target::Udp(a)) if a.is_ipv6() => {
                Some((65_527, "a UDP datagram over IPv6 carries at most 65,527 bytes"))
            }
            Some(t) if t.is_datagram() => {
                Some((65_507, "a UDP datagram over IPv4 carries at most 65,507 bytes"))
            }
            _ => None,
        };
        if let Some((most, why)) = most {
            if self.size.max > most {
                return Err(PlanError::new("--size", why));
            }
        }
        if self.size.max > 64 << 20 {
            return Err(PlanError::new("--size", "at most 64 MiB per message"));
        }
        match self.model {
            Model::Closed { depth } if depth == 0 || depth > 65_536 => {
                return Err(PlanError::new("--depth", "must be between 1 and 65536"));
            }
            Model::Open { rate } if !(rate.is_finite() && (MIN_RATE..=1e9).contains(&rate)) => {
                return Err(PlanError::new("--rate", "between 0.001 and 1e9 messages per second"));
            }
            _ => {}
        }
        match self.stop {
            Stop::Duration(d) if d < MIN_WINDOW => {
                return Err(PlanError::new(
                    "--duration",
                    "at least 10ms: a shorter window holds too few answers to form a rate",
                ));
            }
            Stop::Duration(d) if d > MAX_DURATION => {
                return Err(PlanError::new("--duration", "at most 30 days"));
            }
            Stop::Duration(d) if d > self.max_duration => {
                return Err(PlanError::new("--duration", "longer than --max-duration"));
            }
            Stop::Requests(0) => return Err(PlanError::new("--requests", "must be at least 1")),
            _ => {}
        }
        if self.cpus.is_empty() {
            return Err(PlanError::new("--threads/--cpus", "no CPU to run on"));
        }
        if self.cpus.len() > MAX_CPUS {
            return Err(PlanError::new("--threads/--cpus", format!("at most {MAX_CPUS} workers")));
        }
        if self.cpus.len() > self.connections as usize {
            return Err(PlanError::new("--threads", "more workers than connections"));
        }
        if let Some(m) = self.churn {
            if m == 0 {
                return Err(PlanError::new("--churn", "at least 1 message per connection"));
            }
            if datagram || matches!(self.model, Model::Open { .. }) {
                return Err(PlanError::new("--churn", "needs a stream target and the closed loop"));
            }
        }
        self.throughput.validate(self.target.as_ref(), &self.stop, &self.model, self.churn)?;
        if self.udp_timeout.is_zero() {
            return Err(PlanError::new("--udp-timeout", "must be more than 0"));
        }
        if self.max_duration.is_zero() || self.max_duration > MAX_DURATION {
            return Err(PlanError::new("--max-duration", "between 1 ns and 30 days"));
        }
        if self.coalesce && (datagram || !matches!(self.model, Model::Open { .. })) {
            return Err(PlanError::new("--coalesce", "applies to the open loop over a stream target"));
        }
        if let Some(w) = self.send_window {
            if !matches!(self.model, Model::Open { .. }) {
                return Err(PlanError::new("--send-window", "applies to the open loop (--rate)"));
            }
            if w.is_zero() || w > MAX_SEND_WINDOW {
                return Err(PlanError::new("--send-window", "between 1 ns and 10ms"));
            }
        }
        for (flag, d) in [
            ("--warmup", self.warmup),
            ("--udp-timeout", self.udp_timeout),
            ("--connect-timeout", self.connect_timeout),
            ("--drain", self.drain),
        ] {
            if d > MAX_WAIT {
                return Err(PlanError::new(flag, "at most 1h"));
            }
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

    /// How long a time-bound run lasts as planned, connecting aside: the warm-up,
    /// `--duration` and the longest drain. What `--max-duration` must leave room for.
    pub fn planned_length(&self) -> Option<Duration> {
        self.duration().map(|d| self.warmup.saturating_add(d).saturating_add(self.drain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(target: Option<Target>, model: Model, stop: Stop, churn: Option<u32>) -> Plan {
        Plan {
            target,
            connections: 8,
            model,
            size: SizeSpec { min: 16, max: 1_400 },
            stop,
            warmup: Duration::from_millis(250),
            verify: true,
            cpus: vec![0, 3],
            udp_timeout: Duration::from_nanos(1_500_000_001),
            connect_timeout: Duration::from_secs(2),
            drain: Duration::ZERO,
            seed: u64::MAX,
            churn,
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
        }
    }

    #[test]
    fn a_send_window_is_for_the_open_loop_and_bounded() {
        let open = Model::Open { rate: 1000.0 };
        let stop = Stop::Duration(Duration::from_secs(1));
        let with = |model, w| Plan { send_window: w, ..plan(None, model, stop, None) };
        with(open, Some(Duration::from_micros(400))).validate().unwrap();
        with(open, Some(MAX_SEND_WINDOW)).validate().unwrap();
        for (model, w, says) in [
            (Model::Closed { depth: 1 }, Duration::from_micros(400), "open loop"),
            (open, Duration::ZERO, "between"),
            (open, MAX_SEND_WINDOW + Duration::from_nanos(1), "between"),
        ] {
            let e = with(model, Some(w)).validate().unwrap_err().to_string();
            assert!(e.starts_with("--send-window") && e.contains(says), "{e}");
        }
        // Written only when set, read back the same.
        let p = with(open, Some(Duration::from_micros(400)));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["send_window"], serde_json::json!(0.0004));
        assert_eq!(serde_json::from_value::<Plan>(json).unwrap().send_window, p.send_window);
        let mut json = serde_json::to_value(with(open, None)).unwrap();
        assert!(json.get("send_window").is_none());
        json["send_window"] = serde_json::Value::Null;
        assert_eq!(serde_json::from_value::<Plan>(json.clone()).unwrap().send_window, None);
        json["send_window"] = serde_json::json!(-1.0);
        assert!(serde_json::from_value::<Plan>(json).is_err(), "a negative window is refused");
    }

    #[test]
    fn the_builtin_server_gets_the_first_cpu_when_there_are_more() {
        assert_eq!(CpuSplit::of(&[0, 1, 2], true), CpuSplit { load: vec![1, 2], server: Some(0) });
        assert_eq!(CpuSplit::of(&[3], true), CpuSplit { load: vec![3], server: Some(3) });
        assert_eq!(CpuSplit::of(&[0, 1], false), CpuSplit { load: vec![0, 1], server: None });
        assert_eq!(CpuSplit::server_beside(&[0, 1, 2], &[1, 2]), Some(0));
        assert_eq!(CpuSplit::server_beside(&[0, 1], &[0, 1]), Some(0), "shared when none is free");
    }

    #[test]
    fn a_long_cpu_list_is_refused_while_reading() {
        let mut doc =
            serde_json::to_value(plan(None, Model::Closed { depth: 1 }, Stop::Requests(5), None)).unwrap();
        doc["cpus"] = (0..=MAX_CPUS).collect::<Vec<_>>().into();
        let e = serde_json::from_value::<Plan>(doc).unwrap_err().to_string();
        assert!(e.contains("more than 1024 CPUs"), "{e}");
    }

    /// A plan reads back from the document as it was written, for every kind of target,
    /// model and stop.
    #[test]
    fn round_trips_through_json() {
        for p in [
            plan(None, Model::Closed { depth: 4 }, Stop::Duration(Duration::from_secs(10)), Some(10)),
            plan(
                Some(Target::Udp("[::1]:7007".parse().unwrap())),
                Model::Open { rate: 12_345.678 },
                Stop::Requests(1_000_000),
                None,
            ),
            plan(
                Some(Target::Unix("/tmp/e.sock".into())),
                Model::Closed { depth: 1 },
                Stop::Requests(1),
                None,
            ),
            plan(
                Some(Target::UnixGram("/tmp/e.dg".into())),
                Model::Open { rate: 0.5 },
                Stop::Duration(Duration::from_millis(1_234)),
                None,
            ),
        ] {
            let text = serde_json::to_string(&p).unwrap();
            let back: Plan = serde_json::from_str(&text).unwrap();
            assert_eq!(back, p, "{text}");
        }
        let text =
            serde_json::to_string(&plan(None, Model::Closed { depth: 1 }, Stop::Requests(5), None)).unwrap();
        assert!(text.contains(r#""target":"builtin""#) && text.contains(r#""warmup":0.25"#), "{text}");
    }

    /// What no plan holds is an error, not a panic: negative or huge durations, a host
    /// name (never resolved here), a missing field.
    #[test]
    fn bad_plans_are_errors() {
        let good =
            serde_json::to_value(plan(None, Model::Closed { depth: 1 }, Stop::Requests(5), None)).unwrap();
        for (field, bad) in [
            ("warmup", serde_json::json!(-1.0)),
            ("drain", serde_json::json!(1e300)),
            ("target", serde_json::json!("tcp://localhost:7")),
            ("target", serde_json::json!("ftp://x")),
            ("stop", serde_json::json!({"duration": -5})),
            ("model", serde_json::json!({"model": "sideways"})),
        ] {
            let mut doc = good.clone();
            doc[field] = bad;
            assert!(serde_json::from_value::<Plan>(doc).is_err(), "{field}");
        }
        let mut no_churn = good.clone();
        no_churn.as_object_mut().unwrap().remove("churn");
        assert_eq!(
            serde_json::from_value::<Plan>(no_churn).unwrap().churn,
            None,
            "older documents lack churn"
        );
    }
}
