//! `ringload ab` end to end: two deliberately different echo servers (one adds 1 ms to
//! every reply), a server that never starts, one that never listens, one that dies
//! mid-run, servers that leave processes outside their process group, an address already
//! taken, and Ctrl-C; after every one, no server process is left running.
//!
//! The servers are this test binary itself, run through its ignored `ab_test_server`
//! entry point with `RINGLOAD_AB_TEST_SERVER=DELAY_US[,DIE_AFTER_MS]`: it prints
//! `listening tcp ADDR` as ringecho does and echoes, each reply after DELAY_US (slept,
//! but its last 100 µs spent on the CPU, so its CPU per message is plainly non-zero);
//! with `RINGLOAD_AB_TEST_SLOW_FIRST=N` its first N replies take 5 ms each (a server slow
//! on its first run), and with `RINGLOAD_AB_TEST_SLOW_ONCE=FILE` too only if it is the
//! first to create FILE (a server slow on its first start only: a cold cache on disk).

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SERVER_ENV: &str = "RINGLOAD_AB_TEST_SERVER";
const PIDFILE_ENV: &str = "RINGLOAD_AB_TEST_PIDFILE";
const SLOW_FIRST_ENV: &str = "RINGLOAD_AB_TEST_SLOW_FIRST";
const SLOW_ONCE_ENV: &str = "RINGLOAD_AB_TEST_SLOW_ONCE";

/// The test servers' entry point (ignored: run only as a server, by the tests below).
#[test]
#[ignore = "a server for the ab tests, started by them"]
fn ab_test_server() {
    let Ok(spec) = std::env::var(SERVER_ENV) else { return };
    let mut parts = spec.split(',').map(|p| p.parse::<u64>().unwrap());
    let delay = Duration::from_micros(parts.next().unwrap());
    if let Some(ms) = parts.next() {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            eprintln!("test server: dying on purpose");
            std::process::exit(3);
        });
    }
    if let Ok(path) = std::env::var(PIDFILE_ENV) {
        std::fs::write(path, std::process::id().to_string()).unwrap();
    }
    // Replies still to slow down, over every connection.
    let mut slow: u64 = std::env::var(SLOW_FIRST_ENV).map_or(0, |n| n.parse().unwrap());
    if let Ok(once) = std::env::var(SLOW_ONCE_ENV) {
        if std::fs::File::create_new(once).is_err() {
            slow = 0; // not the first start
        }
    }
    let slow_first: &'static std::sync::atomic::AtomicU64 =
        Box::leak(Box::new(std::sync::atomic::AtomicU64::new(slow)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // On a line of its own: libtest has written `test ab_test_server ... ` without one.
    println!("\nlistening tcp {}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut conn = conn;
            conn.set_nodelay(true).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    return;
                }
                let slow = slow_first
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    )
                    .is_ok();
                let delay = if slow { Duration::from_millis(5) } else { delay };
                if !delay.is_zero() {
                    let spin = Duration::from_micros(100).min(delay);
                    std::thread::sleep(delay - spin);
                    let until = Instant::now() + spin;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
}

/// The command that runs this binary as a test server.
fn server(spec: &str, pidfile: Option<&Path>) -> String {
    let exe = std::env::current_exe().unwrap();
    let pid = pidfile.map_or(String::new(), |p| format!("{PIDFILE_ENV}='{}' ", p.display()));
    format!(
        "{SERVER_ENV}={spec} {pid}exec '{}' --ignored --exact ab_test_server --nocapture --test-threads=1",
        exe.display()
    )
}

/// CPU pinning when there are two CPUs or more: servers on the first, the load on the second.
fn pinning() -> Vec<String> {
    let cpus = ringecho::sys::allowed_cpus().unwrap();
    if cpus.len() >= 2 {
        vec!["--server-cpus".into(), cpus[0].to_string(), "--cpus".into(), cpus[1].to_string()]
    } else {
        Vec::new()
    }
}

/// One `ringload ab` at a time: ab judges its runs' CPU contention, and two tests' servers
/// and clients on the same two CPUs would contend with each other (their ratios then not
/// meaningful, exit 1).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ringload_ab(args: &[String]) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_ringload"))
        .arg("ab")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ringload ab")
}

/// Whether a process is still running (a zombie waiting for its parent is not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

