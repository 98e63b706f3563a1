//! The plot of a `--find-max-rate` search: p50, p99 and p99.9 of latency (from the
//! intended send time) against the offered rate, both axes logarithmic, one point per
//! step (in rate order), with each latency clause of the SLO as a horizontal line and
//! the answer as a vertical one. Passing steps are filled dots, failing ones hollow.

use super::svg::{PlotError, draw_err, draw_line, series_style, svg_text, us_label, write_svg};
use crate::document::SearchDoc;
use crate::saved::Saved;
use plotters::prelude::*;
use std::path::Path;

/// A figure of a step's point.
type Figure = fn(&crate::slo::Point) -> f64;

/// Draws the search in `result` to `out`.
pub fn capacity(result: &Saved, out: &Path) -> Result<(), PlotError> {
    write_svg(out, capacity_svg(result))
}

/// The search in `result` as SVG text; [`PlotError::NoSamples`] when it has no step
/// with samples.
pub fn capacity_svg(result: &Saved) -> Result<String, PlotError> {
    let Some(search) = result.doc.search.as_deref() else {
        return Err(PlotError::NoSamples);
    };
    let mut steps: Vec<_> = search.steps.iter().filter(|s| s.run.counters.completed > 0).collect();
    steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    if steps.is_empty() {
        return Err(PlotError::NoSamples);
    }
    let series: [(&str, Figure); 3] = [("p50", |p| p.p50), ("p99", |p| p.p99), ("p99.9", |p| p.p999)];
    let us = |ns: f64| (ns / 1e3).max(0.001);
    let limits: Vec<(String, f64)> = search
        .slo
        .clauses
        .iter()
        .filter(|c| c.metric.is_latency())
        .map(|c| (format!("SLO {}<{}", c.metric.name(), crate::units::ns(c.limit)), us(c.limit)))
        .collect();
    let ys = steps.iter().flat_map(|s| series.iter().map(|(_, f)| us(f(&s.point))));
    let ys: Vec<f64> = ys.chain(limits.iter().map(|l| l.1)).collect();
    let (y_min, y_max) =
        (ys.iter().copied().fold(f64::MAX, f64::min), ys.iter().copied().fold(0.0, f64::max));
    let (x_min, x_max) = (steps[0].offered, steps[steps.len() - 1].offered.max(steps[0].offered * 2.0));
    let x_range = (x_min / 1.3)..(x_max * 1.3);
    let y_range = (y_min / 2.0)..(y_max * 2.0);
    svg_text((960, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption(&result.name, search), ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone().log_scale(), y_range.clone().log_scale())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("offered rate (msg/s)")
            .y_desc("latency")
            .x_label_formatter(&|x: &f64| crate::units::rate_short(*x))
            .y_label_formatter(&us_label)
            .draw()
            .map_err(draw_err)?;
        for (i, (name, f)) in series.iter().enumerate() {
            let points: Vec<(f64, f64)> = steps.iter().map(|s| (s.offered, us(f(&s.point)))).collect();
            draw_line(&mut chart, points.clone(), series_style(i), 2, (*name).to_owned())
                .map_err(draw_err)?;
            let (color, _) = series_style(i);
            // Passing steps filled, failing ones hollow.
            let marks = points.iter().zip(&steps).map(|(p, s)| {
                Circle::new(*p, 3, if s.passed { color.filled() } else { color.stroke_width(1) })
            });
            chart.draw_series(marks).map_err(draw_err)?;
        }
        for (name, limit) in &limits {
            let line = vec![(x_range.start, *limit), (x_range.end, *limit)];
            draw_line(&mut chart, line, (RED, Some((8, 4))), 1, name.clone()).map_err(draw_err)?;
        }
        if let Some(answer) = search.answer {
            let line = vec![(answer, y_range.start), (answer, y_range.end)];
            let bound = if search.lower_bound { "at least " } else { "" };
            let name = format!("answer: {bound}{}", crate::units::rate(answer));
            draw_line(&mut chart, line, (BLACK, Some((3, 3))), 2, name).map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)
    })
}

fn caption(name: &str, search: &SearchDoc) -> String {
    let name = crate::escape::svg(name);
    let slo = crate::escape::svg(&search.slo_text);
    format!("{name}: latency against offered rate, SLO {slo}")
}
