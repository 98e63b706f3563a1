//! A run's latency: each distribution as its histogram and the figures read from it
//! ([`Summary`]), and how a file's stated figures are held to its histogram.

use crate::engine::{Breakdown, StampTally};
use crate::hist::{self, Encoded, Hist};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// The unit of every latency figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatencyUnit {
    /// Nanoseconds.
    #[default]
    #[serde(rename = "ns")]
    Ns,
}

/// The three latency distributions of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Always nanoseconds.
    #[serde(default)]
    pub unit: LatencyUnit,
    /// From each message's intended send time (coordinated omission corrected).
    pub corrected: Summary,
    /// From the actual send.
    pub service: Summary,
    /// Connection set-up.
    pub connect: Summary,
    /// Open loop: how late the client handed each measured message out after its
    /// intended send time, its lag behind its own schedule (absent in a closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Summary>,
    /// Where the time went, from the kernel's timestamps: absent with
    /// `--user-timestamps`, when no reply was stamped, and in older documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<LatencyBreakdown>,
}

impl Latency {
    /// The summaries of the histograms (`send_lag` in an open loop only).
    pub fn of(corrected: &Hist, service: &Hist, connect: &Hist, send_lag: Option<&Hist>) -> Latency {
        Latency {
            unit: LatencyUnit::Ns,
            corrected: Summary::of(corrected),
            service: Summary::of(service),
            connect: Summary::of(connect),
            send_lag: send_lag.map(Summary::of),
            breakdown: None,
        }
    }
}

/// The latency broken down by the kernel's software timestamps. Two kinds of part: every
/// stamped reply gives its client receive (arrival stamp → the worker saw it); the
/// probes (at most one message per connection or flow in flight, its send stamped too)
/// split the rest into the client's send path and the network + server. The parts add
/// up: for a probe, send lag + client send + network + server = its latency; for a
/// reply, latency + client receive = user to user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyBreakdown {
    /// Probes: the hand-over to the kernel → the kernel's send stamp.
    pub client_send: Summary,
    /// Probes: the kernel's send stamp → the reply's arrival stamp.
    pub network_server: Summary,
    /// Stamped replies: the arrival stamp → the worker saw the reply.
    pub client_receive: Summary,
    /// Stamped replies: the intended send time → the worker saw the reply (what a loop
    /// timing in user space reports).
    pub user_to_user: Summary,
    /// Probes: their send lag (the intended send time → the hand-over).
    pub probe_lag: Summary,
    /// Probes: their latency (the intended send time → the arrival stamp).
    pub probe_latency: Summary,
    /// What the stamps gave: replies stamped or not, probes split or not, the clock
    /// conversion's largest error bound.
    pub stamps: StampTally,
}

impl LatencyBreakdown {
    /// A run's breakdown, when a reply was stamped.
    pub fn of(b: &Breakdown) -> Option<LatencyBreakdown> {
        (b.tally.stamped > 0).then(|| LatencyBreakdown {
            client_send: Summary::of(&b.client_send),
            network_server: Summary::of(&b.network_server),
            client_receive: Summary::of(&b.client_receive),
            user_to_user: Summary::of(&b.user_to_user),
            probe_lag: Summary::of(&b.probe_lag),
            probe_latency: Summary::of(&b.probe_latency),
            stamps: b.tally,
        })
    }

    /// Adds this breakdown into `sum` (runs merged): histograms added, counts summed,
    /// the widest clock bound kept.
    pub fn add_to(&self, sum: &mut Breakdown) -> Result<(), hist::HistError> {
        hist::add(&mut sum.client_send, &self.client_send.histogram())?;
        hist::add(&mut sum.network_server, &self.network_server.histogram())?;
        hist::add(&mut sum.client_receive, &self.client_receive.histogram())?;
        hist::add(&mut sum.user_to_user, &self.user_to_user.histogram())?;
        hist::add(&mut sum.probe_lag, &self.probe_lag.histogram())?;
        hist::add(&mut sum.probe_latency, &self.probe_latency.histogram())?;
        sum.tally.merge(&self.stamps);
        Ok(())
    }
}

/// A latency histogram and the figures read from it (ns). The histogram is the data,
/// kept encoded ([`Encoded`]: a document may hold thousands); the figures are computed
/// from it when the summary is made ([`Summary::of`]), so every reader of a figure reads
/// the histogram's own. Read from a file, the figures it states must agree with its
/// histogram (`StatedSummary`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StatedSummary")]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest sample, 0 when there are none.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// The histogram: HdrHistogram V2 + DEFLATE, base64.
    #[serde(serialize_with = "histogram_text::serialize")]
    histogram: Encoded,
}

