//! Verdicts said once and right (issue 24) and figures that cannot be trusted (issue 23):
//! a discard target found in the warm-up, answers that match nothing sent, replies that
//! answer nothing, too few answers to form a rate, a window too short to hold one, a
//! malformed `--server-metrics` refused before the run, and `--server-pid` reading any
//! local server's threads.

mod util;

use ringload::views::Limit;
use ringload::warning::Warning;
use ringload::{Model, Stop, Target};
use std::time::Duration;
use util::*;

fn has(r: &ringload::Report, f: impl Fn(&Warning) -> bool) -> bool {
    r.warnings.iter().any(f)
}

fn ringecho(listen: ringecho::Listen, mode: ringecho::Mode) -> ringecho::ServerHandle {
    util::ringecho(listen, mode, |_| {})
}

/// A discard target met in the default warm-up: the closed loop's messages are all sent
/// in the warm-up and none after it. The run still fails naming discard, with its
/// FAILED line and no figure per message.
#[test]
fn a_discard_target_found_in_the_warm_up_fails_with_its_reason() {
    if !uring_available() {
        return;
    }
    let server = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Discard);
    let r = run(plan(Some(Target::Tcp(server.tcp_addr().unwrap())), |p| {
        p.connections = 4;
        p.warmup = Duration::from_millis(300);
        p.stop = Stop::Duration(Duration::from_millis(300));
        p.drain = Duration::from_millis(100);
    }));
    let text = ringload::text::run::report(&r);
    assert!(has(&r, |w| matches!(w, Warning::NoAnswer { .. })), "{text}");
    assert_eq!(r.exit_code(), 2);
    assert!(text.contains("FAILED: the target took") && text.contains("discard"), "{text}");
    assert!(!text.contains("per message ("), "no figure per message from no message: {text}");
    assert!(!text.contains("messages per send"), "{text}");
}

/// Datagram replies that are all of the wrong size: the target answered, but never what
/// it was sent; the run says so (not "no datagram was answered").
#[test]
fn answers_of_the_wrong_size_are_named() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, data, out| out.push(data[..data.len() - 1].to_vec()));
    let r = run(plan(Some(Target::Udp(addr)), |p| p.stop = Stop::Duration(Duration::from_millis(300))));
    let text = ringload::text::run::report(&r);
    assert!(has(&r, |w| matches!(w, Warning::Garbled { messages, .. } if *messages > 0)), "{text}");
    assert!(text.contains("none matched what was sent"), "{text}");
    assert_eq!(r.exit_code(), 2);
}

/// Issue 23 item 8: a server that sends one matching reply and one with a forged
/// sequence per request fails the run as not an echo (duplicates already did).
#[test]
fn forged_replies_fail_the_run() {
    if !uring_available() {
        return;
    }
    let addr = udp_server(|_, data, out| {
        out.push(data.to_vec());
        let mut forged = data.to_vec();
        // The sequence (bytes 8..16 of the header) moved far past anything sent.
        forged[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        out.push(forged);
    });
    let r = run(plan(Some(Target::Udp(addr)), |p| p.stop = Stop::Duration(Duration::from_millis(300))));
    let text = ringload::text::run::report(&r);
    assert!(r.counters.completed > 0 && r.counters.garbage > 0, "{text}");
    assert!(has(&r, |w| matches!(w, Warning::ForeignReplies { .. })), "{text}");
    assert_eq!(r.exit_code(), 2);
}

/// Issue 23 item 7: a window that is too short to hold a rate is refused; a run with
/// too few answers shows no rate and says why.
#[test]
fn too_few_answers_form_no_rate() {
    let p = plan(None, |_| {});
    let mut short = p.clone();
    short.stop = Stop::Duration(Duration::from_nanos(1));
    assert_eq!(short.validate().unwrap_err().flag, "--duration");
    if !uring_available() {
        return;
    }
    let server = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Echo);
    let r = run(plan(Some(Target::Tcp(server.tcp_addr().unwrap())), |p| {
        p.connections = 1;
        p.model = Model::Open { rate: 100.0 };
        p.stop = Stop::Duration(Duration::from_millis(40));
    }));
    let text = ringload::text::run::report(&r);
    assert!(r.counters.completed < 10, "{text}");
    assert!(has(&r, |w| matches!(w, Warning::FewAnswers { .. })), "{text}");
    assert!(text.contains("throughput  no rate:"), "{text}");
}

/// `--server-pid` reads a local server's threads: the verdict has the server's side,
/// whatever the server is.
#[test]
fn server_pid_gives_the_verdict_a_server_side() {
    if !uring_available() {
        return;
    }
    // The test process is the server (its epoll echo runs on a thread of ours).
    let server = ringecho(ringecho::Listen::Tcp(loopback()), ringecho::Mode::Echo);
    let r = run(plan(Some(Target::Tcp(server.tcp_addr().unwrap())), |p| {
        p.stop = Stop::Duration(Duration::from_millis(500));
        p.server_pid = Some(std::process::id());
    }));
    let v = r.views.as_ref().expect("views");
    let s = v.server.as_ref().expect("the server's side, from /proc");
    assert!(s.source.starts_with("pid ") && !s.cpu.busy.is_empty(), "{s:?}");
    assert_ne!(v.limit, Limit::Unknown, "{}", v.limit_text);
}

/// A `--server-metrics` that is no URL is refused before any load.
#[test]
fn a_malformed_server_metrics_url_is_refused_up_front() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(["tcp://127.0.0.1:9", "--server-metrics", "127.0.0.1:9107", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--server-metrics") && err.contains("http://HOST:PORT"), "{err}");
}

/// The `--find-max-rate` help states the rule the search judges by, from its constants.
#[test]
fn the_search_help_states_the_rule_it_judges_by() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringload")).arg("--help").output().unwrap();
    // Words as clap wraps them: one space between each.
    let help = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("achieves ≥ 97% of its offered rate"), "{help}");
    assert!(help.contains("send lag p99 within a tenth"), "{help}");
    assert!(!help.contains("CPU < 90%"), "{help}");
}
