//! Test helpers shared by the test suites of both crates (a dev-dependency only).
//!
//! **The skip rule.** A test that needs a kernel feature (io_uring) fails when the feature
//! is missing, unless the run sets `RINGECHO_ALLOW_SKIP=1` (CI never does). A skipped test
//! says which feature it lacked on stderr and appends a line to `skipped-tests.log` in
//! the profile's target directory (`target/release/`, `target/debug/`), so a run can
//! count its skips: `wc -l target/*/skipped-tests.log`. A skipped test is never counted
//! as having shown anything.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::{Duration, Instant};

/// The environment variable that lets a test skip when a kernel feature is missing.
pub const ALLOW_SKIP: &str = "RINGECHO_ALLOW_SKIP";

/// Whether this run allows skipping tests whose kernel feature is missing.
pub fn skipping_allowed() -> bool {
    std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1")
}

/// `feature` is missing (`why`): panics, unless the run allows skipping, in which case the
/// skip is printed and recorded and the caller returns at once.
#[track_caller]
pub fn unavailable(feature: &str, why: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if !skipping_allowed() {
        panic!(
            "{test} needs {feature}, which is unavailable here: {why} (set {ALLOW_SKIP}=1 to skip instead)"
        );
    }
    eprintln!("SKIPPED {test}: needs {feature}: {why}");
    if let Some(log) = skip_log() {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{test}\tneeds {feature}: {why}");
        }
    }
}

/// True when `check` passed; otherwise applies the skip rule ([`unavailable`]) and
/// returns false.
#[track_caller]
pub fn require<E: std::fmt::Display>(feature: &str, check: Result<(), E>) -> bool {
    match check {
        Ok(()) => true,
        Err(e) => {
            unavailable(feature, &e.to_string());
            false
        }
    }
}

/// `target/<profile>/skipped-tests.log`, found from the test executable
/// (`target/<profile>/deps/<test>`).
fn skip_log() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("skipped-tests.log"))
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held. For waiting on
/// a condition another party makes true (a server's published counters), not for
/// ordering a test's own steps.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// CPU time (user + system) process `pid` has used, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let fields: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    fields.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        let t0 = cpu_ticks(me);
        let until = Instant::now() + Duration::from_millis(50);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(cpu_ticks(me) >= t0 && x > 0);
    }

    #[test]
    fn require_passes_when_the_feature_is_there() {
        assert!(require::<String>("nothing", Ok(())));
    }
}
