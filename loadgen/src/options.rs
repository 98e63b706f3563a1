//! From the command line to what runs: the validated [`Plan`] of a run (`--threads`,
//! `--cpus` and the built-in server's CPU split by [`CpuSplit`]), the SLO, a search's
//! plan and settings, an `ab` comparison. Every refusal names its flag.
//!
//! Invariant: nothing here has a side effect on the process; a plan that passes can run
//! (its descriptors fit the limit the process may raise itself to).

use crate::ab::{AbPlan, Address};
use crate::capacity::{self, SearchConfig};
use crate::cli::{AbArgs, RunArgs, ThroughputArgs};
use crate::document::MAX_REPEATS;
use crate::plan::{
    CpuSplit, DEFAULT_MAX_DURATION, DEFAULT_SEARCH_DURATION, MAX_CPUS, MAX_DURATION, Mode, Model, Plan,
    PlanError, SPARE, Stop, ThroughputPlan, Timestamps,
};
use crate::slo::Slo;
use crate::units::ns;
use std::time::Duration;

impl RunArgs {
    /// The validated plan.
    pub fn to_plan(&self) -> Result<Plan, PlanError> {
        if !self.more_targets.is_empty() {
            return Err(PlanError {
                flag: "TARGET",
                problem: format!(
                    "one target per run (also given: {}); run ringload once per target, then `ringload merge` or `compare`",
                    self.more_targets.join(", ")
                ),
            });
        }
        let allowed = ringecho::sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
        let cpus = match (&self.cpus, self.threads) {
            (Some(list), _) => {
                if let Some(bad) = list.0.iter().find(|c| !allowed.contains(c)) {
                    return Err(PlanError {
                        flag: "--cpus",
                        problem: format!("CPU {bad} is not available (allowed: {allowed:?})"),
                    });
                }
                list.0.clone()
            }
            (None, Some(0)) => {
                return Err(PlanError { flag: "--threads", problem: "must be at least 1".into() });
            }
            (None, Some(n)) if n > MAX_CPUS.min(allowed.len() * 8) => {
                return Err(PlanError {
                    flag: "--threads",
                    problem: format!(
                        "at most {} (8 per usable CPU, {} CPUs)",
                        MAX_CPUS.min(allowed.len() * 8),
                        allowed.len()
                    ),
                });
            }
            (None, Some(n)) => (0..n).map(|i| allowed[i % allowed.len()]).collect(),
            (None, None) => CpuSplit::of(&allowed, self.target.is_none()).load,
        };
        let cpus: Vec<usize> = cpus.into_iter().take(self.connections.max(1) as usize).collect();
        let mut plan = Plan {
            target: self.target.clone(),
            connections: self.connections,
            model: match self.rate {
                Some(rate) => Model::Open { rate },
                None => Model::Closed { depth: self.depth },
            },
            size: self.size,
            stop: match self.requests {
                Some(n) => Stop::Requests(n),
                None => Stop::Duration(self.duration),
            },
            warmup: self.warmup,
            verify: self.verify,
            cpus,
            udp_timeout: self.udp_timeout,
            connect_timeout: self.connect_timeout,
            drain: self.drain,
            seed: self.seed,
            churn: self.churn,
            coalesce: self.coalesce,
            send_window: self.send_window,
            gso: !self.no_gso,
            intervals: self.hdr_log.is_some(),
            throughput: self.throughput.to_plan(),
            spin: self.spin,
            server_metrics: self.server_metrics.clone(),
            server_pid: self.server_pid,
            timestamps: if self.user_timestamps { Timestamps::User } else { Timestamps::Kernel },
            max_duration: self.max_duration.unwrap_or(DEFAULT_MAX_DURATION),
        };
        if let (None, Some(length)) = (self.max_duration, plan.planned_length()) {
            // A time-bound run is bounded by its own length: room for all of it.
            let room = length.saturating_add(plan.connect_timeout).saturating_add(SPARE);
            plan.max_duration = room.clamp(DEFAULT_MAX_DURATION, MAX_DURATION);
        }
        if let Some(url) = &self.server_metrics {
            crate::observe::parse_url(url).map_err(|_| PlanError {
                flag: "--server-metrics",
                problem: format!("{url:?} is not http://HOST:PORT/PATH (e.g. http://127.0.0.1:9107/metrics)"),
            })?;
        }
        if let Some(r) = self.max_error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(PlanError {
                    flag: "--max-error-rate",
                    problem: "a fraction between 0 and 1 (0% to 100%)".into(),
                });
            }
        }
        plan.validate()?;
        if let (Some(max), Some(length)) = (self.max_duration, plan.planned_length()) {
            if length > max {
                return Err(no_room(max, "--duration", &plan, 1));
            }
        }
        check_descriptors(&plan)?;
        Ok(plan)
    }

    /// The SLO of `--slo`, `--max-p99` and `--max-error-rate` together.
    pub fn slo(&self) -> Slo {
        self.slo.clone().unwrap_or_default().and(Slo::from_flags(self.max_p99, self.max_error_rate))
    }

    /// `--find-max-rate`: the plan of every step (open loop at --start-rate, each
    /// --step-duration long after a --warmup) and the search's settings.
    pub fn to_search(&self) -> Result<(Plan, SearchConfig), PlanError> {
        let slo = self.slo();
        if slo.is_empty() {
            return Err(PlanError {
                flag: "--find-max-rate",
                problem: "needs an objective: --slo 'p99<1ms' (or --max-p99, --max-error-rate)".into(),
            });
        }
        if !(self.growth.is_finite() && self.growth > 1.0 && self.growth <= 100.0) {
            return Err(PlanError { flag: "--growth", problem: "a factor above 1 (at most 100)".into() });
        }
        if !(self.precision > 0.0 && self.precision <= 1.0) {
            return Err(PlanError { flag: "--precision", problem: "between 0% and 100%, above 0".into() });
        }
        // Each step is a run of --step-duration; --max-duration bounds the whole search.
        // A refusal names the flag the search was given (the step's plan knows --duration
        // and --rate).
        let rename = |e: PlanError| PlanError {
            flag: match e.flag {
                "--duration" => "--step-duration",
                "--rate" => "--start-rate",
                flag => flag,
            },
            problem: e.problem,
        };
        // Each step is an open loop (so --coalesce applies) of --step-duration.
        let step = RunArgs {
            duration: self.step_duration,
            max_duration: None,
            rate: Some(self.start_rate),
            ..self.clone()
        };
        step.check_repeat().map_err(rename)?;
        let mut plan = step.to_plan().map_err(rename)?;
        if plan.throughput.mode != Mode::Rr {
            return Err(PlanError {
                flag: "--find-max-rate",
                problem: "searches a message rate: request/response only (not with --mode send|receive|bulk)"
                    .into(),
            });
        }
        plan.model = Model::Open { rate: self.start_rate };
        let max_duration = self.max_duration.unwrap_or(DEFAULT_SEARCH_DURATION);
        let mut plan = capacity::step_plan(plan, self.step_duration, self.warmup);
        // Every step runs --repeat times, each its warm-up, --step-duration and drain.
        let step_length = plan.planned_length().unwrap_or_default().saturating_mul(self.repeat);
        if step_length > max_duration {
            return Err(no_room(max_duration, "--step-duration", &plan, self.repeat));
        }
        // Each step's runs are bounded by the search's bound (a step cut short says which).
        plan.max_duration = max_duration;
        plan.validate().map_err(rename)?;
        let cfg = SearchConfig {
            slo,
            start_rate: self.start_rate,
            growth: self.growth,
            precision: self.precision,
            repeat: self.repeat,
            max_duration,
            step_length,
            saturate_above: self.test_saturate_above,
            server_pid: self.server_pid,
        };
        Ok((plan, cfg))
    }

    /// `--repeat` is between 1 and [`MAX_REPEATS`], of request/response
    /// runs (their spread is of messages and latency).
    pub fn check_repeat(&self) -> Result<(), PlanError> {
        if self.repeat > 1 && self.to_plan()?.throughput.mode != Mode::Rr {
            return Err(PlanError {
                flag: "--repeat",
                problem: "request/response runs only (not with --mode send|receive|bulk)".into(),
            });
        }
        if self.repeat == 0 || self.repeat > MAX_REPEATS {
            return Err(PlanError { flag: "--repeat", problem: format!("between 1 and {MAX_REPEATS}") });
        }
        Ok(())
    }
}

