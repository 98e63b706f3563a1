//! The search against mocked steps: a target that sustains exactly `limit`.

use super::*;
use crate::text::search::report as text;

fn cfg(slo: &str) -> SearchConfig {
    SearchConfig {
        slo: Slo::parse(slo).unwrap(),
        start_rate: 1000.0,
        growth: 2.0,
        precision: 0.05,
        repeat: 1,
        max_duration: Duration::from_secs(3600),
        step_length: Duration::ZERO,
        saturate_above: None,
        server_pid: None,
    }
}

/// The search's document keeps the rules every document read keeps.
fn keeps_the_rules(s: &SearchDoc) {
    let doc = document(&crate::report::testing::full_report().plan, s.clone());
    doc.check().unwrap_or_else(|v| panic!("{v}"));
}

/// A step against a target whose p99 is 100 µs up to `limit` msg/s and 5 ms beyond.
fn mock(limit: f64, offered: f64, busy: f64, saturate_above: Option<f64>) -> StepDoc {
    mock_lag(limit, offered, busy, None, saturate_above)
}

/// As [`mock`], the client's send lag `lag_ns` for every message.
fn mock_lag(
    limit: f64,
    offered: f64,
    busy: f64,
    lag_ns: Option<u64>,
    saturate_above: Option<f64>,
) -> StepDoc {
    let mut h = crate::hist::new();
    let latency = if offered <= limit { 100_000 } else { 5_000_000 };
    let n = offered as u64;
    h.record_n(latency, n).unwrap();
    let mut doc = ResultDoc::empty("tcp://127.0.0.1:7".into(), None);
    doc.counters.sent = n;
    doc.counters.completed = n;
    doc.elapsed_s = 1.0;
    doc.latency.corrected = crate::document::Summary::of(&h);
    doc.latency.service = crate::document::Summary::of(&h);
    doc.latency.send_lag = lag_ns.map(|lag| {
        let mut l = crate::hist::new();
        l.record_n(lag, n).unwrap();
        crate::document::Summary::of(&l)
    });
    doc.derive();
    judge(offered, vec![Sample { doc, busy }], &Slo::parse("p99<1ms").unwrap(), saturate_above)
}

#[test]
fn finds_the_limit_within_the_precision() {
    for limit in [1000.0, 3_333.0, 12_000.0, 20_000.0, 777_777.0] {
        let s =
            search(&cfg("p99<1ms"), &AtomicBool::new(false), |r, _| Ok(mock(limit, r, 0.3, None))).unwrap();
        let a = s.answer.unwrap();
        assert!(a <= limit && a >= limit * 0.95, "limit {limit}: answer {a}");
        assert!(!s.lower_bound && s.stopped.is_none());
        assert_eq!(s.exit_code(), 0);
        assert_eq!(s.answer_step().unwrap().offered, a);
        keeps_the_rules(&s);
    }
}

#[test]
fn an_slo_never_met_has_no_answer() {
    let s = search(&cfg("p99<1ms"), &AtomicBool::new(false), |r, _| Ok(mock(10.0, r, 0.3, None))).unwrap();
    assert_eq!(s.answer, None);
    assert_eq!(s.steps.len(), 1);
    assert_eq!(s.exit_code(), 1);
    assert!(text("x", &s).contains("no rate met the SLO"), "{}", text("x", &s));
    keeps_the_rules(&s);
}

