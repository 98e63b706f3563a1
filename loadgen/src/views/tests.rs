//! The verdict on figures, and the lines that say it.

use super::*;

fn views(client: &[f64], server: Option<&[f64]>, waiting: f64) -> Views {
    let side = |b: &[f64]| SideCpu { cpu_s: 1.0, busy: b.to_vec(), waiting: vec![waiting; b.len()] };
    Views {
        window_s: 1.0,
        client: side(client),
        server: server.map(|s| ServerView { source: "built-in".into(), cpu: side(s), ..Default::default() }),
        kernel: NetCounters::default(),
        others: Vec::new(),
        limit: Limit::Unknown,
        limit_text: String::new(),
        spin: false,
    }
}

/// An open loop whose client kept to its schedule.
const KEPT: Option<Schedule> = Some(Schedule { lag_p99_ns: 10_000, limit_ns: 100_000 });
/// An open loop whose client fell behind.
const BEHIND: Option<Schedule> = Some(Schedule { lag_p99_ns: 300_000, limit_ns: 100_000 });

/// The verdict on busy shares alone (nothing waited, nothing lost).
fn judged(client: Option<f64>, server: Option<f64>, schedule: Option<Schedule>, spin: bool) -> Limit {
    let side = |busy: f64| Busiest { busy, waiting: 0.0 };
    judge(&Evidence {
        client: client.map(side),
        server: server.map(side),
        schedule,
        spin,
        lost: 0,
        sent: 0,
        kernel_drops: 0,
    })
}

fn ctx(schedule: Option<Schedule>) -> Context {
    Context { schedule, spare_cpus: 0, ..Context::default() }
}

#[test]
fn an_open_loop_client_limits_the_run_when_it_falls_behind_not_when_it_is_busy() {
    assert_eq!(judged(Some(0.97), Some(0.6), KEPT, false), Limit::Rate, "busy, but on time");
    assert_eq!(
        judged(Some(0.5), Some(0.6), BEHIND, false),
        Limit::ClientSchedule,
        "behind, whatever its CPU"
    );
    assert_eq!(judged(Some(0.99), Some(0.95), BEHIND, false), Limit::ClientAndServerCpu);
    assert_eq!(judged(Some(0.99), Some(0.95), KEPT, false), Limit::ServerCpu);
    assert_eq!(judged(Some(0.99), None, KEPT, false), Limit::Unknown, "the server may have set the pace");
    let limit = Schedule { lag_p99_ns: 100_000, limit_ns: 100_000 };
    assert!(!limit.behind(), "at the limit is still on time");
    let mut v = views(&[0.97], Some(&[0.5]), 0.0);
    v.conclude(&ctx(BEHIND));
    assert!(
        v.limit_text.starts_with(
            "limit: client schedule (behind: send lag p99 300.0µs > 100.0µs; worker 0 busy 97% of the window; server worker 0 busy 50% of the window) — "
        ),
        "{}",
        v.limit_text
    );
    v.conclude(&ctx(KEPT));
    assert!(v.limit_text.contains("client 97%, send lag p99 10.0µs ≤ 100.0µs"), "{}", v.limit_text);
}

#[test]
fn verdicts_on_figures() {
    assert_eq!(judged(Some(0.99), Some(0.4), None, false), Limit::ClientCpu);
    assert_eq!(judged(Some(0.41), Some(0.99), None, false), Limit::ServerCpu);
    assert_eq!(judged(Some(0.9), Some(0.95), None, false), Limit::ClientAndServerCpu);
    assert_eq!(judged(Some(0.3), Some(0.3), None, false), Limit::Latency);
    assert_eq!(judged(Some(0.3), Some(0.3), KEPT, false), Limit::Rate);
    assert_eq!(judged(Some(0.3), None, KEPT, false), Limit::Unknown, "the server may have set the pace");
    assert_eq!(
        judged(Some(1.0), Some(0.3), None, true),
        Limit::Latency,
        "spin busies the client by design: its figure is left out"
    );
    assert_eq!(judged(Some(1.0), None, None, true), Limit::Unknown);
    assert_eq!(judged(Some(1.0), Some(0.9), None, true), Limit::ServerCpu);
    assert_eq!(judged(None, None, None, false), Limit::Unknown);
    assert_eq!(judged(Some(SATURATED), None, None, false), Limit::ClientCpu, "the threshold counts");
    // Sides that take turns: the one that wants a CPU far longer sets the pace.
    assert_eq!(judged(Some(0.73), Some(0.40), None, false), Limit::ClientCpu);
    assert_eq!(judged(Some(0.43), Some(0.72), None, false), Limit::ServerCpu);
    assert_eq!(judged(Some(0.62), Some(0.57), None, false), Limit::Latency, "alike: neither");
    assert_eq!(judged(Some(0.5), Some(0.2), None, false), Limit::Latency, "below DOMINANT: neither");
    assert_eq!(
        judged(Some(0.7), None, None, false),
        Limit::Unknown,
        "no server figures: only the client's saturation can be judged"
    );
}

