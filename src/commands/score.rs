//! `hark score FILE`: the first source's model, bank and decision rules over a file.

use std::path::Path;

use anyhow::bail;

use crate::config::{Config, Mode, SourceConfig};
use crate::daemon::load_source;
use crate::detector::Detector;

/// Prints one line (or JSON object) per window.
pub fn run(file: &Path, config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let Some(s) = cfg.sources.first() else {
        bail!("{}: no [[source]] is configured", config.display());
    };
    let loaded = load_source(s, config)?;
    let tap = s.mode == Mode::Tap;
    let clip = if tap {
        knocks(&loaded, s, file)?
    } else {
        super::embed_clip(&loaded.embedder, loaded.front, file, s.channel)?
    };
    let Some(bank) = loaded.bank else {
        bail!(
            "{}: bank does not exist; run `hark enroll` or let `hark run` learn it first",
            s.bank.display()
        );
    };
    let mut det = Detector::new(bank, s.threshold_scale, s.raise_k, s.raise_n, s.clear_m);
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for (w, e) in clip.windows.iter().zip(&clip.embeddings) {
        let score = det.score(e);
        det.update(score);
        // Tap mode: one verdict per knock, at its onset, without hysteresis.
        let (t, anomaly) = match tap {
            true => (w.t_start_s, score > det.threshold()),
            false => (w.t_end_s, det.active()),
        };
        let line = if json {
            serde_json::json!({
                "t": (t * 1000.0).round() / 1000.0,
                "score": score,
                "threshold": det.threshold(),
                "anomaly": anomaly,
            })
            .to_string()
        } else {
            format!(
                "t={:8.3}s  score={:.5}  threshold={:.5}{}",
                t,
                score,
                det.threshold(),
                if anomaly { "  ANOMALY" } else { "" }
            )
        };
        if writeln!(out, "{line}").is_err() {
            break; // closed pipe (e.g. `| head`): not an error
        }
    }
    Ok(())
}

/// Tap mode: the knocks of a recording, found and windowed as the daemon does.
fn knocks(
    loaded: &crate::daemon::Loaded,
    s: &SourceConfig,
    file: &Path,
) -> anyhow::Result<super::EmbeddedClip> {
    let clip = crate::wav::Clip::read(file)?;
    let mut front = crate::tap::TapFront::new(s.tap, loaded.front, clip.sample_rate_hz)?;
    let mut windows = Vec::new();
    front.push(&clip.mono(s.channel), &mut |w| windows.push(w));
    let embeddings = super::offline::embed_windows(&loaded.embedder, &windows)?;
    Ok(super::EmbeddedClip {
        windows,
        embeddings,
    })
}
