//! Parsers for the human units on the command line: sizes (`64`, `4KiB`, `1MiB`),
//! durations (`500ms`, `10s`) and CPU lists (`0,1`, `0-3,8`); and the writers of sizes and
//! durations that these parsers read back (for the defaults `--help` shows).
//!
//! Every parser takes untrusted text and returns a typed error naming what was wrong;
//! none of them panics, whatever the input.

use std::time::Duration;

/// Why a unit could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    /// The text is not a size.
    #[error("invalid size {0:?} (examples: 64, 4KiB, 1MiB, 2M)")]
    Size(String),
    /// The text is not a duration.
    #[error("invalid duration {0:?} (examples: 500ms, 10s, 2m)")]
    Duration(String),
    /// The text is not a CPU list.
    #[error("invalid CPU list {0:?} (examples: 0, 0,1, 0-3,8)")]
    CpuList(String),
}

/// Parses a byte size: a plain number of bytes, or a number with a decimal (`K`, `KB`, `M`)
/// or binary (`KiB`, `MiB`) suffix, as `parse-size` reads them.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    parse_size::parse_size(text.trim()).map_err(|_| UnitError::Size(text.to_owned()))
}

/// Writes a byte size as [`parse_size()`] reads it back, in the largest binary unit that
/// divides it (`16KiB`, `1MiB`, `1000`): how `--help` shows a default.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Writes a duration as [`parse_duration()`] reads it back (`5s`, `1m 30s`, `0`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() { "0".into() } else { humantime::format_duration(d).to_string() }
}

/// Parses a duration such as `500ms`, `10s` or `1m 30s`. A bare `0` means zero.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|_| UnitError::Duration(text.to_owned()))
}

/// The largest CPU number a list may name: well past any machine, small enough that a
/// range such as `0-4294967295` cannot make us allocate without bound.
pub const MAX_CPU: usize = 4095;

/// Parses a CPU list in the kernel's cpuset syntax (`0,2`, `0-3`, `0-3,8`) into a sorted
/// list without duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, UnitError> {
    let err = || UnitError::CpuList(text.to_owned());
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| err())?;
        let hi: usize = hi.parse().map_err(|_| err())?;
        if lo > hi || hi > MAX_CPU {
            return Err(err());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2K"), Ok(2000));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(16 * 1024), "16KiB");
        assert_eq!(format_size(256 * 1024), "256KiB");
        assert_eq!(format_size(3 << 20), "3MiB");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(format_duration(Duration::ZERO), "0");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("1,0"), Ok(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,8,2"), Ok(vec![0, 1, 2, 3, 8]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("0-4294967295").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
            let _ = parse_cpu_list(&s);
        }

        #[test]
        fn cpu_list_round_trips(cpus in proptest::collection::btree_set(0usize..64, 1..10)) {
            let text = cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            let parsed = parse_cpu_list(&text).unwrap();
            prop_assert_eq!(parsed, cpus.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn formatted_sizes_and_durations_read_back(n in 0u64..(1 << 50), ms in 0u64..(1 << 40)) {
            prop_assert_eq!(parse_size(&format_size(n)), Ok(n));
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn sizes_round_trip(n in 0u64..(1 << 50)) {
            prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
            prop_assert_eq!(parse_size(&format!("{}KiB", n >> 10)), Ok((n >> 10) << 10));
        }
    }
}
