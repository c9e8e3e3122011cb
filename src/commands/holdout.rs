//! `hark eval --holdout`: choosing a model or front end without test clips. A set's
//! own `train/` clips are split; one part is enrolled, the other scored as it is and
//! with each anomaly twin (a synthetic fault) applied.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::eval::{MAX_FPR, audio_windows, clip_score, enrol};
use super::progress::{self, Bar, Unit};
use crate::metrics::{auc, pauc};
use crate::model::Embedder;
use crate::wav::Clip;

/// One anomaly twin on a set's held-out train clips (`eval --holdout`).
#[derive(Debug, Clone)]
pub struct TwinResult {
    /// Set name.
    pub name: String,
    /// The twin ([`crate::train::Twin::name`]).
    pub twin: &'static str,
    /// AUC of held-out clips against their twins.
    pub auc: f64,
    /// pAUC at `MAX_FPR`.
    pub pauc: f64,
    /// Held-out normal clips, and as many twins.
    pub n: usize,
}

/// Seed of the twins' random parameters, so a rerun gives the same numbers.
const HOLDOUT_SEED: u64 = 11;

/// Which `train/` clips `eval --holdout` enrols and which it holds out (sorted by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Even places enrolled, odd places held out: every held-out clip has a neighbour
    /// in the bank (the same session, often the same item).
    Interleaved,
    /// The first half enrolled, the second held out: later recordings, or other items
    /// (other stones, another day's fan), as a deployment meets them after enrolment.
    Halves,
}

impl Split {
    /// Whether the clip at `place` of `n` (sorted by name) is enrolled.
    pub fn enrols(self, place: usize, n: usize) -> bool {
        match self {
            Split::Interleaved => place % 2 == 0,
            Split::Halves => place < n.div_ceil(2),
        }
    }

    /// The name `--holdout-split` takes and `--json` prints.
    pub fn name(self) -> &'static str {
        match self {
            Split::Interleaved => "interleaved",
            Split::Halves => "halves",
        }
    }
}

/// `eval --holdout`: what a set's own `train/` clips say, without a test clip or a real
/// fault. The clips `split` enrols are enrolled; each other clip is scored as it is
/// (normal) and with each anomaly twin of the model's mode applied (a synthetic fault:
/// [`crate::train::Twin`]). Per twin, AUC and pAUC of the clips against their twins.
/// This is how a front end or a model is chosen without looking at `test/`. `bar`
/// advances by one per clip.
pub fn holdout(
    embedder: &Embedder,
    name: &str,
    dir: &Path,
    split: Split,
    bar: &Bar,
) -> anyhow::Result<Vec<TwinResult>> {
    let files = super::wav_files(&dir.join("train"))?;
    let (enrolled, held): (Vec<_>, Vec<_>) = files
        .iter()
        .enumerate()
        .partition(|(i, _)| split.enrols(*i, files.len()));
    let enrolled: Vec<PathBuf> = enrolled.into_iter().map(|(_, f)| f.clone()).collect();
    if held.is_empty() {
        bail!(
            "{}: --holdout needs at least 2 train clips, found {}",
            dir.join("train").display(),
            files.len()
        );
    }
    let (bank, _) = enrol(embedder, &enrolled, bar)?;
    let twins = crate::train::Twin::for_mode(&embedder.meta().mode);
    let mut normal = Vec::new();
    let mut anomalies = vec![Vec::new(); twins.len()];
    let mut rng = crate::model::SplitMix64(HOLDOUT_SEED);
    for (_, file) in held {
        let clip = Clip::read(file)?;
        let mono = clip.mono(Some(0));
        let rate = clip.sample_rate_hz;
        normal.push(clip_score(
            &bank,
            &audio_windows(embedder, &mono, rate, file)?,
        ));
        for (twin, scores) in twins.iter().zip(&mut anomalies) {
            let faulty = twin.apply(&mono, rate, &mut rng);
            scores.push(clip_score(
                &bank,
                &audio_windows(embedder, &faulty, rate, file)?,
            ));
        }
        bar.inc(1);
    }
    twins
        .iter()
        .zip(anomalies)
        .map(|(twin, anomaly)| {
            Ok(TwinResult {
                name: name.to_string(),
                twin: twin.name(),
                auc: auc(&normal, &anomaly)?,
                pauc: pauc(&normal, &anomaly, MAX_FPR)?,
                n: normal.len(),
            })
        })
        .collect()
}

/// `eval --holdout`: one line per set and twin, then the set's mean over its twins.
pub fn run(
    embedder: &Embedder,
    sets: &[(String, PathBuf)],
    clips: usize,
    split: Split,
    json: bool,
) -> anyhow::Result<()> {
    let bar = progress::bar(clips as u64, "held-out twins", Unit::Items("clips"));
    for (name, set) in sets {
        bar.set_message(name.clone());
        let results = holdout(embedder, name, set, split, &bar)?;
        for r in &results {
            let line = if json {
                serde_json::json!({
                    "set": r.name, "twin": r.twin, "auc": r.auc, "pauc": r.pauc,
                    "n_normal": r.n, "n_anomaly": r.n, "split": split.name(),
                })
                .to_string()
            } else {
                format!(
                    "{:<24} {:<8} AUC {:6.2}  pAUC {:6.2}  ({} held-out train clips and their twins)",
                    r.name,
                    r.twin,
                    100.0 * r.auc,
                    100.0 * r.pauc,
                    r.n
                )
            };
            bar.stdout_line(&line)?;
        }
        if !json {
            let k = results.len().max(1) as f64;
            bar.stdout_line(&format!(
                "{:<24} {:<8} AUC {:6.2}  pAUC {:6.2}",
                name,
                "mean",
                100.0 * results.iter().map(|r| r.auc).sum::<f64>() / k,
                100.0 * results.iter().map(|r| r.pauc).sum::<f64>() / k
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_splits_enrol_every_other_clip_or_the_first_half() {
        let enrolled =
            |split: Split, n| -> Vec<usize> { (0..n).filter(|&i| split.enrols(i, n)).collect() };
        assert_eq!(enrolled(Split::Interleaved, 5), [0, 2, 4]);
        assert_eq!(enrolled(Split::Halves, 5), [0, 1, 2]);
        assert_eq!(enrolled(Split::Halves, 6), [0, 1, 2]);
        // Two clips: one enrolled, one held out, either way.
        assert_eq!(enrolled(Split::Interleaved, 2), [0]);
        assert_eq!(enrolled(Split::Halves, 2), [0]);
    }
}
