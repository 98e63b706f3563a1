//! `--find-max-rate`: the highest open-loop rate a target sustains under an SLO.
//!
//! Steps at increasing offered rates grow geometrically (`--growth`, ×2) from
//! `--start-rate` until a step fails, then bisect between the last rate that passed and
//! the first that failed until they are within `--precision` of each other. Each step is
//! an ordinary open-loop run (its own warm-up, `--step-duration` measured, fresh
//! connections), repeated `--repeat` times; latency counts from the intended send time.
//!
//! The rule a step passes by ([`judge`]), in one place:
//! - the target did not fail (connections made and kept, echoes answered);
//! - the achieved rate (median over repeats) is at least [`MIN_ACHIEVED`] of the offered
//!   rate, whatever the latency;
//! - the load generator kept to its schedule: the p99 of its send lag (how late it
//!   handed messages out after their intended send time; median over repeats) at most
//!   a tenth of the SLO's tightest latency bound ([`Slo::lag_limit`]). Its CPU share is
//!   shown but not judged: an open-loop client spends CPU on waiting for due times,
//!   which shrinks as the rate grows, so a busy client may still be on time, and a late
//!   one puts its own delay into the latency being judged;
//! - the SLO holds at the medians of the repeats.
//!
//! A failing step is blamed on the client when it fell behind its schedule and the
//! latency from each actual send (its delay left out) met the SLO: then the client's
//! delay may be what broke it. When even that latency breaks the SLO, the target is
//! blamed, however late the client was. When the lowest failing step is blamed on the
//! client (or, in tests, the `--test-saturate-above` knob said so), the answer is a
//! lower bound: the target was not what stopped the search. The search ends at convergence, at
//! `--max-duration` (a step that would not fit is not started), at Ctrl-C (the steps so
//! far are kept), or after [`MAX_STEPS`].

pub use crate::document::{Blame, MAX_STEPS, SearchDoc, StepDoc, Stopped};

use crate::document::ResultDoc;
use crate::engine::RunError;
use crate::observe::process_cpu;
use crate::plan::{Model, Plan, Stop};
use crate::report::Report;
use crate::run::{Progress, run_until};
use crate::slo::{Point, Schedule, Slo};
use crate::stats::median;
use crate::units::{ns, rate, share};
use crate::views::{Context, client_advice};
use crate::warning::Warning;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A step passes only if it achieved at least this share of the offered rate.
pub const MIN_ACHIEVED: f64 = 0.97;

/// How the search runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// The objective every step is judged by.
    pub slo: Slo,
    /// The first rate tried, msg/s.
    pub start_rate: f64,
    /// The factor between rates while growing.
    pub growth: f64,
    /// Stop bisecting when (first failed − last passed) ≤ precision × last passed.
    pub precision: f64,
    /// Runs per step.
    pub repeat: u32,
    /// The whole search's bound.
    pub max_duration: Duration,
    /// How long one step lasts as planned (its runs' warm-up, step and drain): a step
    /// starts only if this, and the longest step so far, fit in what is left.
    pub step_length: Duration,
    /// Test knob (hidden flag): steps offered above this rate are taken as
    /// client-saturated, so a lower-bound answer can be staged deterministically.
    pub saturate_above: Option<f64>,
    /// A server process (`--server-pid`) whose CPU each step reports.
    pub server_pid: Option<u32>,
}

/// One run's part in a step: its document, and its workers' CPU share.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The run's document.
    pub doc: ResultDoc,
    /// The load workers' busy share ([`crate::figures::busy_share`]).
    pub busy: f64,
}

impl Sample {
    /// The sample of a finished run.
    pub fn of(report: &Report) -> Sample {
        Sample { doc: report.document(), busy: report.client_busy() }
    }
}