impl Summary {
    /// The summary of `histogram`.
    pub fn of(histogram: &Hist) -> Summary {
        Summary::of_decoded(Encoded::of(histogram), histogram)
    }

    /// The summary of `histogram`, which `encoded` holds.
    fn of_decoded(encoded: Encoded, histogram: &Hist) -> Summary {
        let h = histogram;
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        // hdrhistogram walks all 33,792 buckets to find a quantile of an empty histogram
        // (0): a document may hold thousands.
        let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        let [p50, p90, p99, p999, p9999] = hist::QUANTILES.map(|(_, q)| at(q));
        Summary {
            count: h.len(),
            min: if h.is_empty() { 0 } else { h.min() },
            p50,
            p90,
            p99,
            p999,
            p9999,
            max: h.max(),
            mean: finite(h.mean()),
            stdev: finite(h.stdev()),
            histogram: encoded,
        }
    }

    /// The histogram, decoded.
    pub fn histogram(&self) -> Hist {
        self.histogram.decode()
    }

    /// The histogram as it is kept.
    pub fn encoded(&self) -> &Encoded {
        &self.histogram
    }

    /// The stated figures by name, lowest first: min, the percentiles, max.
    pub fn figures(&self) -> [(&'static str, u64); 7] {
        [
            ("min", self.min),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p999", self.p999),
            ("p9999", self.p9999),
            ("max", self.max),
        ]
    }

    /// The value at each of [`hist::QUANTILES`], in their order, by their names.
    pub fn quantiles(&self) -> [(&'static str, u64); 5] {
        let [(a, _), (b, _), (c, _), (d, _), (e, _)] = hist::QUANTILES;
        [(a, self.p50), (b, self.p90), (c, self.p99), (d, self.p999), (e, self.p9999)]
    }
}

/// A summary as a file states it: the figures are optional (hand-made documents may
/// give only the histogram), and those given must agree with the histogram.
#[derive(Deserialize)]
pub struct StatedSummary {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    min: Option<u64>,
    #[serde(default)]
    p50: Option<u64>,
    #[serde(default)]
    p90: Option<u64>,
    #[serde(default)]
    p99: Option<u64>,
    #[serde(default)]
    p999: Option<u64>,
    #[serde(default)]
    p9999: Option<u64>,
    #[serde(default)]
    max: Option<u64>,
    #[serde(deserialize_with = "histogram")]
    histogram: (Encoded, Hist),
}

impl TryFrom<StatedSummary> for Summary {
    type Error = String;

    /// The summary of the histogram, once the stated count matches it and the stated
    /// percentiles are in order (a file whose p99 lies above its max has been edited or
    /// broken, and its histogram cannot be trusted either).
    fn try_from(s: StatedSummary) -> Result<Summary, String> {
        let (encoded, histogram) = s.histogram;
        if let Some(count) = s.count {
            if count != histogram.len() {
                return Err(format!(
                    "states count {count} but its histogram holds {} samples",
                    histogram.len()
                ));
            }
        }
        let stated = [
            ("min", s.min),
            ("p50", s.p50),
            ("p90", s.p90),
            ("p99", s.p99),
            ("p999", s.p999),
            ("p9999", s.p9999),
            ("max", s.max),
        ];
        let given: Vec<(&str, u64)> = stated.iter().filter_map(|(n, v)| v.map(|v| (*n, v))).collect();
        for pair in given.windows(2) {
            let ((lo_name, lo), (hi_name, hi)) = (pair[0], pair[1]);
            if lo > hi {
                return Err(format!(
                    "states {lo_name} {lo} ns above {hi_name} {hi} ns: percentiles out of order"
                ));
            }
        }
        Ok(Summary::of_decoded(encoded, &histogram))
    }
}

/// A histogram's text, decoded (and checked) once.
fn histogram<'de, D: Deserializer<'de>>(d: D) -> Result<(Encoded, Hist), D::Error> {
    let text = String::deserialize(d)?;
    Encoded::read(&text).map_err(de::Error::custom)
}

/// A histogram as base64 text ([`Encoded`]).
mod histogram_text {
    use crate::hist::Encoded;

    pub fn serialize<S: serde::Serializer>(h: &Encoded, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(h.text())
    }
}
