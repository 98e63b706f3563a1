//! A run's [`Report`]: its figures, its warnings and what limited it ([`Report::assess`]),
//! the thresholds it failed ([`Report::check_slo`]), the exit code they imply, and its
//! result document ([`Report::document`], which carries the full histograms). Its text
//! is `crate::text::run`'s.
//!
//! Invariant: the derived figures come from [`Figures::of`], the exit code from
//! [`crate::exit::code`], the client's busy share from [`busy_share`]; nothing here
//! computes them again.

use crate::counters::Counters;
use crate::document::{Builtin, Latency, LatencyBreakdown, ResultDoc, SCHEMA_VERSION, TOOL, WarningEntry};
use crate::engine::Breakdown;
use crate::figures::{Bulk, Figures, Throughput, busy_share};
use crate::hist::Hist;
use crate::plan::{Model, Plan};
use crate::slo::{LAG_LIMIT, Point, Schedule, Slo};
use crate::views::{Context, Limit, SATURATED, Views};
use crate::warning::Warning;
use std::time::Duration;

/// A run's result.
pub struct Report {
    /// The plan as run.
    pub plan: Plan,
    /// The target as resolved.
    pub target: String,
    /// The built-in server, when there was one.
    pub builtin: Option<Builtin>,
    /// Measured time (after warm-up), actual.
    pub elapsed: Duration,
    /// Counts.
    pub counters: Counters,
    /// Latency from the intended send time.
    pub latency: Hist,
    /// Latency from the actual send.
    pub service: Hist,
    /// Open loop: how late the client handed each measured message out after its
    /// intended send time (empty in a closed loop).
    pub lag: Hist,
    /// Connection set-up times.
    pub connect: Hist,
    /// Per-second latency histograms, encoded (start and length, ns since the run
    /// began); kept only when the plan asks for them (`--hdr-log`).
    pub intervals: Vec<(u64, u64, String)>,
    /// CPU time the load workers used.
    pub load_cpu: Duration,
    /// Wall time the load workers ran (warm-up, measure and drain).
    pub wall: Duration,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
    /// What went against the user's interest.
    pub warnings: Vec<Warning>,
    /// Thresholds that failed, each as shown (`--verify`'s too).
    pub failed_checks: Vec<String>,
    /// The run's label (`--label`).
    pub label: Option<String>,
    /// When the measured run began (after any `--start-at` wait), Unix seconds.
    pub started_unix: f64,
    /// The measured connections' byte figures, in a bulk mode (`--mode send|receive|bulk`).
    pub bulk: Option<Bulk>,
    /// The background flows' figures (`--background`).
    pub background: Option<Bulk>,
    /// Client and server CPU over the window, the kernel's counters, what limited the run.
    pub views: Option<Views>,
    /// Where the time to a reply went, by the kernel's stamps (empty with
    /// `--user-timestamps` or where the sockets give none).
    pub breakdown: Breakdown,
    /// CPUs this machine allows that neither the load nor the built-in server used (the
    /// advice for a client that limited the run depends on it; not part of a result).
    pub spare_cpus: usize,
}

impl Report {
    /// The figures derived from the counters over the measured window.
    pub fn figures(&self) -> Figures {
        Figures::of(&self.counters, self.elapsed.as_secs_f64())
    }

    /// Answered messages per second in the measured window.
    pub fn throughput(&self) -> f64 {
        self.figures().throughput.msgs_per_s
    }

    /// Failed ÷ (answered + failed), failed as [`Counters::failed`] counts it.
    pub fn error_rate(&self) -> f64 {
        self.figures().error_rate
    }

    /// An open loop's keeping of its schedule, judged against `limit`: the p99 of the
    /// send lag of the measured messages. `None` in a closed loop, and when no measured
    /// message was handed out.
    pub fn schedule(&self, limit: Duration) -> Option<Schedule> {
        if !matches!(self.plan.model, Model::Open { .. }) || self.lag.is_empty() {
            return None;
        }
        Some(Schedule::new(self.lag.value_at_quantile(0.99), limit))
    }