fn assert_valid(doc: &Value, schema: &str) {
    let schema: Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn short_load() -> Vec<String> {
    ["-c", "2", "-d", "700ms", "-w", "100ms", "--runs", "2"].iter().map(|s| s.to_string()).collect()
}

#[test]
fn ab_names_the_slower_server_and_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ab.json");
    let mut args = vec!["--server-a".into(), server("0", None), "--server-b".into(), server("1000", None)];
    args.extend(short_load());
    args.extend(pinning());
    args.extend(["--json".into(), json.display().to_string(), "--max-slowdown".into(), "50%".into()]);
    let out = ringload_ab(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // B is far more than 50% slower: the threshold fails (exit 1), the report is whole.
    assert_eq!(out.status.code(), Some(1), "stdout:\n{text}\nstderr:\n{stderr}");
    assert!(text.contains("FAILED: B's median msg/s is") && text.contains("--max-slowdown 50.0%"), "{text}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["tool"], "ringload-ab");
    assert_valid(&doc, include_str!("../schema/ab.schema.json"));
    for side in ["a", "b"] {
        for r in doc[side]["runs"].as_array().unwrap() {
            assert_valid(&r["result"], include_str!("../schema/result.schema.json"));
        }
    }
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["failed_checks"].as_array().unwrap().len(), 2, "msg/s and p99: {}", doc["failed_checks"]);
    let c = &doc["comparison"];
    let rate = c["msgs_per_s"]["ratio"].as_f64().unwrap();
    assert!(rate < 0.5, "B adds 1 ms per reply: B/A msg/s {rate}\n{text}");
    assert_eq!(c["msgs_per_s"]["better"], "A", "{text}");
    assert_eq!(c["msgs_per_s"]["beyond_spread"], true, "{text}");
    let p50 = c["p50"]["ratio"].as_f64().unwrap();
    assert!(p50 > 3.0, "B's p50 is at least 1 ms: B/A p50 {p50}\n{text}");
    assert_eq!(c["p50"]["better"], "A", "{text}");
    assert!(text.contains("beyond the spread of the runs") && text.contains("A is better"), "{text}");
    let mut pids = Vec::new();
    for side in ["a", "b"] {
        let runs = doc[side]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "two runs of {side}");
        for r in runs {
            let cpu = r["server"]["cpu_us_per_msg"].as_f64().unwrap();
            assert!(cpu > 0.0, "server CPU per message of {side}: {cpu}");
            assert!(r["result"]["counters"]["completed"].as_u64().unwrap() > 0);
            pids.push(r["server"]["pid"].as_u64().unwrap() as u32);
        }
        assert!(doc[side]["summary"]["server_cpu_us_per_msg"]["median"].as_f64().unwrap() > 0.0);
    }
    // Interleaved: A, B, then B, A — four servers, each gone.
    assert_eq!(doc["a"]["runs"][0]["run"], 1);
    for pid in pids {
        assert!(!running(pid), "server {pid} is still running");
    }
    assert!(text.contains("server CPU/msg"), "{text}");
}

#[test]
fn a_server_that_cannot_start_is_named_with_its_stderr() {
    let mut args = vec!["--server-a".into(), "/nonexistent/echo-server --port 1".into()];
    args.extend(["--server-b".into(), server("0", None)]);
    args.extend(short_load());
    let out = ringload_ab(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server A") && stderr.contains("before it listened"), "{stderr}");
    assert!(stderr.contains("/nonexistent/echo-server"), "the shell's own complaint is shown: {stderr}");
}

/// The end of a server's stderr is shown a line per line, each escaped for the terminal
/// (it was one line with a literal `\n` between the lines).
#[test]
fn the_end_of_a_servers_stderr_is_shown_on_lines_of_its_own() {
    let cmd = r"echo 'first line' >&2; printf 'second \033[31mline\n' >&2; exit 3";
    let mut args = vec!["--server-a".into(), cmd.into(), "--server-b".into(), server("0", None)];
    args.extend(short_load());
    let out = ringload_ab(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "before it listened; the end of its stderr:\n    first line\n    second \\x1b[31mline\n"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("stderr:\\n") && !stderr.contains("first line\\n"),
        "no escaped newline: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "the escape character is escaped: {stderr}");
}

#[test]
fn a_server_that_never_listens_is_stopped_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, background) = (dir.path().join("leader"), dir.path().join("background"));
    // A shell that does not exec: it starts a child in the background and waits.
    let cmd = format!(
        "echo $$ > '{}'; sleep 60 & echo $! > '{}'; echo 'warming up forever' >&2; wait",
        leader.display(),
        background.display()
    );
    let mut args = vec!["--server-a".into(), server("0", None), "--server-b".into(), cmd];
    args.extend(short_load());
    args.extend(["--start-timeout".into(), "700ms".into()]);
    let started = Instant::now();
    let out = ringload_ab(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server B") && stderr.contains("did not listen within"), "{stderr}");
    assert!(stderr.contains("warming up forever"), "the end of its stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    for file in [&leader, &background] {
        let pid: u32 = std::fs::read_to_string(file).unwrap().trim().parse().unwrap();
        assert!(!running(pid), "{} ({pid}) is still running", file.display());
    }
}

#[test]
fn a_server_that_dies_mid_run_fails_the_comparison() {
    // It dies 400 ms after it starts: in its warm-up run, or (with none) its measured run.
    for (warmup_runs, during) in [("1", "during warm-up run 1 before run 1"), ("0", "during run 1")] {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut args = vec!["--server-a".into(), server("0,400", Some(&pidfile))];
        args.extend(["--server-b".into(), server("0", None), "--warmup-runs".into(), warmup_runs.into()]);
        args.extend(short_load());
        let out = ringload_ab(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("server A") && stderr.contains(during), "{stderr}");
        assert!(stderr.contains("dying on purpose"), "{stderr}");
        let pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(!running(pid));
    }
}

#[test]
fn ctrl_c_stops_the_server_and_exits_130() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(["ab", "--server-a", &server("0", Some(&pidfile)), "--server-b", &server("0", None)])
        .args(["-c", "2", "-d", "30s", "-w", "0s", "--runs", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = testkit::eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
    });
    assert!(ready, "server A started");
    let server_pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringload ab did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(!running(server_pid), "server {server_pid} left running after Ctrl-C");
}

