//! Who was the bottleneck, staged: a client pinned to a busy CPU, a server pinned to a
//! busy CPU, and one connection ping-ponging (latency-bound); the kernel's counters
//! (UDP receive-buffer drops induced on a server that does not read); `--server-metrics`
//! against an unreachable and a non-ringecho URL; `--spin` runs and stops by itself.
//!
//! The staging pins busy threads that this test starts and stops to one CPU; the staged
//! tests take a lock so they never stage over each other. They read run-queue waits, so
//! other programs loading the machine move their figures: they are ignored by default
//! and run on a quiet machine with `cargo test --release -p ringload --test views --
//! --ignored`. The verdict itself is unit-tested on figures (`views::tests`).

mod util;

use ringload::Model;
use ringload::views::Limit;
use ringload::warning::Warning;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::*;

static STAGE: Mutex<()> = Mutex::new(());

/// `n` threads spinning on `cpu` at nice -19 until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn on(cpu: usize, n: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    ringecho::sys::pin_current_thread(cpu).unwrap();
                    // Above the load's priority (root), so whoever shares this CPU is
                    // starved: CFS favours a thread waking from sleep over a plain
                    // spinner of the same weight, which would not starve it.
                    // SAFETY: setpriority takes no pointers; 0 names this thread.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -19) };
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A busy process of its own (a shell spinning) on `cpu` at nice -19, killed by its PID
/// when dropped: what else runs on a machine, as a user's other programs do.
struct BusyProcess(std::process::Child);

impl BusyProcess {
    fn on(cpu: usize) -> BusyProcess {
        let child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        // SAFETY: a cpu_set_t is plain data; CPU_SET writes within it; sched_setaffinity
        // reads `size_of` bytes of it; setpriority takes no pointers.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
            libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, -19);
        }
        BusyProcess(child)
    }
}

impl Drop for BusyProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first two CPUs this test may use (staging needs two).
fn two_cpus() -> (usize, usize) {
    let allowed = ringecho::sys::allowed_cpus().unwrap();
    assert!(allowed.len() >= 2, "staging a bottleneck needs two CPUs, have {allowed:?}");
    (allowed[0], allowed[1])
}

fn views_of(r: &ringload::Report) -> &ringload::views::Views {
    r.views.as_ref().expect("the report has views")
}

/// The load on a CPU that a busy thread at nice -19 shares: the client is the limit.
#[test]
#[ignore = "stages CPU contention: run alone (.ci/run does: cargo test -p ringload --test views -- --ignored --test-threads=1)"]
fn client_pinned_to_a_busy_cpu_is_the_limit() {
    if !uring_available() {
        return;
    }
    let _g = STAGE.lock().unwrap_or_else(|p| p.into_inner());
    let (a, _) = two_cpus();
    let _busy = Busy::on(a, 1);
    // The built-in server goes to the other CPU (the first one the load does not use).
    let r = run(plan(None, |p| {
        p.cpus = vec![a];
        p.connections = 32;
        p.model = Model::Closed { depth: 8 };
        p.warmup = Duration::from_millis(200);
        p.stop = ringload::Stop::Duration(Duration::from_millis(1200));
        p.verify = false;
    }));
    let v = views_of(&r);
    // It waited for its CPU: contended, not merely saturated.
    assert_eq!(v.limit, Limit::Contention, "{}", ringload::text::run::report(&r));
    assert!(v.client.waiting[0] > 0.2, "the client waited for its CPU: {v:?}");
    assert!(v.limit_text.starts_with("limit: CPU contention: client worker 0 waited"), "{}", v.limit_text);
    assert!(ringload::text::run::report(&r).contains(&v.limit_text));
    assert!(r.warnings.iter().any(|w| matches!(w, Warning::CpuContention { side, .. } if side == "client")));
}

