//! Units, once: how every figure is printed (durations, message rates, byte sizes and
//! volumes, percentages, CPU lists) and how every human value on the command line is read
//! (fractions, rates, start times, CPU lists, sizes; durations are ringecho's parser).
//!
//! Invariant: each unit has one formatter, and every report, table and plot label uses
//! it, so a figure reads the same wherever it is shown; every parser takes untrusted text
//! and returns an error naming it, never panicking.

use std::time::{Duration, SystemTime};

pub use ringecho::units::{UnitError, parse_duration, parse_size};

/// A duration in nanoseconds, in the unit that suits it: `950ns`, `13.2µs`, `1.52ms`,
/// `2.50s`.
pub fn ns(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0}ns")
    } else if v < 1e6 {
        format!("{:.1}µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// A message rate in the unit that suits it: `999.0 msg/s`, `174.32K msg/s`,
/// `2.000M msg/s`.
pub fn rate(v: f64) -> String {
    format!("{} msg/s", rate_short(v))
}

/// A message rate without its unit, for table cells and axes: `174.32K`.
pub fn rate_short(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.1}")
    } else if v < 1e6 {
        format!("{:.2}K", v / 1e3)
    } else {
        format!("{:.3}M", v / 1e6)
    }
}

/// A size in bytes (a message, a write, a socket buffer): whole KiB or MiB when it is an
/// exact multiple, else bytes: `64 B`, `1500 B`, `4 KiB`, `1 MiB`.
pub fn size(v: u64) -> String {
    if v >= 1 << 20 && v % (1 << 20) == 0 {
        format!("{} MiB", v >> 20)
    } else if v >= 1 << 10 && v % (1 << 10) == 0 {
        format!("{} KiB", v >> 10)
    } else {
        format!("{v} B")
    }
}

/// A volume of bytes moved, in decimal steps as rates are given: `950 B`, `1.23 KB`,
/// `12.35 MB`, `1.234 GB`.
pub fn volume(v: u64) -> String {
    let v = v as f64;
    if v < 1e3 {
        format!("{v:.0} B")
    } else if v < 1e6 {
        format!("{:.2} KB", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2} MB", v / 1e6)
    } else {
        format!("{:.3} GB", v / 1e9)
    }
}

/// A byte rate in MB/s (10⁶ bytes): `11.16 MB/s`.
pub fn mb_per_s(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

/// A byte rate in Gbit/s (10⁹ bits): `9.876 Gbit/s`.
pub fn gbit_per_s(bytes_per_s: f64) -> String {
    format!("{:.3} Gbit/s", bytes_per_s * 8.0 / 1e9)
}

/// A fraction as an exact percentage, trailing zeros trimmed (an SLO's limit, a share
/// lost): `0.1%`, `2%`, `0.0010%`.
pub fn percent(v: f64) -> String {
    let p = v * 100.0;
    if p != 0.0 && p.abs() < 0.01 {
        return format!("{p:.4}%");
    }
    let s = format!("{p:.4}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// A share of a whole (a CPU's time), in whole percent: `97%`.
pub fn share(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// A CPU list as the kernel writes one: `0,1,3`.
pub fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// `s` after a count: `1 worker`, `2 workers`.
pub fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A fraction: `5%` or `0.05` (at most 1000%).
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let (num, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{text:?} is not a fraction (e.g. 5% or 0.05)"))?;
    let v = v / scale;
    if !(0.0..=10.0).contains(&v) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(v)
}

/// A rate in messages per second: `20000`, `2e4`, `50k`, `1.5M` (the units [`rate`]
/// prints).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("{text:?} is not a rate (e.g. 20000, 50k, 1.5M)"))?;
    let v = v * scale;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{text:?}: a rate must be a positive number of messages per second"));
    }
    Ok(v)
}

/// A moment: Unix seconds or RFC 3339 (`2026-11-25T12:00:00Z`).
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    if let Ok(secs) = text.parse::<f64>() {
        if (0.0..1e11).contains(&secs) {
            return Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|_| format!("{text:?}: expected Unix seconds or RFC 3339 (2026-11-25T12:00:00Z)"))
}

/// A CPU list in the kernel's syntax: `1`, `0,2`, `2-3`.
pub fn parse_cpus(text: &str) -> Result<Vec<usize>, UnitError> {
    ringecho::units::parse_cpu_list(text)
}

/// A size that fits 32 bits: `64`, `4KiB`, `1MiB`.
pub fn parse_u32_size(text: &str) -> Result<u32, String> {
    let n = parse_size(text).map_err(|e| e.to_string())?;
    u32::try_from(n).map_err(|_| format!("{n} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_pick_their_unit() {
        assert_eq!(ns(950.0), "950ns");
        assert_eq!(ns(13_200.0), "13.2µs");
        assert_eq!(ns(1_520_000.0), "1.52ms");
        assert_eq!(ns(2.5e9), "2.50s");
        assert_eq!(rate(999.0), "999.0 msg/s");
        assert_eq!(rate(174_320.0), "174.32K msg/s");
        assert_eq!(rate(2_000_000.0), "2.000M msg/s");
        assert_eq!(rate_short(174_320.0), "174.32K");
        assert_eq!(size(64), "64 B");
        assert_eq!(size(1500), "1500 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(3 << 20), "3 MiB");
        assert_eq!(volume(950), "950 B");
        assert_eq!(volume(12_345_678), "12.35 MB");
        assert_eq!(volume(1_234_000_000), "1.234 GB");
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(percent(0.02), "2%");
        assert_eq!(percent(0.000_01), "0.0010%");
        assert_eq!(share(0.974), "97%");
        assert_eq!(mb_per_s(11_160_000.0), "11.16 MB/s");
        assert_eq!(gbit_per_s(1.2345e9 / 8.0), "1.234 Gbit/s");
        assert_eq!(cpu_list(&[0, 1, 3]), "0,1,3");
    }

    #[test]
    fn values_parse_or_say_why() {
        assert_eq!(parse_fraction("5%"), Ok(0.05));
        assert_eq!(parse_fraction("0.2"), Ok(0.2));
        assert!(parse_fraction("lots").is_err());
        assert_eq!(parse_rate("50k"), Ok(50_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert_eq!(parse_rate("2e4"), Ok(20_000.0));
        for bad in ["0", "-5", "k", "lots", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let t = parse_start_at("1700000000").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_700_000_000);
        assert!(parse_start_at("2026-11-25T12:00:00Z").is_ok());
        assert!(parse_start_at("tomorrow").is_err());
        assert_eq!(parse_u32_size("64KiB"), Ok(65_536));
        assert!(parse_u32_size("8GiB").is_err());
    }
}
