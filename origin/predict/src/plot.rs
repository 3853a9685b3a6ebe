//! The sweep's plot: hot-start rate against budget, one line per policy, as SVG (plotters, no fonts needed).

use std::path::Path;

use plotters::prelude::*;

use crate::sweep::SweepRow;
use crate::PredictError;

/// Writes the plot to `path` (SVG), atomically.
pub fn plot(rows: &[SweepRow], path: &Path) -> Result<(), PredictError> {
    let err = |e: &dyn std::fmt::Display| PredictError::Plot {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut policies: Vec<&str> = Vec::new();
    for r in rows {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let xmax = rows.iter().map(|r| gib(r.budget_bytes)).fold(0.0, f64::max) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Hot-start rate against warm-disk budget",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax.max(0.1), 0.0..100.0)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("budget (GiB)")
            .y_desc("hot starts (%)")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, p) in policies.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.policy == *p)
                .map(|r| (gib(r.budget_bytes), r.report.hot_rate * 100.0))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(*p)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|(x, y)| Circle::new((x, y), 3, colour.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, svg).map_err(|e| PredictError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PredictError::io(path, e))
}
