//! HdrHistogram interval logs: writing a run's (`--hdr-log`: [`write_log`]), and reading
//! one back (ringload's or another tool's) for `plot`. A log read is untrusted and may be
//! long (a day of one-second intervals): it is read a line at a time from a regular file
//! ([`crate::input`]), each line bounded, each histogram checked before it is decoded
//! ([`crate::hist::decode`]), and only a few figures per interval are kept, at most
//! [`MAX_INTERVALS`] in all.

use crate::figures::Bulk;
use crate::hist::{self, HistError};
use crate::input::{self, InputError};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::Duration;

/// Writes a run's per-second histograms (start, length in ns since the run began, and
/// the encoded histogram) as an interval log, values in ns from the intended send time;
/// bulk figures have no histogram, so each of their seconds is a comment line, as
/// iperf3 prints them.
pub fn write_log(
    out: &mut impl Write,
    target: &str,
    intervals: &[(u64, u64, String)],
    bulk: [(&str, Option<&Bulk>); 2],
) -> io::Result<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| io::Error::other(format!("{what}: {e}"));
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment(&format!("ringload {} against {target}", env!("CARGO_PKG_VERSION")));
    builder.add_comment("values in nanoseconds, from the intended send time");
    builder.with_max_value_divisor(1e6);
    let mut log = builder.begin_log_with(out, &mut serializer)?;
    for (start_ns, length_ns, encoded) in intervals {
        let h = hist::decode(encoded).map_err(|e| fail("an interval of our own", &e))?;
        let (start, length) = (Duration::from_nanos(*start_ns), Duration::from_nanos(*length_ns));
        log.write_histogram(&h, start, length, None).map_err(|e| fail("writing an interval", &e))?;
    }
    for (name, b) in bulk {
        for i in b.iter().flat_map(|b| &b.intervals) {
            log.write_comment(&format!(
                "{name} {:.3}-{:.3} s: sent {} B, received {} B, {}",
                i.start_s,
                i.start_s + i.length_s,
                i.bytes_sent,
                i.bytes_received,
                crate::units::gbit_per_s(i.gbit_per_s * 1e9 / 8.0)
            ))?;
        }
    }
    Ok(())
}

/// The most intervals kept, over all the logs of one plot (69 hours of one-second
/// intervals; no plot shows more points than that).
pub const MAX_INTERVALS: usize = 250_000;

/// The longest line read: a histogram of ringload's range and its timestamps.
pub const MAX_LINE_BYTES: usize = hist::MAX_TEXT_LEN + 1024;

/// The latest interval start taken for a time (as `started_unix`).
const MAX_START_S: f64 = 1e11;

/// What is kept of one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Start, seconds (since the log's start, or Unix time).
    pub start_s: f64,
    /// Length, seconds.
    pub length_s: f64,
    /// Samples.
    pub count: u64,
    /// Median, ns.
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Largest sample, ns.
    pub max_ns: u64,
}

/// Why a log cannot be read. Each names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Not a readable regular file of at most [`input::MAX_LOG_BYTES`].
    #[error(transparent)]
    Input(#[from] InputError),
    /// Reading failed part-way.
    #[error("{file}: {cause}")]
    Read {
        /// The log.
        file: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A line longer than any interval needs.
    #[error("{file}: line {line} is longer than {MAX_LINE_BYTES} bytes, more than any interval needs")]
    LongLine {
        /// The log.
        file: String,
        /// Its line number.
        line: u64,
    },
    /// A line that is not a comment, a header or an interval.
    #[error("{file}: line {line} is not an interval log line")]
    Syntax {
        /// The log.
        file: String,
        /// Its line number.
        line: u64,
    },
    /// A start or length that is not a time.
    #[error("{file}: line {line}: an interval must start before {MAX_START_S:e} s and last more than 0 s")]
    Time {
        /// The log.
        file: String,
        /// Its line number.
        line: u64,
    },
    /// An interval's histogram is not one ringload reads.
    #[error("{file}: line {line}: {cause}")]
    Histogram {
        /// The log.
        file: String,
        /// Its line number.
        line: u64,
        /// Why.
        cause: HistError,
    },
    /// More intervals than a plot keeps.
    #[error("{file}: more than {MAX_INTERVALS} intervals in all; plot a shorter log")]
    TooMany {
        /// The log.
        file: String,
    },
    /// No interval at all.
    #[error("{file}: no intervals")]
    Empty {
        /// The log.
        file: String,
    },
}

/// Reads a log file. `room` is how many more intervals may be kept (shared by the logs
/// of one plot); it is reduced by the intervals read.
pub fn read_log(path: &Path, room: &mut usize) -> Result<Vec<Interval>, LogError> {
    parse_log(&path.display().to_string(), input::open_log(path)?, room)
}

/// Reads a log from `reader`; `file` names it in errors.
pub fn parse_log(file: &str, mut reader: impl BufRead, room: &mut usize) -> Result<Vec<Interval>, LogError> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for line in 1u64.. {
        buf.clear();
        let read = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|cause| LogError::Read { file: file.into(), cause })?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(LogError::LongLine { file: file.into(), line });
        }
        if buf.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(interval) = parse_line(file, line, &buf)? {
            if *room == 0 {
                return Err(LogError::TooMany { file: file.into() });
            }
            *room -= 1;
            out.push(interval);
        }
    }
    if out.is_empty() {
        return Err(LogError::Empty { file: file.into() });
    }
    Ok(out)
}