/// The built-in server on a CPU that another process at nice -19 shares (issue 24: it was
/// called latency-bound): contention, with the server's wait and what else ran.
#[test]
#[ignore = "stages CPU contention: run alone (.ci/run does: cargo test -p ringload --test views -- --ignored --test-threads=1)"]
fn a_server_sharing_its_cpu_is_contended() {
    if !uring_available() {
        return;
    }
    let _g = STAGE.lock().unwrap_or_else(|p| p.into_inner());
    let (a, b) = two_cpus();
    let busy = BusyProcess::on(a);
    let r = run(plan(None, |p| {
        p.cpus = vec![b]; // the built-in server takes `a`
        p.connections = 32;
        p.model = Model::Closed { depth: 8 };
        p.warmup = Duration::from_millis(200);
        p.stop = ringload::Stop::Duration(Duration::from_millis(1200));
        p.verify = false;
    }));
    let v = views_of(&r);
    assert_eq!(r.builtin.as_ref().unwrap().server_cpus, vec![a]);
    assert_eq!(v.limit, Limit::Contention, "{}", ringload::text::run::report(&r));
    let server = v.server.as_ref().unwrap();
    assert_eq!(server.source, "built-in");
    assert!(server.cpu.waiting[0] > 0.2 && server.recv_ops > 0, "{server:?}");
    assert!(v.limit_text.starts_with("limit: CPU contention: server worker 0 waited"), "{}", v.limit_text);
    assert!(v.others.iter().any(|o| o.pid == busy.0.id() && o.comm == "sh"), "what else ran: {:?}", v.others);
    assert!(v.limit_text.contains(&format!("what else ran: sh (pid {})", busy.0.id())), "{}", v.limit_text);
    assert!(ringload::text::run::report(&r).contains("server CPU  "), "{}", ringload::text::run::report(&r));
}

/// An open loop whose client shares its CPU with a busy thread at nice -19: it cannot
/// hand its messages out on time, and says so by its send lag (not by its CPU share,
/// which the busy thread keeps low).
#[test]
#[ignore = "stages CPU contention: run alone (.ci/run does: cargo test -p ringload --test views -- --ignored --test-threads=1)"]
fn an_open_loop_client_on_a_busy_cpu_falls_behind_its_schedule() {
    if !uring_available() {
        return;
    }
    let _g = STAGE.lock().unwrap_or_else(|p| p.into_inner());
    let (a, _) = two_cpus();
    let _busy = Busy::on(a, 1);
    let r = run(plan(None, |p| {
        p.cpus = vec![a];
        p.connections = 8;
        p.model = Model::Open { rate: 20_000.0 };
        p.warmup = Duration::from_millis(200);
        p.stop = ringload::Stop::Duration(Duration::from_millis(1200));
    }));
    let s = r.schedule(ringload::slo::LAG_LIMIT).expect("an open loop has a schedule");
    assert!(s.behind(), "{s:?}\n{}", ringload::text::run::report(&r));
    assert!(
        r.warnings
            .iter()
            .any(|w| matches!(w, Warning::ClientBehind { lag_p99_ns, .. } if *lag_p99_ns == s.lag_p99_ns)),
        "{:?}",
        r.warnings
    );
    assert!(!r.warnings.iter().any(|w| matches!(w, Warning::ClientSaturated { .. })), "{:?}", r.warnings);
    let v = views_of(&r);
    // Behind its schedule because it waited for its CPU: the verdict names the cause.
    assert!(
        matches!(v.limit, Limit::Contention | Limit::ClientSchedule | Limit::ClientAndServerCpu),
        "{}",
        ringload::text::run::report(&r)
    );
    let doc = r.document();
    let lag = doc.latency.send_lag.as_ref().expect("the document has the send lag");
    assert_eq!(lag.p99, s.lag_p99_ns);
}