#[test]
fn a_saturated_client_makes_a_lower_bound() {
    // The target would sustain 100k; the client saturates above 8k.
    let s =
        search(&cfg("p99<1ms"), &AtomicBool::new(false), |r, _| Ok(mock(100_000.0, r, 0.3, Some(8_000.0))))
            .unwrap();
    let a = s.answer.unwrap();
    assert!((7_600.0..=8_000.0).contains(&a), "{a}");
    assert!(s.lower_bound);
    assert!(text("x", &s).contains("LOWER BOUND"));
    keeps_the_rules(&s);
    // Saturation only above a rate the target already failed at: a true answer.
    // 1k passes, 16k fails saturated, 8.5k fails on the SLO alone: the target's limit.
    let mut c = cfg("p99<1ms");
    c.growth = 16.0;
    let s = search(&c, &AtomicBool::new(false), |r, _| Ok(mock(6_000.0, r, 0.3, Some(10_000.0)))).unwrap();
    assert!(s.steps.iter().any(|s| s.client_saturated && !s.passed));
    assert!(!s.lower_bound, "the target broke the SLO below the saturated rate");
    assert!((5_700.0..=6_000.0).contains(&s.answer.unwrap()));
    // Measured: a client behind its schedule marks the step, whatever its CPU; a busy
    // client that kept to its schedule does not.
    let late = mock_lag(100_000.0, 1000.0, 0.5, Some(300_000), None);
    assert!(late.client_saturated && !late.passed);
    assert!(
        late.client_lag_p99_ns.is_some_and(|l| (299_000..=301_000).contains(&l)),
        "{:?}",
        late.client_lag_p99_ns
    );
    // The run's own warning says the step's verdict (the SLO's limit, not the plain one).
    let behind: Vec<_> =
        late.run.warnings.iter().filter(|w| matches!(w.warning, Warning::ClientBehind { .. })).collect();
    assert_eq!(behind.len(), 1, "{:?}", late.run.warnings);
    assert!(matches!(behind[0].warning, Warning::ClientBehind { limit_ns: 100_000, .. }));
    // A lag over the plain 100 µs but within a looser SLO's tenth: on time, no warning.
    let mut loose = mock_lag(100_000.0, 1000.0, 0.5, Some(300_000), None).run;
    loose
        .warnings
        .push((&Warning::ClientBehind { lag_p99_ns: 300_000, limit_ns: 100_000, busy: 0.5 }).into());
    let step = judge(1000.0, vec![Sample { doc: loose, busy: 0.5 }], &Slo::parse("p99<5ms").unwrap(), None);
    assert!(step.passed, "{:?}", step.reasons);
    assert!(!step.run.warnings.iter().any(|w| matches!(w.warning, Warning::ClientBehind { .. })));
    assert!(late.reasons[0].contains("send lag p99 300.0µs > 100.0µs"), "{:?}", late.reasons);
    let busy_on_time = mock_lag(100_000.0, 1000.0, 0.97, Some(20_000), None);
    assert!(!busy_on_time.client_saturated && busy_on_time.passed, "{:?}", busy_on_time.reasons);
    let one = search(&cfg("p99<1ms"), &AtomicBool::new(false), |_, _| Ok(late.clone())).unwrap();
    assert!(text("x", &one).contains("300.0µs"), "the table shows the lag: {}", text("x", &one));
}

#[test]
fn a_short_achieved_rate_fails_whatever_the_latency() {
    let mut step = mock(1e9, 1000.0, 0.1, None);
    assert!(step.passed);
    let mut doc = step.run.clone();
    doc.counters.completed = 960;
    doc.counters.sent = 960;
    let mut h = crate::hist::new();
    h.record_n(1_000, 960).unwrap();
    doc.latency.corrected = crate::document::Summary::of(&h);
    doc.latency.service = crate::document::Summary::of(&h);
    doc.derive();
    step = judge(1000.0, vec![Sample { doc, busy: 0.1 }], &Slo::default(), None);
    assert!(!step.passed);
    assert!(step.reasons[0].contains("below 97%"), "{:?}", step.reasons);
}

#[test]
fn repeats_pass_on_their_median() {
    let slo = Slo::parse("p99<1ms").unwrap();
    let sample = |latency: u64| {
        let mut h = crate::hist::new();
        h.record_n(latency, 1000).unwrap();
        let mut doc = ResultDoc::empty("tcp://127.0.0.1:7".into(), None);
        doc.counters.sent = 1000;
        doc.counters.completed = 1000;
        doc.elapsed_s = 1.0;
        doc.latency.corrected = crate::document::Summary::of(&h);
        doc.latency.service = crate::document::Summary::of(&h);
        doc.derive();
        Sample { doc, busy: 0.2 }
    };
    // One bad run of three: the median holds.
    let step = judge(1000.0, vec![sample(100_000), sample(9_000_000), sample(200_000)], &slo, None);
    assert!(step.passed, "{:?}", step.reasons);
    assert_eq!(step.run.repeats.len(), 3);
    assert!(step.point.p99 < 1e6);
    // Two of three: it does not.
    let step = judge(1000.0, vec![sample(100_000), sample(9_000_000), sample(2_000_000)], &slo, None);
    assert!(!step.passed);
}

#[test]
fn interrupted_and_bounded_searches_keep_their_steps() {
    let flag = AtomicBool::new(false);
    let mut n = 0;
    let s = search(&cfg("p99<1ms"), &flag, |r, _| {
        n += 1;
        if n == 3 {
            flag.store(true, Ordering::Relaxed);
            return Err(RunError::StartAtTooFar);
        }
        Ok(mock(1e6, r, 0.1, None))
    })
    .unwrap();
    assert_eq!(s.stopped, Some(Stopped::Interrupted));
    assert_eq!(s.steps.len(), 2);
    assert_eq!(s.exit_code(), 130);
    keeps_the_rules(&s);
}

