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

/// Windows and embeds a whole WAV file (channel 0 of multichannel files unless told).
pub fn embed_clip(
    embedder: &Embedder,
    front: FrontEndParams,
    path: &Path,
    channel: Option<usize>,
) -> anyhow::Result<EmbeddedClip> {
    let clip = Clip::read(path)?;
    let mono = clip.mono(channel.or(Some(0)));
    // A clip shorter than one window (a single knock) is padded with silence.
    let (windows, _) = crate::frontend::padded_windows(front, &mono, clip.sample_rate_hz)?;
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