/// An open loop records how late each measured message went out: one sample per
/// message due in the window, in the report and the document; a closed loop has none.
#[test]
fn the_send_lag_has_one_sample_per_measured_message() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| {
        p.connections = 2;
        p.model = Model::Open { rate: 2_000.0 };
        p.warmup = Duration::from_millis(100);
        p.stop = ringload::Stop::Duration(Duration::from_millis(500));
    }));
    assert!(r.counters.completed > 500 && r.figures().failed == 0, "{}", ringload::text::run::report(&r));
    assert_eq!(r.lag.len(), r.counters.completed, "{}", ringload::text::run::report(&r));
    let doc = r.document();
    assert_eq!(doc.latency.send_lag.as_ref().map(|l| l.count), Some(r.counters.completed));
    assert!(ringload::text::run::report(&r).contains("send lag "), "{}", ringload::text::run::report(&r));
    let closed = run(plan(None, |p| p.stop = ringload::Stop::Duration(Duration::from_millis(200))));
    assert!(closed.counters.completed > 0 && closed.lag.is_empty());
    assert!(closed.schedule(ringload::slo::LAG_LIMIT).is_none());
    assert!(closed.document().latency.send_lag.is_none());
}

/// One connection, one message in flight, no busy CPU: neither side is saturated.
#[test]
#[ignore = "stages CPU contention: run alone (.ci/run does: cargo test -p ringload --test views -- --ignored --test-threads=1)"]
fn one_connection_is_latency_bound() {
    if !uring_available() {
        return;
    }
    let _g = STAGE.lock().unwrap_or_else(|p| p.into_inner());
    let (_, b) = two_cpus();
    let r = run(plan(None, |p| {
        p.cpus = vec![b];
        p.connections = 1;
        p.model = Model::Closed { depth: 1 };
        p.warmup = Duration::from_millis(100);
        p.stop = ringload::Stop::Duration(Duration::from_millis(800));
    }));
    let v = views_of(&r);
    assert_eq!(v.limit, Limit::Latency, "{}", ringload::text::run::report(&r));
    assert!(v.limit_text.starts_with("limit: neither CPU saturated: latency-bound"), "{}", v.limit_text);
}

