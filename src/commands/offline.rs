//! The offline path shared by `score`, `enroll` and `bench`: a file through the same
//! front end and network the daemon uses.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::frontend::Window;
use crate::model::Embedder;
use crate::spectrogram::FrontEndParams;
use crate::wav::Clip;

/// A clip's windows and their unit-norm embeddings.
#[derive(Debug)]
pub struct EmbeddedClip {
    /// The windows, in stream order.
    pub windows: Vec<Window>,
    /// One embedding per window.
    pub embeddings: Vec<Vec<f32>>,
}

/// Embeds windows in batches of 32 (the offline paths; the daemon batches by backlog).
pub fn embed_windows(embedder: &Embedder, windows: &[Window]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut embeddings = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(32) {
        let slices: Vec<&[f32]> = chunk.iter().map(|w| w.mels.as_slice()).collect();
        embeddings.extend(
            embedder
                .embed(&slices)
                .map_err(|e| anyhow::anyhow!(crate::model::first_line(&e)))?,
        );
    }
    Ok(embeddings)
}

/// How a recording is cut into the windows the daemon would score.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// Continuous mode: sliding windows; a clip shorter than one window is padded to one.
    Sliding,
    /// Tap mode: one window per knock the station's detector finds.
    Knocks {
        /// The detector's settings.
        tap: crate::tap::TapParams,
        /// The file holds one strike (a DCASE-layout knock set): when the detector
        /// finds none, the knock is at the file's loudest moment.
        one_per_file: bool,
    },
}

impl Cut {
    /// How the clips of a DCASE-layout set are cut for a model's `mode`: one strike
    /// per file in tap mode, with default knock-detector settings.
    pub fn for_sets(mode: &str) -> Cut {
        match mode {
            "tap" => Cut::Knocks {
                tap: crate::tap::TapParams::default(),
                one_per_file: true,
            },
            _ => Cut::Sliding,
        }
    }
}

/// The windows of a mono recording at `rate_hz`, cut as `cut` says.
///
/// When the detector finds no knock, a clip cut at its strike (no longer than one
/// window, or loudest in its first 20 ms) is still one knock, from its start: it has
/// no quiet before it for the detector's noise floor. With `one_per_file` (DCASE-layout
/// knock sets, one strike per file, some recorded under `min_level_dbfs`) any other
/// clip is one knock from `pre_ms` before its loudest sample; without, it has none.
pub fn windows(
    front: FrontEndParams,
    cut: Cut,
    mono: &[f32],
    rate_hz: u32,
    file: &Path,
) -> anyhow::Result<Vec<Window>> {
    let Cut::Knocks { tap, one_per_file } = cut else {
        return crate::frontend::padded_windows(front, mono, rate_hz);
    };
    let mut knocks = crate::tap::TapFront::new(tap, front, rate_hz)?;
    let mut windows = Vec::new();
    knocks.push(mono, &mut |w| windows.push(w));
    if !windows.is_empty() || mono.is_empty() {
        return Ok(windows);
    }
    let one_window = mono.len() as f64 <= front.window_seconds() * rate_hz as f64;
    let peak = mono
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map_or(0, |(i, _)| i);
    let cut_at_strike = one_window || peak < (rate_hz / 50) as usize;
    if !(cut_at_strike || one_per_file) {
        return Ok(windows);
    }
    let from = match cut_at_strike {
        true => 0,
        false => peak.saturating_sub((tap.pre_ms / 1000.0 * rate_hz as f32) as usize),
    };
    let t0 = from as f64 / rate_hz as f64;
    tracing::debug!(
        "{}: no onset found: taking it as one knock at {t0:.3} s",
        file.display()
    );
    let first = crate::frontend::padded_windows(front, &mono[from..], rate_hz)?
        .into_iter()
        .next();
    Ok(first
        .map(|mut w| {
            w.t_start_s += t0;
            w.t_end_s += t0;
            w
        })
        .into_iter()
        .collect())
}