/// A worker that waited for its CPU a third of the window was not latency-bound: it was
/// contended, whichever side it is on and however busy it looks.
#[test]
fn a_worker_that_waits_for_its_cpu_is_contended() {
    let e = |client: Busiest, server: Busiest| Evidence {
        client: Some(client),
        server: Some(server),
        schedule: None,
        spin: false,
        lost: 0,
        sent: 0,
        kernel_drops: 0,
    };
    let idle = Busiest { busy: 0.3, waiting: 0.0 };
    let shared = Busiest { busy: 0.7, waiting: 0.3 };
    assert_eq!(judge(&e(Busiest { busy: 0.74, waiting: 0.01 }, shared)), Limit::Contention);
    assert_eq!(judge(&e(shared, idle)), Limit::Contention);
    let a_little = Busiest { busy: 0.7, waiting: CONTENDED - 0.01 };
    assert_eq!(judge(&e(idle, a_little)), Limit::ServerCpu, "a little waiting is normal");
    let mut v = views(&[0.74], Some(&[0.70]), 0.0);
    v.server.as_mut().unwrap().cpu.waiting = vec![0.30];
    v.others = vec![OtherProcess { pid: 4242, comm: "spinner".into(), cpu: 0.97 }];
    v.conclude(&ctx(None));
    assert_eq!(v.limit, Limit::Contention);
    assert!(v.limit_text.starts_with("limit: CPU contention: server worker 0 waited for a CPU 30% of the window (40% running); what else ran: spinner (pid 4242) 97% of a CPU"), "{}", v.limit_text);
}

#[test]
fn lost_datagrams_with_kernel_drops_limit_the_run() {
    let mut v = views(&[0.3], Some(&[0.3]), 0.0);
    v.kernel.udp_rcvbuf_errors = 236;
    let c = Context { lost: 236, sent: 10_000, ..Context::default() };
    v.conclude(&c);
    assert_eq!(v.limit, Limit::KernelDrops);
    assert!(
        v.limit_text.contains("236 of 10000 datagrams lost (2.36%), udp_rcvbuf_errors +236"),
        "{}",
        v.limit_text
    );
    v.conclude(&Context { lost: 5, ..c });
    assert_eq!(v.limit, Limit::Latency, "a few losses below DROPS: the round trip set the pace");
}

#[test]
fn advice_fits_the_machine() {
    let none_spare = Context { spare_cpus: 0, stream_open_loop: true, ..Context::default() };
    let advice = client_advice(&none_spare);
    assert!(
        !advice.contains("--cpus") && advice.contains("fewer connections") && advice.contains("--coalesce"),
        "{advice}"
    );
    assert!(client_advice(&Context { spare_cpus: 2, ..Context::default() }).contains("--cpus; 2 spare CPUs"));
    let mut v = views(&[0.97], Some(&[0.3]), 0.0);
    v.conclude(&none_spare);
    assert!(
        v.limit_text.starts_with("limit: client CPU (worker 0 busy 97% of the window;"),
        "{}",
        v.limit_text
    );
    assert!(!v.limit_text.contains("--cpus"), "{}", v.limit_text);
}

#[test]
fn the_line_names_the_figures_behind_it() {
    let mut v = views(&[0.41, 0.2], Some(&[0.99]), 0.04);
    v.conclude(&ctx(None));
    assert_eq!(v.limit, Limit::ServerCpu);
    assert_eq!(v.limit_text, "limit: server CPU (worker 0 busy 99% of the window; client 41%)");
    let mut v = views(&[0.3], None, 0.0);
    v.conclude(&ctx(None));
    assert_eq!(v.limit, Limit::Unknown);
    assert!(v.limit_text.contains("the server's CPU is unknown (give --server-pid"), "{}", v.limit_text);
}

#[test]
fn grown_kernel_counters_have_their_hints() {
    let mut v = views(&[0.5], Some(&[0.5]), 0.0);
    v.kernel.udp_rcvbuf_errors = 12;
    assert_eq!(v.kernel_hints()[0].0, "udp_rcvbuf_errors");
    assert!(v.kernel_hints()[0].2.contains("net.core.rmem_max"));
    assert!(crate::warning::kernel_hint("listen_overflows").contains("somaxconn"));
}