/// `--max-duration` shorter than what it must hold: `runs` runs of `plan` (its warm-up,
/// its `duration`, as the user named it, and its drain).
fn no_room(max: Duration, duration: &str, plan: &Plan, runs: u32) -> PlanError {
    let d = |d: Duration| ns(d.as_nanos() as f64);
    let times = if runs > 1 { format!(", × --repeat {runs}") } else { String::new() };
    PlanError {
        flag: "--max-duration",
        problem: format!(
            "{} leaves no room for the run it bounds: --warmup {} + {duration} {} + --drain {}{times}",
            d(max),
            d(plan.warmup),
            d(plan.duration().unwrap_or_default()),
            d(plan.drain),
        ),
    }
}

/// Says up front when the connections cannot fit the descriptor limit (the soft limit,
/// which `main` raises to the hard one when the process starts): each connection or flow
/// is a descriptor, twice over with the built-in server in the same process, plus a few
/// for rings and files.
fn check_descriptors(plan: &Plan) -> Result<(), PlanError> {
    let limit = ringecho::sys::nofile_limit().unwrap_or(u64::MAX);
    let per_conn = if plan.target.is_none() { 2 } else { 1 };
    let conns = u64::from(plan.connections) + u64::from(plan.throughput.background);
    let need = conns * per_conn + 64 + 8 * plan.cpus.len() as u64;
    if need > limit {
        return Err(PlanError {
            flag: "--connections",
            problem: format!(
                "{} connections need about {need} descriptors, but this process may open {limit} \
                 (ulimit -n; raise the hard limit, e.g. in limits.conf or systemd's LimitNOFILE)",
                plan.connections
            ),
        });
    }
    Ok(())
}

