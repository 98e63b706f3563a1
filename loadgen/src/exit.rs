//! The exit-code contract, in one place (ripgrep's rule): every command of ringload ends
//! with the code [`code`] gives for what happened.
//!
//! Invariant: an interruption outranks everything (the partial report was printed); a
//! result that cannot be trusted outranks a check that failed; 0 only when neither.

/// Everything ran, every check held.
pub const OK: i32 = 0;
/// The run completed but a check the user set failed (`--slo`, `--max-p99`,
/// `--max-error-rate`, `--verify`; no rate met the SLO; a regression, or ratios that
/// cannot be judged).
pub const CHECK_FAILED: i32 = 1;
/// A usage or runtime error, or figures that cannot be trusted (nothing answered, not an
/// echo, connections lost or never made), or a workflow that could not be carried out as
/// planned within its bound (a `--repeat` that made fewer runs than asked, a search that
/// stopped before it converged: at `--max-duration`, or at the step limit); what ran is
/// reported.
pub const ERROR: i32 = 2;
/// Ctrl-C (or SIGTERM, SIGHUP) cut it short; what ran is reported.
pub const INTERRUPTED: i32 = 130;

/// The code for an outcome: interrupted first, then untrusted figures, then failed
/// checks.
pub fn code(interrupted: bool, untrusted: bool, checks_failed: bool) -> i32 {
    if interrupted {
        INTERRUPTED
    } else if untrusted {
        ERROR
    } else if checks_failed {
        CHECK_FAILED
    } else {
        OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_outranks_untrusted_outranks_a_failed_check() {
        assert_eq!(code(true, true, true), INTERRUPTED);
        assert_eq!(code(false, true, true), ERROR);
        assert_eq!(code(false, false, true), CHECK_FAILED);
        assert_eq!(code(false, false, false), OK);
    }
}