/// Windows and embeds a whole WAV file (channel 0 of multichannel files unless told).
pub fn embed_clip(
    embedder: &Embedder,
    front: FrontEndParams,
    cut: Cut,
    path: &Path,
    channel: Option<usize>,
) -> anyhow::Result<EmbeddedClip> {
    let clip = Clip::read(path)?;
    let mono = clip.mono(channel.or(Some(0)));
    let windows = windows(front, cut, &mono, clip.sample_rate_hz, path)?;
    let embeddings = embed_windows(embedder, &windows)
        .with_context(|| format!("{}: embedding failed", path.display()))?;
    Ok(EmbeddedClip {
        windows,
        embeddings,
    })
}

/// The WAV files of a DCASE-style folder: `DIR/train/*.wav` if it exists, else
/// `DIR/*.wav`, sorted by name.
pub fn wav_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let train = dir.join("train");
    let dir = if train.is_dir() {
        train
    } else {
        dir.to_path_buf()
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{}: no .wav files", dir.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::commands::geometry::TAP;
    use crate::tap::TapParams;
    use crate::tap::tests::stream;

    const RATE: u32 = 48_000;

    fn knocks(one_per_file: bool) -> Cut {
        Cut::Knocks {
            tap: TapParams::default(),
            one_per_file,
        }
    }

    fn starts(w: &[Window]) -> Vec<f64> {
        w.iter().map(|w| (w.t_start_s * 1000.0).round()).collect()
    }

    #[test]
    fn a_tap_recording_is_cut_into_one_window_per_knock() {
        let x = stream(RATE, 3.0, &[0.5, 1.3, 2.2], 0.5, 0.001);
        let f = Path::new("three.wav");
        let sliding = windows(TAP, Cut::Sliding, &x, RATE, f).unwrap();
        assert!(sliding.len() > 100, "{}", sliding.len());
        for one_per_file in [false, true] {
            let w = windows(TAP, knocks(one_per_file), &x, RATE, f).unwrap();
            // Each window starts `pre_ms` (5 ms) before its knock, within a 2 ms frame.
            let t = starts(&w);
            assert_eq!(t.len(), 3, "{t:?}");
            for (t, knock) in t.iter().zip([500.0, 1300.0, 2200.0]) {
                assert!((t - knock).abs() <= 7.0, "{t} vs {knock}");
            }
        }
    }

    #[test]
    fn a_file_with_one_quiet_strike_is_that_strike_only_when_files_hold_one() {
        // Under the detector's -50 dBFS floor, as some stones recordings are.
        let x = stream(RATE, 1.0, &[0.6], 0.004, 0.0001);
        let f = Path::new("quiet.wav");
        assert!(windows(TAP, knocks(false), &x, RATE, f).unwrap().is_empty());
        // A station set for a quiet microphone hears it as a knock of its own.
        let quiet = Cut::Knocks {
            tap: TapParams {
                min_level_dbfs: -70.0,
                ..TapParams::default()
            },
            one_per_file: false,
        };
        let t = starts(&windows(TAP, quiet, &x, RATE, f).unwrap());
        assert!(t.len() == 1 && (593.0..=601.0).contains(&t[0]), "{t:?}");
        let w = windows(TAP, knocks(true), &x, RATE, f).unwrap();
        // From `pre_ms` before the loudest sample, which is just after the onset.
        let t = starts(&w);
        assert_eq!(t.len(), 1);
        assert!((595.0..=600.0).contains(&t[0]), "{t:?}");
    }

    #[test]
    fn a_clip_cut_at_its_strike_is_one_knock_from_its_start() {
        let x = stream(RATE, 0.6, &[0.0], 0.5, 0.001);
        let f = Path::new("strike.wav");
        for one_per_file in [false, true] {
            let w = windows(TAP, knocks(one_per_file), &x, RATE, f).unwrap();
            assert_eq!(starts(&w), vec![0.0]);
        }
        // Silence alone holds no knock unless the file is said to hold one.
        let quiet = vec![0.0f32; RATE as usize];
        assert!(
            windows(TAP, knocks(false), &quiet, RATE, f)
                .unwrap()
                .is_empty()
        );
    }
}
