//! The offline path shared by `score`, `enroll` and `bench`: a file through the same
//! front end and network the daemon uses.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::frontend::{Window, windows_of};
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

/// Windows and embeds a whole WAV file (channel 0 of multichannel files unless told).
pub fn embed_clip(
    embedder: &Embedder,
    front: FrontEndParams,
    path: &Path,
    channel: Option<usize>,
) -> anyhow::Result<EmbeddedClip> {
    let clip = Clip::read(path)?;
    let mono = clip.mono(channel.or(Some(0)));
    let windows = windows_of(front, clip.sample_rate_hz, &mono)?;
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

/// A clip's windows (dB) and RMS level, padded with silence to one window when it is
/// shorter (a single knock, a bottle strike): the offline path of eval and train.
pub fn padded_windows(
    front: FrontEndParams,
    mono: &[f32],
    rate_hz: u32,
) -> anyhow::Result<(Vec<Window>, f64)> {
    let rms =
        (mono.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / mono.len().max(1) as f64).sqrt();
    // One window plus slack for the resampler's delay.
    let min_len = ((front.window_seconds() + 0.25) * rate_hz as f64) as usize;
    let windows = if mono.len() < min_len {
        let mut x = mono.to_vec();
        x.resize(min_len, 0.0);
        windows_of(front, rate_hz, &x)?
    } else {
        windows_of(front, rate_hz, mono)?
    };
    Ok((windows, rms))
}
