//! A fully populated report, for tests of the document and of what reads it.

use crate::counters::Counters;
use crate::document::Builtin;
use crate::hist;
use crate::plan::{Model, Plan, SizeSpec, Stop};
use crate::report::Report;
use crate::warning::Warning;
use std::time::Duration;

/// A report with every part filled in: built-in server, label, every warning, a
/// failed check, failures of every kind.
pub fn full_report() -> Report {
    let (mut latency, mut service, mut connect) = (hist::new(), hist::new(), hist::new());
    let mut lag = hist::new();
    for v in 1..=2_000u64 {
        hist::record(&mut latency, v * 1_013);
        hist::record(&mut service, v * 997);
        hist::record(&mut lag, v * 16);
    }
    for v in [40_000, 87_000, 120_000] {
        hist::record(&mut connect, v);
    }
    let counters = Counters {
        sent: 2_020,
        completed: 2_000,
        warmup_completed: 300,
        bytes_sent: 2_320 * 700,
        bytes_received: 2_300 * 700,
        bytes_echoed: 2_000 * 700,
        reset: 1,
        failed_messages: 3,
        mismatched_messages: 1,
        mismatched_bytes: 9,
        lost: 5,
        late: 1,
        unanswered_at_end: 2,
        backlog_overflow: 4,
        connects: 12,
        conns_lost: 1,
        sends: 2_100,
        buf_errors: 1,
        gso_trains: 7,
        gro_trains: 5,
        ..Counters::default()
    };
    Report {
        plan: Plan {
            target: None,
            connections: 4,
            model: Model::Open { rate: 1_234.5 },
            size: SizeSpec { min: 64, max: 1_400 },
            stop: Stop::Duration(Duration::from_millis(2_500)),
            warmup: Duration::from_millis(200),
            verify: true,
            cpus: vec![1, 2],
            udp_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(2),
            drain: Duration::from_secs(1),
            seed: 42,
            churn: None,
            coalesce: false,
            send_window: None,
            gso: false,
            max_duration: std::time::Duration::from_secs(60),
            intervals: false,
            throughput: Default::default(),
            spin: false,
            server_metrics: None,
            server_pid: None,
            timestamps: crate::plan::Timestamps::Kernel,
        },
        target: "tcp://127.0.0.1:40001".into(),
        builtin: Some(Builtin {
            server_cpus: vec![0],
            server_bytes_in: 1_610_000,
            server_bytes_out: 1_610_000,
            server_recv_ops: 20_000,
        }),
        elapsed: Duration::from_millis(2_500),
        counters,
        latency,
        service,
        lag,
        connect,
        intervals: Vec::new(),
        load_cpu: Duration::from_micros(1_234_567),
        wall: Duration::from_millis(3_700),
        interrupted: false,
        warnings: vec![
            Warning::ClientSaturated { busy: 0.93 },
            Warning::ClientBehind { lag_p99_ns: 31_700, limit_ns: 100_000, busy: 0.93 },
            Warning::RateShortfall { requested: 1_234.5, achieved: 800.0 },
            Warning::Errors { failed: 15 },
            Warning::SharedCpu,
            Warning::Interrupted,
            Warning::NotConcurrent { overlap_s: 0.5, span_s: 2.6 },
            Warning::ServerMetrics { url: "http://127.0.0.1:1/metrics".into(), cause: "Connection refused".into() },
            Warning::KernelCounter { counter: "udp_rcvbuf_errors".into(), grew: 7 },
            Warning::PinFailed { cpu: 2, cause: "Invalid argument (os error 22)".into() },
            Warning::CpuContention { side: "server".into(), worker: 0, waiting: 0.3 },
            Warning::FewAnswers { answered: 3 },
            Warning::Garbled { messages: 4, bytes: 12 },
            Warning::ForeignReplies { garbage: 30, answered: 2_000 },
        ],
        failed_checks: vec!["p99 2.03ms > --max-p99 1.00ms".into()],
        label: Some("lg1".into()),
        started_unix: 1_764_000_000.125,
        bulk: None,
        background: None,
        spare_cpus: 0,
        breakdown: Default::default(),
        views: Some(crate::views::Views {
            window_s: 2.5,
            client: crate::views::SideCpu { cpu_s: 1.0, busy: vec![0.41, 0.39], waiting: vec![0.0, 0.01] },
            server: Some(crate::views::ServerView {
                source: "built-in".into(),
                cpu: crate::views::SideCpu { cpu_s: 2.4, busy: vec![0.99], waiting: vec![0.48] },
                process_cpu_s: None,
                recv_ops: 20_000,
                dgrams_in: 0,
                dgrams: Some(crate::views::ServerDgrams { echoed: 0, dropped: 0, enobufs: 0 }),
                timing: Some(crate::views::ServerTiming {
                    wake: crate::views::PartFigures { count: 20_000, p50_ns: 25_000.0, p99_ns: 44_000.0, mean_ns: 26_000.0 },
                    send: crate::views::PartFigures { count: 5_000, p50_ns: 3_900.0, p99_ns: 8_000.0, mean_ns: 4_300.0 },
                }),
            }),
            kernel: ringecho::procfs::NetCounters { udp_rcvbuf_errors: 7, ..Default::default() },
            others: vec![crate::views::OtherProcess { pid: 4242, comm: "spinner".into(), cpu: 0.97 }],
            limit: crate::views::Limit::ServerCpu,
            limit_text: "limit: server CPU (worker 0 busy 99% of the window: 51% running, 48% waiting for a CPU; client 41%)"
                .into(),
            spin: false,
        }),
    }
}