impl ThroughputArgs {
    /// The plan's throughput part (checked with the rest of the plan).
    pub fn to_plan(&self) -> ThroughputPlan {
        ThroughputPlan {
            mode: self.mode,
            write_size: self.write_size,
            sndbuf: self.sndbuf,
            rcvbuf: self.rcvbuf,
            zerocopy: self.zerocopy,
            background: self.background,
            background_mode: self.background_mode,
            background_target: self.background_target.clone(),
        }
    }
}

fn refuse(flag: &'static str, problem: &str) -> PlanError {
    PlanError { flag, problem: problem.into() }
}

impl AbArgs {
    /// The validated comparison.
    pub fn to_plan(&self) -> Result<AbPlan, PlanError> {
        let l = &self.load;
        if l.hdr_log.is_some() {
            return Err(refuse("--hdr-log", "not with ab (each run's histograms are in --json)"));
        }
        if l.start_at.is_some() {
            return Err(refuse("--start-at", "not with ab (a run starts when its server listens)"));
        }
        if l.label.is_some() {
            return Err(refuse("--label", "not with ab (runs are labelled `A run 1`, `B run 1`, …)"));
        }
        if l.find_max_rate {
            return Err(refuse("--find-max-rate", "not with ab (run the search against each server)"));
        }
        if l.repeat != 1 {
            return Err(refuse("--repeat", "not with ab (--runs repeats each side, interleaved)"));
        }
        if l.slo.is_some() {
            return Err(refuse("--slo", "not with ab (use --max-p99, --max-error-rate, --max-slowdown)"));
        }
        if self.runs == 0 || self.runs > 1000 {
            return Err(refuse("--runs", "between 1 and 1000"));
        }
        if self.warmup_runs > 100 {
            return Err(refuse("--warmup-runs", "at most 100"));
        }
        for (flag, cmd) in [("--server-a", &self.server_a), ("--server-b", &self.server_b)] {
            if cmd.trim().is_empty() {
                return Err(refuse(flag, "an empty command"));
            }
        }
        let allowed = ringecho::sys::allowed_cpus().unwrap_or_else(|_| vec![0]);
        if let Some(cpus) = &self.server_cpus {
            if let Some(bad) = cpus.0.iter().find(|c| !allowed.contains(c)) {
                return Err(refuse(
                    "--server-cpus",
                    &format!("CPU {bad} is not available (allowed: {allowed:?})"),
                ));
            }
        }
        let mut load = l.to_plan()?;
        if l.cpus.is_none() && l.threads.is_none() {
            // The client on the CPUs the servers do not have, when there are any; else on
            // the CPUs a run with the built-in server would use.
            if let Some(server) = &self.server_cpus {
                let rest: Vec<usize> = allowed.iter().copied().filter(|c| !server.0.contains(c)).collect();
                if !rest.is_empty() {
                    load.cpus = rest.into_iter().take(load.connections.max(1) as usize).collect();
                }
            }
        }
        Ok(AbPlan {
            servers: [self.server_a.clone(), self.server_b.clone()],
            server_cpus: self.server_cpus.as_ref().map(|c| c.0.clone()),
            address: match &l.target {
                Some(t) => Address::Given(t.clone()),
                None => Address::Printed,
            },
            load,
            runs: self.runs,
            warmup_runs: self.warmup_runs,
            start_timeout: self.start_timeout,
            stop_timeout: self.stop_timeout,
            max_p99: l.max_p99,
            max_error_rate: l.max_error_rate,
            max_slowdown: self.max_slowdown,
        })
    }
}

#[cfg(test)]
mod tests;