/// A UDP server with a tiny receive buffer that never reads: the kernel drops the flood,
/// and the report shows the counter, with the setting to raise.
#[test]
fn udp_receive_buffer_drops_are_shown_with_a_hint() {
    if !uring_available() {
        return;
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(1).unwrap(); // the kernel's minimum
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let r = run(plan(Some(ringload::Target::Udp(addr)), |p| {
        p.connections = 4;
        p.model = Model::Open { rate: 20_000.0 };
        p.stop = ringload::Stop::Duration(Duration::from_millis(500));
        p.udp_timeout = Duration::from_millis(50);
        p.drain = Duration::from_millis(100);
    }));
    let v = views_of(&r);
    assert!(v.kernel.udp_rcvbuf_errors > 0, "{:?}", v.kernel);
    assert!(
        r.warnings.iter().any(|w| matches!(w, Warning::KernelCounter { counter, grew } if counter == "udp_rcvbuf_errors" && *grew > 0)),
        "{:?}",
        r.warnings
    );
    let text = ringload::text::run::report(&r);
    assert!(text.contains("kernel      udp_rcvbuf_errors +"), "{text}");
    assert!(text.contains("net.core.rmem_max") && text.contains("SO_RCVBUF"), "{text}");
    let doc = serde_json::to_value(r.document()).unwrap();
    assert!(doc["views"]["kernel"]["udp_rcvbuf_errors"].as_u64().unwrap() > 0);
    drop(socket);
}

fn echo_target() -> (ringecho::ServerHandle, ringload::Target) {
    let config = ringecho::Config {
        listen: vec![ringecho::Listen::Tcp(([127, 0, 0, 1], 0).into()).into()],
        workers: Some(1),
        metrics: Some(([127, 0, 0, 1], 0).into()),
        ..ringecho::Config::default()
    };
    let server = ringecho::Server::start(config).unwrap();
    let target = ringload::Target::Tcp(server.tcp_addr().unwrap());
    (server, target)
}

fn short(target: ringload::Target, url: String) -> ringload::Report {
    run(plan(Some(target), |p| {
        p.stop = ringload::Stop::Duration(Duration::from_millis(300));
        p.server_metrics = Some(url);
    }))
}

/// A remote ringecho's --metrics: its workers' CPU and receives are in the report.
#[test]
fn server_metrics_from_a_remote_ringecho() {
    if !uring_available() {
        return;
    }
    let (server, target) = echo_target();
    let url = format!("http://{}/metrics", server.metrics_addr().unwrap());
    let r = short(target, url.clone());
    assert_eq!(r.exit_code(), 0, "{}", ringload::text::run::report(&r));
    let s = views_of(&r).server.as_ref().expect("server figures");
    assert_eq!(s.source, url);
    assert_eq!(s.cpu.busy.len(), 1);
    assert!(s.recv_ops > 0 && s.process_cpu_s.is_some(), "{s:?}");
    assert!(
        ringload::text::run::report(&r).contains("messages per server receive"),
        "{}",
        ringload::text::run::report(&r)
    );
}

/// Unreachable, and not ringecho: a warning each, the run still exits 0.
#[test]
fn server_metrics_that_cannot_be_read_warn() {
    if !uring_available() {
        return;
    }
    let (server, target) = echo_target();
    // Not ringecho: an HTTP server that answers 200 with other metrics.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in other.incoming().flatten().take(2) {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nnode_load1 0.5\n");
        }
    });
    // Nothing listens on a port just closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for (url, says) in [
        (format!("http://{closed}/metrics"), "refused"),
        (format!("http://{other_addr}/metrics"), "not a ringecho --metrics endpoint"),
        ("http://".to_string(), "not an http://HOST:PORT/PATH URL"),
    ] {
        let r = short(target.clone(), url.clone());
        assert_eq!(r.exit_code(), 0, "{}", ringload::text::run::report(&r));
        let w = r.warnings.iter().find_map(|w| match w {
            Warning::ServerMetrics { url: u, cause } if *u == url => Some(cause.clone()),
            _ => None,
        });
        let cause = w.unwrap_or_else(|| panic!("no warning for {url}: {:?}", r.warnings));
        assert!(cause.contains(says), "{url}: {cause}");
        assert!(
            ringload::text::run::report(&r).contains("the report has no server CPU figures"),
            "{}",
            ringload::text::run::report(&r)
        );
    }
    drop(server);
}

/// --spin: the run ends by itself at its planned time and says what spinning cost.
#[test]
fn spin_runs_and_stops_by_itself() {
    if !uring_available() {
        return;
    }
    let started = std::time::Instant::now();
    let r = run(plan(None, |p| {
        p.spin = true;
        p.connections = 1;
        p.stop = ringload::Stop::Duration(Duration::from_millis(400));
    }));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(r.exit_code(), 0, "{}", ringload::text::run::report(&r));
    assert!(r.counters.completed > 0);
    let text = ringload::text::run::report(&r);
    assert!(text.contains("spin        on") && text.contains("whole CPU"), "{text}");
    assert!(views_of(&r).spin);
}

/// `report` and `compare` carry each saved run's limit line.
#[test]
fn report_and_compare_carry_the_limit() {
    if !uring_available() {
        return;
    }
    let r = run(plan(None, |p| p.stop = ringload::Stop::Duration(Duration::from_millis(300))));
    let limit = views_of(&r).limit_text.clone();
    assert!(limit.starts_with("limit: "), "{limit}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.json");
    std::fs::write(&file, serde_json::to_string(&r.document()).unwrap()).unwrap();
    let bin = env!("CARGO_BIN_EXE_ringload");
    let report = std::process::Command::new(bin).arg("report").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.lines().any(|l| l.ends_with(&format!("a.json: {limit}"))), "{text}");
    let compare = std::process::Command::new(bin).arg("compare").arg(&file).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&compare.stdout);
    for side in ["base:", "new:"] {
        assert!(text.lines().any(|l| l.starts_with(side) && l.ends_with(&limit)), "{side} {text}");
    }
}
