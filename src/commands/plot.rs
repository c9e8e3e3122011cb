//! SVG pictures: ROC curves and score histograms of `hark eval --plot`, and the score
//! over time of `hark score --plot`.

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
        .x_desc("log10 score (distance to the nearest normal window)")
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

/// Shaded spans where an event runs (continuous mode).
pub const EVENT_FILL: RGBColor = RGBColor(245, 183, 177);
/// The threshold line.
pub const THRESHOLD: RGBColor = RGBColor(230, 126, 34);
/// A good knock (tap mode).
const GOOD: RGBColor = RGBColor(39, 174, 96);

/// A tick label for a log axis: 0.005, 0.02, 0.3, 1, 2e-5.
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    if v.abs() < 1e-4 {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.5}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `hark score FILE --plot OUT.svg`: the score over time (seconds of audio) on a log
/// axis with the threshold as a dashed line; in continuous mode shaded spans where the
/// daemon would have an event running, in tap mode one marker per knock, green for
/// good and red for defective.
pub fn score_svg(s: &super::score::Scored, out: &Path) -> anyhow::Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: cannot draw plot: {e}", out.display());
    let threshold = s.threshold as f64;
    let events = s.events();
    let scores = s.rows.iter().map(|r| r.score as f64);
    let lo = scores.clone().chain([threshold]).fold(f64::MAX, f64::min);
    let hi = scores.chain([threshold]).fold(f64::MIN, f64::max);
    // Headroom above the highest score for the legend.
    let (lo, hi) = ((lo * 0.6).max(1e-6), (hi * 5.0).max(lo * 20.0).max(2e-6));
    // Ticks at 1, 2 and 5 of each decade; faint grid lines at every digit.
    let decade_points = |digits: &[f64]| -> Vec<f64> {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a..=b)
            .flat_map(|k| digits.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let y_range = (lo..hi)
        .log_scale()
        .with_key_points(decade_points(&[1.0, 2.0, 5.0]))
        .with_light_points(decade_points(&[
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
        ]));
    let t_end = s.rows.last().map_or(0.0, |r| r.t).max(s.seconds).max(0.1);
    let caption = if s.tap {
        let bad = s.rows.iter().filter(|r| r.anomaly).count();
        format!("{} — {} knocks, {} defective", s.name, s.rows.len(), bad)
    } else {
        format!(
            "{} — {} event{} in {:.1} s",
            s.name,
            events.len(),
            if events.len() == 1 { "" } else { "s" },
            s.seconds
        )
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&caption, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..t_end, y_range)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("time (seconds of audio)")
            .y_desc("score (distance to the nearest normal, log scale)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 14))
            .y_label_formatter(&|v| tick(*v))
            .x_label_formatter(&|v| tick(*v))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.10))
            .draw()
            .map_err(|x| e(&x))?;
        if !s.tap {
            let (k, n, m) = s.rule;
            chart
                .draw_series(events.iter().map(|&(a, b)| {
                    Rectangle::new([(a, lo), (b, hi)], EVENT_FILL.mix(0.45).filled())
                }))
                .map_err(|x| e(&x))?
                .label(format!(
                    "event running ({k} of {n} windows over threshold raise it, {m} clean clear it)"
                ))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 16, y + 6)], EVENT_FILL.filled())
                });
            chart
                .draw_series(LineSeries::new(
                    s.rows.iter().map(|r| (r.t, (r.score as f64).max(lo))),
                    NORMAL.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label("window score (at the window's end)")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], NORMAL.stroke_width(2)));
        } else {
            for (defective, color, label) in [
                (false, GOOD, "good knock"),
                (true, ANOMALY, "defective knock"),
            ] {
                chart
                    .draw_series(
                        s.rows.iter().filter(|r| r.anomaly == defective).map(|r| {
                            Circle::new((r.t, (r.score as f64).max(lo)), 5, color.filled())
                        }),
                    )
                    .map_err(|x| e(&x))?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
            }
        }
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, threshold), (t_end, threshold)],
                10,
                6,
                THRESHOLD.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(format!("threshold {}", tick(threshold)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], THRESHOLD.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    // An accessible name (and the file name a viewer's tab shows).
    let title = format!("<title>hark score: {}</title>", xml_escape(&s.name));
    if let Some(end) = svg.find('>') {
        svg.insert_str(end + 1, &format!("\n{title}"));
    }
    std::fs::write(out, svg).with_context(|| format!("{}: cannot write plot", out.display()))?;
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