/// PIDs of the running processes whose command line holds one of `markers`.
fn processes_with(markers: &[&str]) -> Vec<u32> {
    let pids =
        std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok());
    pids.filter(|pid: &u32| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        running(*pid) && markers.iter().any(|m| cmdline.contains(m))
    })
    .collect()
}

/// A server command may leave its process group (`setsid`, a daemon's double fork, one
/// that ignores SIGTERM): every such process is still stopped when `ab` returns, and
/// named. (Before, they survived `ab`, which said nothing and exited 0.)
#[test]
fn processes_that_leave_the_group_are_stopped_and_named() {
    let id = std::process::id();
    // Unique to this test: sleep takes a fraction, and `:` ignores its argument.
    let marks = [format!("sleep 44.{id}"), format!("sleep 45.{id}"), format!(": 46.{id}")];
    let a = format!("setsid {} & {}", marks[0], server("0", None));
    let b = format!(
        "({} &) ; (setsid sh -c 'trap \"\" TERM; while :; do sleep 0.05; done; {}' &) ; {}",
        marks[1].replace("sleep", "setsid sleep"),
        marks[2],
        server("0", None)
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ab.json");
    let mut args = vec!["--server-a".into(), a, "--server-b".into(), b];
    args.extend(
        ["-c", "2", "-d", "300ms", "-w", "100ms", "--runs", "1", "--stop-timeout", "500ms"].map(String::from),
    );
    args.extend(["--json".into(), json.display().to_string()]);
    let out = ringload_ab(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let left = processes_with(&marks.iter().map(String::as_str).collect::<Vec<&str>>());
    for pid in &left {
        // Not left behind by this test either.
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "still running after ab returned: {left:?}\n{text}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // Strays are named and stopped, not a failure; the B server's busy loop may contend
    // with the client (unpinned here), which makes the ratios not meaningful: exit 1.
    let comparison_only = doc["failed_checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.as_str().unwrap().starts_with("the ratios are not meaningful"));
    assert!(comparison_only, "{text}");
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_valid(&doc, include_str!("../schema/ab.schema.json"));
    let strays = |side: &str| doc[side]["runs"][0]["server"]["strays"].as_array().unwrap().clone();
    let named = |side: &str, name: &str, killed: bool| {
        strays(side).iter().any(|p| p["name"] == name && p["escaped"] == true && p["killed"] == killed)
    };
    assert!(named("a", "sleep", false), "A's setsid sleep: {:?}", strays("a"));
    assert!(named("b", "sleep", false), "B's double-forked sleep: {:?}", strays("b"));
    assert!(named("b", "sh", true), "B's shell that ignores SIGTERM needed SIGKILL: {:?}", strays("b"));
    let pid_of = |side: &str, name: &str| {
        strays(side).iter().find(|p| p["name"] == name).unwrap()["pid"].as_u64().unwrap()
    };
    assert!(
        text.contains(&format!(
            "warning: server A left 1 process outside its process group in run 1 (setsid, a daemon's double fork), stopped with it: {} (sleep)",
            pid_of("a", "sleep")
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{} (sleep)", pid_of("b", "sleep"))), "{text}");
    let killed = format!(
        "warning: server B did not exit within --stop-timeout of SIGTERM after run 1: killed {} (sh)",
        pid_of("b", "sh")
    );
    assert!(text.contains(&killed), "{text}");
}

/// Something that listens at the given target before the server starts is named.
#[test]
fn an_address_already_taken_names_who_holds_it() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://{}", listener.local_addr().unwrap());
    let mut args = vec!["--server-a".into(), "true".into(), "--server-b".into(), "true".into(), target];
    args.extend(short_load());
    let out = ringload_ab(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let me = format!("process {} (", std::process::id());
    assert!(stderr.contains("already accepts connections") && stderr.contains(&me), "{stderr}");
    assert!(!stderr.contains("leftover"), "no server ran before: {stderr}");
}

/// Servers slow on their first run: each start of A, and only the first start of B, gives
/// its first 160 replies 5 ms each (then 1 ms): about 400 ms of a 500 ms run. Without
/// warm-up runs every A run is measured slow (B/A msg/s well above 1) and B's first run
/// is several times slower than its others, which the report names; with one warm-up run
/// per start (the default) the warm-ups take the slow replies (their msg/s is in the
/// document) and the measured runs are alike. (Before, there were no warm-up runs and
/// nothing named a first run apart.)
#[test]
fn a_server_slow_on_its_first_run_is_warmed_up_or_named() {
    let dir = tempfile::tempdir().unwrap();
    for warmup_runs in [0, 1] {
        let once = dir.path().join(format!("b-started-{warmup_runs}"));
        let a = format!("{SLOW_FIRST_ENV}=160 {}", server("1000", None));
        let b = format!("{SLOW_ONCE_ENV}='{}' {SLOW_FIRST_ENV}=160 {}", once.display(), server("1000", None));
        let json = dir.path().join(format!("ab-{warmup_runs}.json"));
        let mut args = vec!["--server-a".into(), a, "--server-b".into(), b];
        args.extend(["-c", "2", "-d", "400ms", "-w", "100ms", "--runs", "3"].map(String::from));
        args.extend([
            "--warmup-runs".into(),
            warmup_runs.to_string(),
            "--json".into(),
            json.display().to_string(),
        ]);
        args.extend(pinning());
        let out = ringload_ab(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_valid(&doc, include_str!("../schema/ab.schema.json"));
        assert_eq!(doc["warmup_runs"], warmup_runs);
        let b_over_a = doc["comparison"]["msgs_per_s"]["ratio"].as_f64().unwrap();
        let b_first = doc["b"]["summary"]["first_run"]["ratio"].as_f64().unwrap();
        let median = |side: &str| doc[side]["summary"]["msgs_per_s"]["median"].as_f64().unwrap();
        if warmup_runs == 0 {
            assert!(b_over_a > 1.4, "every A run met a cold server: B/A msg/s {b_over_a}\n{text}");
            assert!(b_first < 0.6, "B's first run met its cold start: {b_first} of its others\n{text}");
            assert_eq!(doc["b"]["summary"]["first_run"]["apart"], true, "{text}");
            assert!(
                text.contains("warning: B's first run was") && text.contains("(--warmup-runs, 0 now)"),
                "{text}"
            );
            assert!(!text.contains("unmeasured run"), "no warm-up line: {text}");
        } else {
            // The machine's noise aside (a busy run can be 1.5× off), the 2–3× is gone.
            assert!((0.7..1.4).contains(&b_over_a), "warm servers alike: B/A msg/s {b_over_a}\n{text}");
            assert!(b_first > 0.7, "B's first run met a warm server: {b_first} of its others\n{text}");
            for side in ["a", "b"] {
                let warm: Vec<f64> = doc[side]["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["warmup_msgs_per_s"].as_array().unwrap()[0].as_f64().unwrap())
                    .collect();
                assert_eq!(warm.len(), 3, "a warm-up run before each of {side}'s runs");
                // A's every warm-up met a cold server, B's first one only.
                let cold = if side == "a" { &warm[..] } else { &warm[..1] };
                for w in cold {
                    assert!(
                        *w < 0.6 * median(side),
                        "{side}'s warm-up took the slow replies: {warm:?}\n{text}"
                    );
                }
            }
            assert!(text.contains("warm-up     1 unmeasured run against each fresh server first"), "{text}");
        }
    }
}