/// The latency clauses' figures from each actual send (the `service` latency): the
/// medians over the repeats, as the step's own point, or the run's own; no errors, no loss.
fn from_send(run: &ResultDoc) -> Point {
    let pick = |f: fn(&crate::document::Summary) -> u64| {
        if run.repeats.is_empty() {
            f(&run.latency.service) as f64
        } else {
            median(&run.repeats.iter().map(|r| f(&r.latency.service) as f64).collect::<Vec<_>>())
        }
    };
    Point {
        p50: pick(|s| s.p50),
        p90: pick(|s| s.p90),
        p99: pick(|s| s.p99),
        p999: pick(|s| s.p999),
        max: pick(|s| s.max),
        errors: 0.0,
        loss: 0.0,
    }
}

/// Judges a step offered at `offered` from its runs (see the module's rule).
pub fn judge(offered: f64, samples: Vec<Sample>, slo: &Slo, saturate_above: Option<f64>) -> StepDoc {
    let busy = median(&samples.iter().map(|s| s.busy).collect::<Vec<_>>());
    let lag_limit = slo.lag_limit();
    let lags: Vec<f64> =
        samples.iter().filter_map(|s| s.doc.latency.send_lag.as_ref()).map(|l| l.p99 as f64).collect();
    let schedule = (!lags.is_empty()).then(|| Schedule::new(median(&lags) as u64, lag_limit));
    let docs: Vec<ResultDoc> = samples
        .into_iter()
        .map(|mut s| {
            rejudge_schedule(&mut s.doc, lag_limit, s.busy);
            s.doc
        })
        .collect();
    let interrupted = docs.iter().any(|d| d.interrupted);
    let failures: Vec<String> = docs
        .iter()
        .flat_map(|d| d.warnings.iter().filter(|w| w.warning.is_failure()).map(|w| w.message.clone()))
        .collect();
    let run = if docs.len() == 1 {
        docs.into_iter().next().unwrap_or_else(empty)
    } else {
        crate::repeat::pool(docs)
    };
    let (point, achieved) = match (run.repeat_point(), &run.spread) {
        (Some(point), Some(spread)) => (point, spread.msgs_per_s.median),
        _ => {
            let c = &run.counters;
            (
                Point::of(&run.latency.corrected.histogram(), run.error_rate, c.lost, c.sent),
                run.throughput.msgs_per_s,
            )
        }
    };
    let behind = schedule.is_some_and(|s| s.behind());
    let staged = saturate_above.is_some_and(|r| offered > r);
    let saturated = behind || staged;
    let mut reasons = Vec::new();
    if interrupted {
        reasons.push("interrupted".to_owned());
    }
    if let Some(first) = failures.first() {
        reasons.push(format!("the target failed: {first}"));
    }
    if achieved < offered * MIN_ACHIEVED {
        reasons.push(format!(
            "achieved {} of {} offered (below {})",
            rate(achieved),
            rate(offered),
            share(MIN_ACHIEVED)
        ));
    }
    if let Some(s) = schedule.filter(Schedule::behind) {
        reasons.push(format!(
            "load generator behind its schedule (send lag p99 {} > {})",
            ns(s.lag_p99_ns as f64),
            ns(s.limit_ns as f64)
        ));
    } else if staged {
        reasons.push("load generator saturated (staged by the test knob)".to_owned());
    }
    let nothing = run.counters.completed == 0 && !interrupted;
    if nothing && failures.is_empty() {
        reasons.push("the target failed: nothing answered".to_owned());
    }
    let breaches = slo.breaches(&point);
    let sustained = achieved >= offered * MIN_ACHIEVED;
    reasons.extend(breaches.iter().cloned());
    // A client behind its schedule delays its messages, and that delay is in the
    // latency judged; but when the latency from each actual send (its delay left out)
    // breaks the SLO's latency clauses too, the target broke it whatever the client's
    // lag. Errors and loss are left out of this test: a client far behind refuses
    // messages itself (backlog overflow).
    let target_breaks_slo = !slo.breaches(&from_send(&run)).is_empty();
    // The first that applies, in this order of blame.
    let blame = if interrupted {
        Some(Blame::Interrupted)
    } else if !failures.is_empty() || nothing {
        Some(Blame::Target)
    } else if staged || (behind && !target_breaks_slo) {
        Some(Blame::Client)
    } else if !sustained || !breaches.is_empty() {
        Some(Blame::Slo)
    } else if behind {
        // Failed on the client's lag alone.
        Some(Blame::Client)
    } else {
        None
    };
    StepDoc {
        offered,
        achieved,
        passed: reasons.is_empty(),
        client_busy: busy,
        client_saturated: saturated,
        client_lag_p99_ns: schedule.map(|s| s.lag_p99_ns),
        interrupted,
        point,
        reasons,
        blame,
        server_cpu: None,
        run,
    }
}