/// One line: `None` for a comment or header, the interval's figures for an interval.
fn parse_line(file: &str, line: u64, text: &[u8]) -> Result<Option<Interval>, LogError> {
    let mut entries = IntervalLogIterator::new(text);
    let entry = match entries.next() {
        None => return Ok(None), // a comment or the legend
        Some(Ok(entry)) => entry,
        Some(Err(_)) => return Err(LogError::Syntax { file: file.into(), line }),
    };
    if entries.next().is_some() {
        return Err(LogError::Syntax { file: file.into(), line });
    }
    let LogEntry::Interval(i) = entry else { return Ok(None) };
    let (start_s, length_s) = (i.start_timestamp().as_secs_f64(), i.duration().as_secs_f64());
    if start_s >= MAX_START_S || length_s <= 0.0 || length_s >= MAX_START_S {
        return Err(LogError::Time { file: file.into(), line });
    }
    let h = hist::decode(i.encoded_histogram()).map_err(|cause| LogError::Histogram {
        file: file.into(),
        line,
        cause,
    })?;
    Ok(Some(Interval {
        start_s,
        length_s,
        count: h.len(),
        p50_ns: h.value_at_quantile(0.5),
        p99_ns: h.value_at_quantile(0.99),
        max_ns: h.max(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(start: &str, length: &str, h: &str) -> String {
        format!("{start},{length},1.000,{h}\n")
    }

    fn parse(text: &str) -> Result<Vec<Interval>, LogError> {
        parse_log("x.hlog", text.as_bytes(), &mut MAX_INTERVALS.clone())
    }

    #[test]
    fn reads_what_ringload_writes() {
        let mut h = hist::new();
        for v in 1..=100u64 {
            hist::record(&mut h, v * 1_000);
        }
        let e = hist::encode(&h);
        let log = format!(
            "#[StartTime: 1700000000.000 (seconds since epoch)]\n\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n{}\n{}",
            line("0.000", "1.000", &e).trim_end(),
            line("1.000", "0.500", &e).trim_end(), // no final newline
        );
        let got = parse(&log).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].start_s, got[1].length_s, got[1].count), (1.0, 0.5, 100));
        assert_eq!((got[0].p50_ns, got[0].max_ns), (h.value_at_quantile(0.5), h.max()));
    }

    #[test]
    fn bad_logs_are_errors_naming_the_line() {
        let e = hist::encode(&hist::new());
        for (log, needle) in [
            ("", "x.hlog: no intervals"),
            ("# only a comment\n", "x.hlog: no intervals"),
            ("xx yy\n", "x.hlog: line 1 is not an interval log line"),
            (&line("0.0", "1.0", "notbase64!!"), "x.hlog: line 1: the histogram is not base64 text"),
            (&format!("# c\n{}", line("0.0", "0.0", &e)), "x.hlog: line 2: an interval must"),
            (&"9".repeat(MAX_LINE_BYTES + 1), "x.hlog: line 1 is longer than"),
        ] {
            let got = parse(log).unwrap_err().to_string();
            assert!(got.starts_with(needle), "{got:?} should start with {needle:?}");
        }
        let mut room = 1;
        let two = format!("{}{}", line("0.0", "1.0", &e), line("1.0", "1.0", &e));
        assert!(matches!(parse_log("x", two.as_bytes(), &mut room), Err(LogError::TooMany { .. })));
    }
}