    /// The client's busy share: its busiest worker's share of the window wanting a CPU
    /// (what the verdict judges), or, when the window's figures were not read, the load
    /// workers' CPU over the run ([`busy_share`]).
    pub fn client_busy(&self) -> f64 {
        match self.views.as_ref().filter(|v| !v.client.busy.is_empty()) {
            Some(v) => v.client.peak(),
            None => busy_share(self.load_cpu, self.wall, self.plan.cpus.len()),
        }
    }

    /// What the verdict is drawn from besides the views' figures.
    pub fn context(&self, schedule: Option<Schedule>) -> Context {
        let datagram = self.plan.target.as_ref().is_some_and(crate::target::Target::is_datagram);
        let (lost, sent) = if datagram { (self.counters.lost, self.counters.sent) } else { (0, 0) };
        Context {
            schedule,
            lost,
            sent,
            spare_cpus: self.spare_cpus,
            stream_open_loop: !datagram && matches!(self.plan.model, Model::Open { .. }),
        }
    }

    /// Fills `warnings`, and concludes the views' verdict ([`crate::views::judge`]): the
    /// client's warnings say what the verdict says of it.
    pub fn assess(&mut self) {
        let busy = self.client_busy();
        let schedule = self.schedule(LAG_LIMIT);
        let ctx = self.context(schedule);
        if let Some(v) = &mut self.views {
            v.conclude(&ctx);
        }
        let limit = self.views.as_ref().map(|v| v.limit);
        match schedule {
            // An open loop's client is judged by whether it kept to its schedule: its CPU
            // share includes the waiting for due times, which shrinks under load.
            Some(s) if s.behind() => self.warnings.push(Warning::ClientBehind {
                lag_p99_ns: s.lag_p99_ns,
                limit_ns: s.limit_ns,
                busy,
            }),
            Some(_) => {}
            None if limit.is_some_and(|l| matches!(l, Limit::ClientCpu | Limit::ClientAndServerCpu)) => {
                self.warnings.push(Warning::ClientSaturated { busy })
            }
            // No window figures: the run's CPU share alone.
            None if limit.is_none() && busy >= SATURATED => {
                self.warnings.push(Warning::ClientSaturated { busy })
            }
            None => {}
        }
        if let Some(v) = self.views.as_ref().filter(|v| v.limit == Limit::Contention) {
            let side = |s: &crate::views::SideCpu| s.most_waiting().unwrap_or((0, 0.0));
            let server = v.server.as_ref().map(|s| side(&s.cpu)).unwrap_or((0, 0.0));
            let client = side(&v.client);
            let (who, (worker, waiting)) =
                if server.1 >= client.1 { ("server", server) } else { ("client", client) };
            self.warnings.push(Warning::CpuContention { side: who.into(), worker, waiting });
        }
        if let Model::Open { rate } = self.plan.model {
            let achieved = self.throughput();
            if achieved < rate * 0.98 && !self.interrupted {
                self.warnings.push(Warning::RateShortfall { requested: rate, achieved });
            }
        }
        let failed = self.figures().failed;
        if failed > 0 {
            self.warnings.push(Warning::Errors { failed });
        }
        if let Some(b) = &self.builtin {
            if b.server_cpus.iter().any(|c| self.plan.cpus.contains(c)) {
                self.warnings.push(Warning::SharedCpu);
            }
        }
        if self.interrupted {
            self.warnings.push(Warning::Interrupted);
        }
        if let Some(v) = &self.views {
            for (counter, grew, _) in v.kernel_hints() {
                self.warnings.push(Warning::KernelCounter { counter: counter.into(), grew });
            }
        }
    }

    /// The exit code: 130 interrupted (the partial report is printed); 2 the figures
    /// cannot be trusted (nothing answered, not an echo, connections lost or never made:
    /// a [`Warning::is_failure`]); 1 a check the user set failed; 0 success.
    pub fn exit_code(&self) -> i32 {
        let untrusted = self.nothing_measured() || self.warnings.iter().any(Warning::is_failure);
        crate::exit::code(self.interrupted, untrusted, !self.failed_checks.is_empty())
    }