/// --max-duration: a step starts only if its planned length (and the longest step so far)
/// fits in what is left, the first one too; each step is given the search's deadline. A
/// search stopped there has not converged: not a clean exit 0, however good its answer.
#[test]
fn a_bounded_search_starts_only_steps_that_fit() {
    let mut c = cfg("p99<1ms");
    c.max_duration = Duration::from_secs(3);
    c.step_length = Duration::from_secs(22);
    let s = search(&c, &AtomicBool::new(false), |r, _| Ok(mock(1e6, r, 0.1, None))).unwrap();
    assert_eq!((s.steps.len(), s.stopped), (0, Some(Stopped::MaxDuration)), "no step fits");
    assert_eq!(s.exit_code(), crate::exit::ERROR);
    // Steps of 100 ms planned at 120 ms in a search of 200 ms: the second would not fit.
    c.max_duration = Duration::from_millis(200);
    c.step_length = Duration::from_millis(120);
    let t0 = Instant::now();
    let mut deadlines = Vec::new();
    let s = search(&c, &AtomicBool::new(false), |r, deadline| {
        deadlines.push(deadline);
        std::thread::sleep(Duration::from_millis(100)); // the step's own length
        Ok(mock(1e6, r, 0.1, None))
    })
    .unwrap();
    assert_eq!((s.steps.len(), s.stopped, s.answer), (1, Some(Stopped::MaxDuration), Some(1000.0)));
    assert!(
        deadlines[0] >= t0 + c.max_duration && deadlines[0] < t0 + c.max_duration + Duration::from_millis(50)
    );
    assert_eq!(s.exit_code(), crate::exit::ERROR, "an answer that is only a lower bound of the search's");
    let words = text("tcp://127.0.0.1:7", &s);
    assert!(words.contains("stopped at --max-duration before the search converged"), "{words}");
    assert!(words.contains("lower bound"), "{words}");
}

#[test]
fn the_document_reads_back() {
    let s = search(&cfg("p99<1ms"), &AtomicBool::new(false), |r, _| Ok(mock(5_000.0, r, 0.3, None))).unwrap();
    let plan = crate::report::testing::full_report().plan;
    let doc = document(&plan, s);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let saved = crate::saved::Saved::from_bytes("search.json".into(), &bytes).unwrap();
    let search = saved.doc.search.as_ref().unwrap();
    assert_eq!(search.answer, doc.search.as_ref().unwrap().answer);
    assert_eq!(saved.doc.throughput.msgs_per_s, search.answer_step().unwrap().run.throughput.msgs_per_s);
}

#[test]
fn process_cpu_reads_our_own() {
    let spin = Instant::now();
    while spin.elapsed() < Duration::from_millis(30) {
        std::hint::black_box(0);
    }
    let cpu = process_cpu(std::process::id()).unwrap();
    assert!(cpu > Duration::ZERO);
    assert_eq!(process_cpu(u32::MAX), None);
}

#[test]
fn nested_documents_are_checked() {
    let s = search(&cfg("p99<1ms"), &AtomicBool::new(false), |r, _| Ok(mock(3_000.0, r, 0.3, None))).unwrap();
    let plan = crate::report::testing::full_report().plan;
    let doc = document(&plan, s);
    let read =
        |d: &ResultDoc| crate::saved::Saved::from_bytes("x.json".into(), &serde_json::to_vec(d).unwrap());
    // A search inside a step.
    let mut deep = doc.clone();
    let inner = deep.clone();
    deep.search.as_mut().unwrap().steps[0].run.search = inner.search;
    let e = read(&deep).unwrap_err().to_string();
    assert!(e.contains("search.steps[0] holds a search"), "{e}");
    // A step whose run breaks a rule is named.
    let mut bad = doc;
    bad.search.as_mut().unwrap().steps[1].run.counters.sent = 1;
    let e = read(&bad).unwrap_err().to_string();
    assert!(e.contains("search.steps[1]: counters.completed"), "{e}");
}

