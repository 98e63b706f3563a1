//! SVG plots: the latency percentile distribution of one or more results (x in "nines",
//! y log latency — the HdrHistogram convention), and, from one or more interval logs,
//! throughput and p50, p99 and max latency over time (a stall shows in the max long
//! before it moves the p99). plotters' SVG backend needs no system libraries.
//!
//! Every series has a style of its own (a colour, and past eight series a dash
//! pattern), and every name drawn comes from a file, so it goes through
//! [`crate::escape::svg`].

use crate::hist::Hist;
use crate::intervals::{self, Interval};
use crate::saved::Saved;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use svg::{DASHES, SERIES_COLORS, draw_err, draw_line, svg_text, trim, write_svg};

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

fn nines_label(x: &f64) -> String {
    let q = 100.0 * (1.0 - 1.0 / x);
    if q < 99.0 { format!("{q:.0}%") } else { format!("{}%", trim(q, 5)) }
}

/// Draws the percentile distribution of `results`, one line each, to `out`.
pub fn percentiles(results: &[Saved], out: &Path) -> Result<(), PlotError> {
    write_svg(out, percentiles_svg(results))
}

/// The percentile distribution of `results`, one line each, as SVG text.
pub fn percentiles_svg(results: &[Saved]) -> Result<String, PlotError> {
    if results.len() > MAX_SERIES {
        return Err(PlotError::TooMany { count: results.len(), what: "results", max: MAX_SERIES });
    }
    let curves: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| (r.name.clone(), percentile_curve(&r.doc.latency.corrected.histogram())))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if curves.is_empty() {
        return Err(PlotError::NoSamples);
    }
    let x_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).fold(10.0, f64::max);
    let y_min = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(f64::MAX, f64::min).max(0.1);
    let y_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(0.0, f64::max).max(y_min * 10.0);
    svg_text((960, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile (from intended send time)", ("sans-serif", 22))
            .margin(16)
            // The last x label ("99.9999%") is centred on the right edge: room for its half.
            .margin_right(48)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..x_max).log_scale(), (y_min * 0.8..y_max * 1.25).log_scale())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            // plotters' light lines crowd a log axis that spans less than a decade.
            .light_line_style(TRANSPARENT)
            .x_desc("percentile")
            .y_desc("latency")
            .x_label_formatter(&nines_label)
            .y_label_formatter(&us_label)
            .draw()
            .map_err(draw_err)?;
        for (i, (name, curve)) in curves.into_iter().enumerate() {
            draw_line(&mut chart, curve, series_style(i), 2, name).map_err(draw_err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft).map_err(draw_err)
    })
}

fn legend<
    'a,
    DB: DrawingBackend + 'a,
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart.configure_series_labels().position(at).background_style(WHITE.mix(0.85)).border_style(BLACK).draw()
}

/// The most interval logs in one plot: each has a colour, and its p50, p99 and max
/// their dash patterns.
pub const MAX_LOGS: usize = SERIES_COLORS.len();

/// Draws throughput and p50, p99 and max latency per interval, one colour per log.
pub fn intervals(logs: &[PathBuf], out: &Path) -> Result<(), PlotError> {
    if logs.len() > MAX_LOGS {
        return Err(PlotError::TooMany { count: logs.len(), what: "interval logs", max: MAX_LOGS });
    }
    let mut room = intervals::MAX_INTERVALS;
    let mut series = Vec::new();
    for log in logs {
        let name = log.file_name().map_or_else(|| log.display().to_string(), |n| n.to_string_lossy().into());
        series.push((name, intervals::read_log(log, &mut room)?));
    }
    let all = || series.iter().flat_map(|(_, s)| s.iter());
    let mid = |i: &Interval| i.start_s + i.length_s / 2.0;
    let t_min = all().map(mid).fold(f64::MAX, f64::min).floor();
    let t_max = all().map(mid).fold(0.0, f64::max).ceil().max(t_min + 1.0);
    let text = svg_text((960, 760), |root| {
        let (top, bottom) = root.split_vertically(340);
        draw_rates(&top, &series, t_min..t_max).map_err(draw_err)?;
        draw_latency(&bottom, &series, t_min..t_max).map_err(draw_err)
    });
    write_svg(out, text)
}

type Series = [(String, Vec<Interval>)];

/// A figure drawn per interval: its name, how to read it, its dash pattern and width.
type Figure = (&'static str, fn(&Interval) -> u64, Option<(u32, u32)>, u32);

fn draw_rates<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &Series,
    t: std::ops::Range<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let rate = |i: &Interval| i.count as f64 / i.length_s;
    let r_max = series.iter().flat_map(|(_, s)| s.iter().map(rate)).fold(0.0, f64::max) * 1.1 + 1.0;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput per interval", ("sans-serif", 20))
        .margin(12)
        .margin_right(32)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t, 0.0..r_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("msg/s")
        .y_label_formatter(&|v: &f64| crate::units::rate_short(*v))
        .draw()?;
    for (k, (name, s)) in series.iter().enumerate() {
        let points = s.iter().map(|i| (i.start_s + i.length_s / 2.0, rate(i))).collect();
        draw_line(&mut chart, points, (SERIES_COLORS[k], None), 2, name.clone())?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &Series,
    t: std::ops::Range<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let us = |ns: u64| (ns.max(1) as f64) / 1e3;
    let values = || series.iter().flat_map(|(_, s)| s.iter().flat_map(|i| [us(i.p50_ns), us(i.max_ns)]));
    let y_min = values().fold(f64::MAX, f64::min).max(0.001);
    let y_max = values().fold(0.0, f64::max).max(y_min * 10.0);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency per interval: p50, p99, max", ("sans-serif", 20))
        .margin(12)
        .margin_right(32)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t, (y_min * 0.8..y_max * 1.25).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds")
        .y_desc("latency")
        .y_label_formatter(&us_label)
        .draw()?;
    let figures: [Figure; 3] = [
        ("p50", |i| i.p50_ns, DASHES[2], 1),
        ("p99", |i| i.p99_ns, None, 2),
        ("max", |i| i.max_ns, DASHES[1], 1),
    ];
    for (k, (name, s)) in series.iter().enumerate() {
        for (figure, of, dash, width) in figures {
            let points =
                s.iter().filter(|i| i.count > 0).map(|i| (i.start_s + i.length_s / 2.0, us(of(i)))).collect();
            draw_line(&mut chart, points, (SERIES_COLORS[k], dash), width, format!("{name} {figure}"))?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

mod capacity;
mod svg;

pub use capacity::{capacity, capacity_svg};
pub use svg::{MAX_SERIES, PlotError, series_style, us_label};

#[cfg(test)]
mod tests;