/// A step's run judged its client by the plain-run limit ([`crate::slo::LAG_LIMIT`]);
/// the search judges it by the SLO's ([`Slo::lag_limit`]). Its `client_behind` warning
/// is made to say the step's verdict, so a saved step does not contradict itself.
fn rejudge_schedule(doc: &mut ResultDoc, limit: Duration, busy: f64) {
    doc.warnings.retain(|w| !matches!(w.warning, Warning::ClientBehind { .. }));
    let schedule = doc.latency.send_lag.as_ref().map(|l| Schedule::new(l.p99, limit));
    if let Some(s) = schedule.filter(Schedule::behind) {
        let behind = Warning::ClientBehind { lag_p99_ns: s.lag_p99_ns, limit_ns: s.limit_ns, busy };
        doc.warnings.push((&behind).into());
    }
}

fn empty() -> ResultDoc {
    ResultDoc::empty(String::new(), None)
}

/// The search: `step(rate, deadline)` runs and judges one step, over by `deadline` (the
/// search's). Stops at convergence, when `interrupted` is set (a step that fails to start
/// then counts as interrupted, not as an error), at `max_duration` (a step is started
/// only if its planned length, and the longest step so far, still fit), or after
/// [`MAX_STEPS`].
pub fn search(
    cfg: &SearchConfig,
    interrupted: &AtomicBool,
    mut step: impl FnMut(f64, Instant) -> Result<StepDoc, RunError>,
) -> Result<SearchDoc, RunError> {
    let started = Instant::now();
    let deadline = started + cfg.max_duration;
    let mut steps: Vec<StepDoc> = Vec::new();
    let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = cfg.start_rate;
    let mut longest = Duration::ZERO;
    let mut stopped = None;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            stopped = Some(Stopped::Interrupted);
            break;
        }
        if steps.len() >= MAX_STEPS {
            stopped = Some(Stopped::StepLimit);
            break;
        }
        if started.elapsed() + longest.max(cfg.step_length) > cfg.max_duration {
            stopped = Some(Stopped::MaxDuration);
            break;
        }
        let began = Instant::now();
        let result = step(rate, deadline);
        longest = longest.max(began.elapsed());
        let s = match result {
            Ok(s) => s,
            Err(_) if interrupted.load(Ordering::Relaxed) => {
                stopped = Some(Stopped::Interrupted);
                break;
            }
            Err(e) => return Err(e),
        };
        let (passed, was_interrupted, blame) = (s.passed, s.interrupted, s.blame);
        steps.push(s);
        if was_interrupted {
            stopped = Some(Stopped::Interrupted);
            break;
        }
        // A target that failed at one rate says nothing trustworthy of the next: the
        // search stops here, and no answer is taken past it.
        if blame == Some(Blame::Target) {
            stopped = Some(Stopped::TargetFailed);
            break;
        }
        if passed {
            good = Some(good.map_or(rate, |g: f64| g.max(rate)));
        } else {
            bad = Some(bad.map_or(rate, |b: f64| b.min(rate)));
        }
        rate = match (good, bad) {
            (Some(g), None) => (g * cfg.growth).min(1e9),
            (None, _) => break,
            (Some(g), Some(b)) if b - g <= cfg.precision * g => break,
            (Some(g), Some(b)) => (g + b) / 2.0,
        };
        if good == Some(1e9) {
            break;
        }
    }
    // The answer is only ever a rate at which the target was alive and answering.
    let answer = good.filter(|_| stopped != Some(Stopped::TargetFailed));
    let mut doc = SearchDoc {
        slo_text: cfg.slo.to_string(),
        slo: cfg.slo.clone(),
        precision: cfg.precision,
        min_achieved: MIN_ACHIEVED,
        repeat: cfg.repeat,
        answer,
        lower_bound: false,
        advice: None,
        stopped,
        steps,
    };
    // A lower bound when the failure that bounds the answer from above (the lowest
    // failing rate above it) was the client's.
    doc.lower_bound = answer.is_some() && doc.bounding_blame() == Some(Blame::Client);
    Ok(doc)
}

