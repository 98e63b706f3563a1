//! SVG plots: the latency percentile distribution of one or more results (x in "nines",
//! y log latency — the HdrHistogram convention), and, from an interval log, throughput
//! and p99 over time. plotters' SVG backend needs no system libraries.

use crate::hist::{Hist, HistError};
use crate::results::Saved;
use plotters::prelude::*;
use std::path::Path;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No result has latency samples.
    #[error("no result has latency samples")]
    NoSamples,
    /// The interval log holds no interval.
    #[error("{file}: no intervals")]
    NoIntervals {
        /// The log.
        file: String,
    },
    /// Drawing or writing the SVG failed.
    #[error("drawing {file}: {detail}")]
    Draw {
        /// The SVG file.
        file: String,
        /// plotters' description (its error type depends on the backend).
        detail: String,
    },
    /// The interval log could not be read.
    #[error("{file}")]
    Read {
        /// The log.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The interval log is malformed.
    #[error("{file}: not an interval log at byte {offset}")]
    Log {
        /// The log.
        file: String,
        /// Where parsing failed.
        offset: usize,
    },
    /// An interval's histogram does not decode.
    #[error("{file}: an interval's histogram")]
    Histogram {
        /// The log.
        file: String,
        /// Why.
        source: HistError,
    },
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw { file: path.display().to_string(), detail: format!("{e:?}") }
}

/// Points of a percentile curve: (1 / (1 − q), latency µs), from the median to the
/// highest percentile the sample count supports.
pub fn percentile_curve(h: &Hist) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let nines = (h.len() as f64).log10().clamp(1.0, 6.0);
    let steps = (nines * 40.0) as usize;
    (0..=steps)
        .map(|i| {
            let x = 10f64.powf(i as f64 / 40.0); // 1/(1-q)
            let q = 1.0 - 1.0 / x;
            (x, h.value_at_quantile(q).max(1) as f64 / 1e3)
        })
        .collect()
}

/// Series colours: dark enough on white, told apart by eye (Tableau's first eight).
const SERIES_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

fn nines_label(x: &f64) -> String {
    let q = 100.0 * (1.0 - 1.0 / x);
    if q < 99.0 { format!("{q:.0}%") } else { format!("{}%", trim(q)) }
}

fn trim(q: f64) -> String {
    let s = format!("{q:.5}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn us_label(y: &f64) -> String {
    if *y >= 1000.0 { format!("{:.0}ms", y / 1000.0) } else { format!("{y:.0}µs") }
}

/// Draws the percentile distribution of `results`, one line each, to `out`.
pub fn percentiles(results: &[Saved], out: &Path) -> Result<(), PlotError> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| (r.name.clone(), percentile_curve(&r.doc.latency.corrected.histogram)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if curves.is_empty() {
        return Err(PlotError::NoSamples);
    }
    let x_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).fold(10.0, f64::max);
    let y_min = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(f64::MAX, f64::min).max(0.1);
    let y_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(0.0, f64::max).max(y_min * 10.0);
    let root = SVGBackend::new(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(out))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile (from intended send time)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), (y_min * 0.8..y_max * 1.25).log_scale())
        .map_err(draw_err(out))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_label_formatter(&nines_label)
        .y_label_formatter(&us_label)
        .draw()
        .map_err(draw_err(out))?;
    for (i, (name, curve)) in curves.into_iter().enumerate() {
        let color = SERIES_COLORS[i % SERIES_COLORS.len()].to_rgba();
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(draw_err(out))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err(out))?;
    root.present().map_err(draw_err(out))?;
    Ok(())
}

/// Draws throughput and p99 per interval from an HdrHistogram interval log.
pub fn intervals(log: &Path, out: &Path) -> Result<(), PlotError> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry, LogIteratorError};
    let file = log.display().to_string();
    let bytes = match std::fs::read(log) {
        Ok(b) => b,
        Err(source) => return Err(PlotError::Read { file, source }),
    };
    let mut points = Vec::new(); // (middle of the interval s, msg/s, p99 µs)
    for entry in IntervalLogIterator::new(&bytes) {
        match entry {
            Ok(LogEntry::Interval(i)) => {
                let h = match crate::hist::decode(i.encoded_histogram()) {
                    Ok(h) => h,
                    Err(source) => return Err(PlotError::Histogram { file, source }),
                };
                let secs = i.duration().as_secs_f64().max(1e-9);
                points.push((
                    i.start_timestamp().as_secs_f64() + secs / 2.0,
                    h.len() as f64 / secs,
                    h.value_at_quantile(0.99) as f64 / 1e3,
                ));
            }
            Ok(_) => {}
            Err(LogIteratorError::ParseError { offset }) => return Err(PlotError::Log { file, offset }),
        }
    }
    if points.is_empty() {
        return Err(PlotError::NoIntervals { file });
    }
    let t_min = points.iter().map(|p| p.0).fold(f64::MAX, f64::min).floor();
    let t_max = points.iter().map(|p| p.0).fold(0.0, f64::max).ceil().max(t_min + 1.0);
    let r_max = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1 + 1.0;
    let l_max = points.iter().map(|p| p.2).fold(0.0, f64::max) * 1.1 + 1.0;
    let root = SVGBackend::new(out, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(out))?;
    let (top, bottom) = root.split_vertically(360);
    let mut rate = ChartBuilder::on(&top)
        .caption("Throughput per interval", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t_min..t_max, 0.0..r_max)
        .map_err(draw_err(out))?;
    rate.configure_mesh()
        .x_desc("seconds")
        .y_desc("msg/s")
        .y_label_formatter(&|v: &f64| crate::report::rate(*v).replace(" msg/s", ""))
        .draw()
        .map_err(draw_err(out))?;
    rate.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), BLUE.stroke_width(2)))
        .map_err(draw_err(out))?;
    let mut lat = ChartBuilder::on(&bottom)
        .caption("p99 latency per interval", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t_min..t_max, 0.0..l_max)
        .map_err(draw_err(out))?;
    lat.configure_mesh()
        .x_desc("seconds")
        .y_desc("p99")
        .y_label_formatter(&us_label)
        .draw()
        .map_err(draw_err(out))?;
    lat.draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.2)), RED.stroke_width(2)))
        .map_err(draw_err(out))?;
    root.present().map_err(draw_err(out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_spans_the_nines() {
        let mut h = crate::hist::new();
        for v in 1..=100_000u64 {
            crate::hist::record(&mut h, v * 100);
        }
        let c = percentile_curve(&h);
        assert_eq!(c.first().unwrap().0, 1.0);
        assert!(c.last().unwrap().0 >= 99_999.0);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1), "latency never falls with the percentile");
        assert_eq!(nines_label(&100.0), "99%");
        assert_eq!(nines_label(&1000.0), "99.9%");
    }
}