/// Issue 24: a search whose lowest step fails on the client's lag alone says the client,
/// not the SLO, exits 2 (nothing measured the target), and gives advice that fits.
#[test]
fn a_client_that_cannot_keep_up_at_the_lowest_rate_is_named() {
    let late = |r: f64, _| Ok(mock_lag(100_000.0, r, 0.5, Some(300_000), None));
    let s = search(&cfg("p99<1ms"), &AtomicBool::new(false), late).unwrap();
    assert_eq!(s.answer, None);
    assert_eq!(s.steps[0].blame, Some(Blame::Client));
    let t = text("x", &s);
    assert!(t.contains("no answer: the load generator could not keep its schedule even at the lowest rate tried, 1.00K msg/s"), "{t}");
    assert!(!t.contains("no rate met the SLO"), "{t}");
    assert_eq!(s.exit_code(), crate::exit::ERROR);
}

/// Steps above the answer that failed on the SLO alone bound it: the answer is no lower
/// bound, whatever a higher step's client did.
#[test]
fn an_answer_bounded_by_the_slo_is_no_lower_bound() {
    let mut c = cfg("p99<1ms");
    c.growth = 2.0;
    // 1k..128k pass; 256k fails on the client; bisecting, 136k..192k fail on p99 alone.
    let s = search(&c, &AtomicBool::new(false), |r, _| {
        Ok(if r >= 256_000.0 {
            mock_lag(130_000.0, r, 0.99, Some(2_000_000), None)
        } else {
            mock_lag(130_000.0, r, 0.6, Some(20_000), None)
        })
    })
    .unwrap();
    let a = s.answer.unwrap();
    assert!((123_000.0..=130_000.0).contains(&a), "{a}");
    assert_eq!(s.bounding_blame(), Some(Blame::Slo));
    assert!(!s.lower_bound);
    assert!(text("x", &s).contains(" met the SLO; "), "{}", text("x", &s));
}

/// Issue 23 item 5: a target that stops answering ends the search there, with exit 2 and
/// no answer, however many rates passed before.
#[test]
fn a_target_that_fails_ends_the_search() {
    let dead_above = |r: f64, _| {
        let mut step = mock(1e9, r, 0.3, None);
        if r > 4_000.0 {
            let mut doc = ResultDoc::empty("tcp://127.0.0.1:7".into(), None);
            doc.warnings.push((&Warning::NoAnswer { bytes_sent: 640 }).into());
            doc.derive();
            step = judge(r, vec![Sample { doc, busy: 0.1 }], &Slo::parse("p99<1ms").unwrap(), None);
        }
        Ok(step)
    };
    let s = search(&cfg("p99<1ms"), &AtomicBool::new(false), dead_above).unwrap();
    assert_eq!(s.stopped, Some(Stopped::TargetFailed));
    assert_eq!(s.steps.len(), 4, "1k, 2k, 4k pass; 8k fails and the search stops");
    assert_eq!(s.exit_code(), crate::exit::ERROR);
    let t = text("x", &s);
    assert!(t.contains("stopped: the target failed at 8.00K msg/s offered"), "{t}");
    assert!(t.contains("no answer: 4.00K msg/s passed before") && !t.contains("\nanswer: "), "{t}");
    assert_eq!(s.answer, None, "no answer from a target that failed");
}

/// Issue 24: a client behind its schedule is blamed only when its delay may be what broke
/// the SLO. When the latency from each actual send (the client's delay left out) breaks
/// it too, the target broke it.
#[test]
fn a_late_client_is_blamed_only_when_its_delay_could_have_broken_the_slo() {
    let step = |service_ns: u64| {
        let n = 1_000;
        let hist = |ns: u64| {
            let mut h = crate::hist::new();
            h.record_n(ns, n).unwrap();
            crate::document::Summary::of(&h)
        };
        let mut doc = ResultDoc::empty("tcp://127.0.0.1:7".into(), None);
        doc.counters.sent = n;
        doc.counters.completed = n;
        doc.elapsed_s = 1.0;
        doc.latency.corrected = hist(5_000_000);
        doc.latency.service = hist(service_ns);
        doc.latency.send_lag = Some(hist(4_000_000));
        doc.derive();
        judge(1_000.0, vec![Sample { doc, busy: 0.5 }], &Slo::parse("p99<1ms").unwrap(), None)
    };
    let late_client = step(200_000);
    assert!(late_client.client_saturated);
    assert_eq!(late_client.blame, Some(Blame::Client));
    let slow_target = step(3_000_000);
    assert!(slow_target.client_saturated, "the lag is still shown");
    assert_eq!(slow_target.blame, Some(Blame::Slo));
}