/// Runs a search with `base` as the plan of every step (its rate replaced by the
/// step's), and returns the document: the answer's step (or the first step when no rate
/// met the SLO; an empty document when none ran), with the search in `search`.
/// `on_step` sees each step as it is judged (for a progress line).
pub fn run(
    base: &Plan,
    cfg: &SearchConfig,
    interrupted: Arc<AtomicBool>,
    mut on_step: impl FnMut(&StepDoc),
) -> Result<ResultDoc, RunError> {
    let mut spare_cpus = 0;
    let mut search = search(cfg, &interrupted, |rate, deadline| {
        let mut plan = base.clone();
        plan.model = Model::Open { rate };
        let server_before = cfg.server_pid.and_then(process_cpu).map(|cpu| (cpu, Instant::now()));
        let mut samples = Vec::new();
        for _ in 0..cfg.repeat.max(1) {
            let report = run_until(plan.clone(), interrupted.clone(), Progress::Hide, None, Some(deadline))?;
            let stop = report.interrupted;
            spare_cpus = report.spare_cpus;
            samples.push(Sample::of(&report));
            if stop {
                break;
            }
        }
        let mut step = judge(rate, samples, &cfg.slo, cfg.saturate_above);
        step.server_cpu = server_before.and_then(|(before, at)| {
            let after = process_cpu(cfg.server_pid?)?;
            Some(after.saturating_sub(before).as_secs_f64() / at.elapsed().as_secs_f64().max(1e-9))
        });
        on_step(&step);
        Ok(step)
    })?;
    if search.bounding_blame() == Some(Blame::Client) {
        let stream = base.target.as_ref().is_none_or(|t| !t.is_datagram());
        let ctx = Context { spare_cpus, stream_open_loop: stream, ..Context::default() };
        search.advice = Some(client_advice(&ctx));
    }
    Ok(document(base, search))
}

/// The search's document (see [`run`]).
pub fn document(base: &Plan, search: SearchDoc) -> ResultDoc {
    let shown = search.answer_step().or(search.steps.first()).map(|s| s.run.clone());
    // A search interrupted before any step ended: its (unresolved) target as text; the
    // built-in server's loopback address is not known then.
    let target = base.target.as_ref().map_or_else(|| "tcp://127.0.0.1:0".to_owned(), ToString::to_string);
    let mut doc = shown.unwrap_or_else(|| ResultDoc::empty(target, Some(base.clone())));
    doc.interrupted |= search.stopped == Some(Stopped::Interrupted);
    if doc.interrupted && !doc.warnings.iter().any(|w| w.warning == Warning::Interrupted) {
        doc.warnings.push((&Warning::Interrupted).into());
    }
    doc.exit_code = search.exit_code();
    doc.search = Some(Box::new(search));
    doc
}

/// A step's plan: `base` (validated) with the step's length and warm-up.
pub fn step_plan(mut base: Plan, step: Duration, warmup: Duration) -> Plan {
    base.stop = Stop::Duration(step);
    base.warmup = warmup;
    base
}

#[cfg(test)]
mod tests;
