//! SVG pictures: ROC curves and score histograms of `hark eval --plot`.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::eval::SetResult;

const NORMAL: RGBColor = RGBColor(46, 134, 193);
const ANOMALY: RGBColor = RGBColor(203, 67, 53);

/// One row per set: its ROC curve (with the FPR ≤ 0.1 band that pAUC measures) and
/// the histograms of normal and anomalous clip scores.
pub fn eval_svg(results: &[SetResult], out: &Path) -> anyhow::Result<()> {
    let row_h = 360u32;
    let root = SVGBackend::new(out, (960, row_h * results.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (r, area) in results.iter().zip(root.split_evenly((results.len(), 1))) {
        let (left, right) = area.split_horizontally(400);
        roc_chart(r, &left)?;
        histogram_chart(r, &right)?;
    }
    root.present()
        .with_context(|| format!("{}: cannot write plot", out.display()))?;
    Ok(())
}

fn roc_chart<DB: DrawingBackend>(
    r: &SetResult,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: ROC, AUC {:.3}, pAUC {:.3}", r.name, r.auc, r.pauc),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate")
        .y_desc("true-positive rate")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (crate::commands::eval::MAX_FPR, 1.02)],
            RGBColor(240, 240, 240).filled(),
        )))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let points = crate::metrics::roc(&r.normal, &r.anomaly)?;
    chart
        .draw_series(LineSeries::new(points, ANOMALY.stroke_width(2)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn histogram_chart<DB: DrawingBackend>(
    r: &SetResult,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    // Scores span decades (a healthy fan at 0.005, a broken one at 0.3): bin log10.
    let log = |xs: &[f64]| -> Vec<f64> { xs.iter().map(|x| x.max(1e-9).log10()).collect() };
    let (normal, anomaly) = (log(&r.normal), log(&r.anomaly));
    let all = normal.iter().chain(&anomaly);
    let lo = all.clone().copied().fold(f64::MAX, f64::min);
    let hi = all.copied().fold(f64::MIN, f64::max).max(lo + 1e-9);
    let bins = 30usize;
    let width = (hi - lo) / bins as f64;
    let count = |xs: &[f64]| -> Vec<f64> {
        let mut c = vec![0.0; bins];
        for x in xs {
            let b = (((x - lo) / width) as usize).min(bins - 1);
            c[b] += 1.0 / xs.len() as f64;
        }
        c
    };
    let (cn, ca) = (count(&normal), count(&anomaly));
    let top = cn.iter().chain(&ca).copied().fold(0.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("clip scores (share of clips per bin)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(lo..hi + width, 0f64..top)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("log10 score (cosine distance to the nearest normal window)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (counts, color, label) in [(cn, NORMAL, "normal"), (ca, ANOMALY, "anomaly")] {
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c)], color.mix(0.5).filled())
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.mix(0.5).filled())
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