    /// Nothing was measured: no message answered, or in a bulk mode no byte moved.
    pub fn nothing_measured(&self) -> bool {
        match &self.bulk {
            Some(b) => b.moved() == 0,
            None => self.counters.completed == 0,
        }
    }

    /// Checks the thresholds the user set (`--max-p99` and `--max-error-rate` are SLO
    /// clauses, judged as [`Report::check_slo`] judges any).
    pub fn check(&mut self, max_p99: Option<Duration>, max_error_rate: Option<f64>) {
        self.check_slo(&Slo::from_flags(max_p99, max_error_rate));
    }

    /// The SLO's figures of this run ([`Point::of`]).
    pub fn slo_point(&self) -> Point {
        Point::of(&self.latency, self.error_rate(), self.counters.lost, self.counters.sent)
    }

    /// `--verify`'s check: the bytes that differed, when any did.
    pub fn verify_failed(&self) -> Option<String> {
        let c = &self.counters;
        if !self.plan.verify || c.mismatched_bytes == 0 {
            return None;
        }
        Some(if self.bulk.is_some() {
            format!("--verify: {} bytes differed from what the target should have sent", c.mismatched_bytes)
        } else {
            format!(
                "--verify: {} bytes in {} messages differed from what was sent",
                c.mismatched_bytes, c.mismatched_messages
            )
        })
    }

    /// Checks an SLO (and `--verify`): each clause broken is a failed check (exit 1).
    pub fn check_slo(&mut self, slo: &Slo) {
        let breaches = slo.breaches(&self.slo_point());
        self.failed_checks.extend(breaches);
        self.failed_checks.extend(self.verify_failed());
    }

    /// The result document (`--json`).
    pub fn document(&self) -> ResultDoc {
        let open = matches!(self.plan.model, Model::Open { .. });
        let mut doc = ResultDoc {
            schema_version: SCHEMA_VERSION,
            tool: TOOL.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: self.label.clone(),
            target: self.target.clone(),
            transport: self.target.split("://").next().unwrap_or("").into(),
            builtin: self.builtin.clone(),
            plan: Some(self.plan.clone()),
            elapsed_s: self.elapsed.as_secs_f64(),
            started_unix: self.started_unix,
            interrupted: self.interrupted,
            counters: self.counters,
            // Derived: filled in by `derive` below.
            failed: 0,
            error_rate: 0.0,
            throughput: Throughput::default(),
            latency: Latency {
                breakdown: LatencyBreakdown::of(&self.breakdown),
                ..Latency::of(&self.latency, &self.service, &self.connect, open.then_some(&self.lag))
            },
            load_cpu_s: self.load_cpu.as_secs_f64(),
            warnings: self.warnings.iter().map(WarningEntry::from).collect(),
            failed_checks: self.failed_checks.clone(),
            exit_code: self.exit_code(),
            merged_from: None,
            repeats: Vec::new(),
            spread: None,
            search: None,
            bulk: self.bulk.clone(),
            background: self.background.clone(),
            views: self.views.clone(),
        };
        doc.derive();
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testing::full_report;
    use crate::views::Limit;

    /// The warning and the limit line judge the client by the one threshold: a client
    /// 87% busy (between the 85% the verdict used and the 90% the warning used) is
    /// saturated in both, or in neither.
    #[test]
    fn the_warning_and_the_limit_agree_on_saturation() {
        let mut r = full_report();
        r.plan.model = Model::Closed { depth: 1 };
        r.plan.cpus = vec![1];
        r.warnings.clear();
        r.wall = Duration::from_secs(10);
        r.load_cpu = Duration::from_millis(8_700);
        let v = r.views.as_mut().unwrap();
        (v.client.busy, v.client.waiting) = (vec![0.87], vec![0.0]);
        let server = &mut v.server.as_mut().unwrap().cpu;
        (server.busy, server.waiting) = (vec![0.3], vec![0.0]);
        r.assess();
        let warned = r.warnings.iter().any(|w| matches!(w, Warning::ClientSaturated { .. }));
        let limit = r.views.as_ref().unwrap().limit;
        assert!(warned && limit == Limit::ClientCpu, "warned {warned}, limit {limit:?}");
    }
}

#[cfg(test)]
pub(crate) mod testing;