/// The smallest run a document may be: no plan, nothing answered, empty histograms.
pub fn minimal_run() -> serde_json::Value {
    let e = hist::encode(&hist::new());
    serde_json::json!({
        "schema_version": 1, "tool": "ringload", "transport": "tcp", "elapsed_s": 0, "counters": {},
        "latency": {"corrected": {"histogram": e}, "service": {"histogram": e}, "connect": {"histogram": e}},
    })
}

/// A search of `steps` minimal steps (offered 1000, 1001, ... msg/s), each failing with
/// `repeats` repeats, in a minimal run.
pub fn minimal_search(steps: usize, repeats: usize) -> serde_json::Value {
    let run = minimal_run();
    let mut step_run = run.clone();
    if repeats > 0 {
        step_run["repeats"] = vec![run.clone(); repeats].into();
    }
    let steps: Vec<serde_json::Value> = (0..steps)
        .map(|i| {
            serde_json::json!({
                "offered": 1000.0 + i as f64, "achieved": 0.0, "passed": false, "client_busy": 0.0,
                "client_saturated": false, "reasons": ["nothing answered"],
                "point": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "errors": 0.0, "loss": 0.0},
                "run": step_run,
            })
        })
        .collect();
    let mut doc = run;
    doc["search"] = serde_json::json!({
        "slo": {"clauses": []}, "slo_text": "", "precision": 0.05, "min_achieved": 0.97,
        "repeat": repeats.max(1), "answer": null, "lower_bound": false, "steps": steps,
    });
    doc
}

/// A breakdown by kernel timestamps: 100 stamped replies, 10 of them probes split.
pub fn stamped_breakdown() -> crate::engine::Breakdown {
    let mut b = crate::engine::Breakdown::default();
    for v in 1..=100u64 {
        hist::record(&mut b.client_receive, 2_000 + v);
        hist::record(&mut b.user_to_user, 60_000 + v);
    }
    for v in 1..=10u64 {
        hist::record(&mut b.client_send, 5_000 + v);
        hist::record(&mut b.network_server, 40_000 + v);
        hist::record(&mut b.probe_lag, 10_000 + v);
        hist::record(&mut b.probe_latency, 55_000 + 3 * v);
    }
    b.tally = crate::engine::StampTally {
        stamped: 100,
        unstamped: 2,
        implausible: 1,
        probes: 11,
        split: 10,
        probes_missing: 1,
        stray: 0,
        bound_ns: 50,
    };
    b
}
