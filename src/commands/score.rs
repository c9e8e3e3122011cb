//! `hark score FILE`: the first source's model, bank and decision rules over a file.

use std::path::Path;

use anyhow::bail;

use crate::config::{Config, Mode};
use crate::daemon::load_source;
use crate::detector::Detector;

/// One scored window (continuous mode) or knock (tap mode), as `score` prints it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Seconds of audio: the window's end, or the knock's onset.
    pub t: f64,
    /// Cosine distance to the nearest normal embedding.
    pub score: f32,
    /// Continuous: an anomaly is running (the daemon's k-of-n / m-clean rule, via
    /// [`Detector`]). Tap: this knock is defective (score over threshold).
    pub anomaly: bool,
}

/// What `score --plot` draws.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The file's name (for the title).
    pub name: String,
    /// Tap mode (one marker per knock) or continuous (a score line and event spans).
    pub tap: bool,
    /// Length of the file in seconds.
    pub seconds: f64,
    /// Threshold in force.
    pub threshold: f32,
    /// The rule: raise_k of raise_n over threshold raise; clear_m clean clear.
    pub rule: (usize, usize, usize),
    /// The rows, in time order.
    pub rows: Vec<Row>,
}

impl Scored {
    /// Continuous mode: the spans, in seconds of audio, during which the daemon would
    /// have an event running: from the window that raises it to the window that clears
    /// it (the event's `t_end`), or to the last window if the file ends first.
    pub fn events(&self) -> Vec<(f64, f64)> {
        if self.tap {
            return Vec::new();
        }
        let mut spans = Vec::new();
        let mut open: Option<f64> = None;
        for r in &self.rows {
            match (open, r.anomaly) {
                (None, true) => open = Some(r.t),
                (Some(start), false) => {
                    spans.push((start, r.t));
                    open = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(last)) = (open, self.rows.last()) {
            spans.push((start, last.t));
        }
        spans
    }
}

/// Prints one line (or JSON object) per window; with `plot`, also draws them as SVG.
pub fn run(file: &Path, config: &Path, json: bool, plot: Option<&Path>) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let Some(s) = cfg.sources.first() else {
        bail!("{}: no [[source]] is configured", config.display());
    };
    let loaded = load_source(s, config)?;
    let tap = s.mode == Mode::Tap;
    let cut = match tap {
        true => super::offline::Cut::Knocks {
            tap: s.tap,
            one_per_file: false,
        },
        false => super::offline::Cut::Sliding,
    };
    let clip = super::embed_clip(&loaded.embedder, loaded.front, cut, file, s.channel)?;
    let Some(bank) = loaded.bank else {
        bail!(
            "{}: bank does not exist; run `hark enroll` or let `hark run` learn it first",
            s.bank.display()
        );
    };
    let mut det = Detector::new(bank, s.threshold_scale, s.raise_k, s.raise_n, s.clear_m);
    let mut rows = Vec::with_capacity(clip.windows.len());
    let mut out = std::io::stdout().lock();
    let mut printing = true;
    let bounds = crate::explain::band_bounds_hz(&loaded.front);
    use std::io::Write;
    for (w, e) in clip.windows.iter().zip(&clip.embeddings) {
        let (score, nearest) = det.nearest(e);
        det.update(score);
        // Over-threshold windows say which bands moved against the nearest normal one.
        let explain = (score > det.threshold())
            .then(|| {
                let profile = crate::explain::profile(&w.mels, loaded.front.n_mels);
                crate::explain::against(det.bank(), nearest, &profile, &bounds)
            })
            .flatten();
        // Tap mode: one verdict per knock, at its onset, without hysteresis.
        let (t, anomaly) = match tap {
            true => (w.t_start_s, score > det.threshold()),
            false => (w.t_end_s, det.active()),
        };
        rows.push(Row { t, score, anomaly });
        if !printing {
            continue;
        }
        let line = if json {
            let mut j = serde_json::json!({
                "t": (t * 1000.0).round() / 1000.0,
                "score": score,
                "threshold": det.threshold(),
                "anomaly": anomaly,
            });
            if let Some(x) = &explain {
                j["explain"] = x.to_json();
            }
            j.to_string()
        } else {
            let why = explain.as_ref().map_or(String::new(), |x| {
                format!(
                    "  {} (nearest normal: {} at {:.1} s)",
                    x.text(),
                    x.nearest_clip,
                    x.nearest_t
                )
            });
            format!(
                "t={:8.3}s  score={:.5}  threshold={:.5}{}{why}",
                t,
                score,
                det.threshold(),
                if anomaly { "  ANOMALY" } else { "" }
            )
        };
        if writeln!(out, "{line}").is_err() {
            printing = false; // closed pipe (e.g. `| head`): not an error
        }
    }
    if let Some(svg) = plot {
        let seconds = hound::WavReader::open(file).map_or(0.0, |r| {
            r.duration() as f64 / r.spec().sample_rate.max(1) as f64
        });
        let scored = Scored {
            name: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string()),
            tap,
            seconds,
            threshold: det.threshold(),
            rule: (s.raise_k, s.raise_n, s.clear_m),
            rows,
        };
        super::plot::score_svg(&scored, svg)?;
    }
    Ok(())
}
