//! The normal bank: embeddings of normal sound plus their calibration.
//!
//! Pure math here, the file format in `file`. A window's score is its distance to the
//! nearest normal window, in one of two metrics ([`Metric`]): cosine distance between
//! unit-norm embeddings (`1 − max dot`), or, for models that append the window's band
//! profile, Euclidean distance after each value is standardised by its spread over the
//! enrolment windows. The bank is capped by a greedy k-center coreset, and its
//! threshold comes from leave-one-out scores of the normal windows themselves, so
//! calibration never needs an anomaly.

mod file;
mod origin;
mod select;
pub use origin::{KNOCK_GUARD, Origin, Spacing};
pub use select::{MAX_CALIBRATION_SCORES, calibrate};
use select::{k_center, leave_one_out_scores};

use std::path::PathBuf;

/// Version of the bank-file layout. Version 2 added the optional per-row notes
/// (`profiles`, `origins` and the `clips` list); version 3 the standardised metric
/// (metadata `metric`, tensors `center` and `scale`). Older files still load. A file may
/// also name each clip's item (metadata `items`, since 2026-12-07, in version 3: an
/// older hark loads it and only loses the items at a rebuild).
pub const BANK_FORMAT_VERSION: u32 = 3;

/// How far from 1 the norm of a stored embedding may be (embeddings are unit-norm).
pub const UNIT_NORM_TOLERANCE: f32 = 1e-3;

/// Calibration stored with a bank.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Score above which a window counts as anomalous.
    pub threshold: f32,
    /// Mean of the leave-one-out normal scores.
    pub score_mean: f32,
    /// Standard deviation of the leave-one-out normal scores.
    pub score_std: f32,
    /// Largest leave-one-out normal score.
    pub score_max: f32,
    /// The false-alarm rate per window the base quantile was taken at.
    pub target_far: f32,
    /// Threshold = this × the `1 − target_far` quantile of normal scores.
    pub margin: f32,
}

/// Safety factor over the normal-score quantile. Enrolment clips come from one day;
/// the same machine on another day (other room noise, other microphone position)
/// scores up to ~1.8× higher (measured on ../shared/data/fan, whose test normals were
/// recorded a year after most of its training clips) with cosine distance, up to ~1.2×
/// with the standardised distance of the default model (2026-11-22). Scores are
/// distances, so a factor, not an offset, carries across models and machines.
pub const THRESHOLD_MARGIN: f32 = 2.0;

/// The margin for knocks (`mode = "tap"`): none. A station's knocks are made the same
/// way each time, and held-out knocks score like the bank's own: enrolled on half of
/// bottles/train, the other half's 99th percentile was 0.92× the calibrated quantile
/// (1 of 250 over it). A missed crack costs more than a second knock, and a false
/// alarm is one `false_alarm` command away from joining the bank.
pub const TAP_THRESHOLD_MARGIN: f32 = 1.0;

/// Target false-alarm rate per window for threshold calibration (before the margin).
pub const TARGET_FAR: f32 = 0.01;

/// How a bank measures the distance between two windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Cosine distance between unit-norm embeddings.
    Cosine,
    /// Euclidean distance after standardising each value by the enrolment windows'
    /// mean and spread. The vector is blocks (the embedding, then the band profile:
    /// [`crate::model::ModelMeta::profile`]); each block weighs the same, whatever its
    /// length, so a score is the root mean square, over the blocks, of each block's
    /// RMS difference in standard deviations.
    Standardised {
        /// Length of the first block (the embedding); the rest is the second.
        embedding_dim: usize,
    },
}

/// A value's spread is taken as at least this fraction of its block's mean spread:
/// a band that never moved during enrolment (digital silence, a clipped peak) would
/// otherwise turn the first hint of noise in it into thousands of standard deviations.
pub const SPREAD_FLOOR: f32 = 0.1;

/// Limits a standardised bank file's `scale` values must keep.
const MIN_SCALE: f32 = 1e-6;
/// See [`MIN_SCALE`].
const MAX_SCALE: f32 = 1e6;
/// Largest magnitude of a standardised bank's `center` and stored rows. Rows are
/// spreads from the mean (a few, or a few hundred for a fault kept as normal); centres
/// are dB or embedding values.
const MAX_STANDARDISED: f32 = 1e6;

/// What a bank's threshold is set for, and how it measures distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// False-alarm rate per window of the normal-score quantile.
    pub far: f32,
    /// Threshold = this × that quantile.
    pub margin: f32,
    /// Distance between windows.
    pub metric: Metric,
}

impl Target {
    /// The target for banks of a cosine model made for `mode` (`"tap"` or
    /// `"continuous"`).
    pub fn for_mode(mode: &str) -> Target {
        Target {
            far: TARGET_FAR,
            margin: match mode {
                "tap" => TAP_THRESHOLD_MARGIN,
                _ => THRESHOLD_MARGIN,
            },
            metric: Metric::Cosine,
        }
    }

    /// The target for banks of `model`: its mode's margin, and the standardised metric
    /// when it appends the band profile.
    pub fn for_model(model: &crate::model::ModelMeta) -> Target {
        Target {
            metric: match model.profile {
                true => Metric::Standardised {
                    embedding_dim: model.embedding_dim,
                },
                false => Metric::Cosine,
            },
            ..Target::for_mode(&model.mode)
        }
    }

    /// The continuous-mode target.
    pub fn continuous() -> Target {
        Target::for_mode("continuous")
    }
}

/// What a bank row was made from, so an anomaly can be explained against it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowNote {
    /// The window's mean level in each mel band, dB ([`crate::explain::profile`]).
    pub profile: Vec<f32>,
    /// The clip the window came from: a file's path, or a live segment such as
    /// `live:2026-11-21T10:00:00.000Z`.
    pub clip: String,
    /// Where the window starts inside that clip, seconds.
    pub t: f32,
    /// The item (piece) the window is of, where one was named (`enroll --item`, or
    /// `enroll_start`'s `"item"`): calibration leaves every window of an item out of
    /// the others' scores, at enrolment and at every rebuild. `None`: only its
    /// neighbours in its own clip are left out.
    pub item: Option<String>,
}

/// Per-value standardisation of a [`Metric::Standardised`] bank: a window `x` is
/// compared as `(x − center) × scale`, `scale` folding in 1 / spread and the block
/// weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// Mean of each value over the enrolment windows.
    pub center: Vec<f32>,
    /// Multiplier of each centred value (finite, > 0).
    pub scale: Vec<f32>,
}

impl Scaling {
    /// From the enrolment rows (`flat`, `n × dim`) and the first block's length.
    fn fit(flat: &[f32], dim: usize, embedding_dim: usize) -> Scaling {
        let n = (flat.len() / dim).max(1) as f64;
        let mut mean = vec![0.0f64; dim];
        for row in flat.chunks_exact(dim) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += f64::from(*x) / n;
            }
        }
        let mut var = vec![0.0f64; dim];
        for row in flat.chunks_exact(dim) {
            for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2) / n;
            }
        }
        let spread: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
        let split = embedding_dim.min(dim);
        let blocks: Vec<std::ops::Range<usize>> = [0..split, split..dim]
            .into_iter()
            .filter(|b| !b.is_empty())
            .collect();
        let mut scale = vec![0.0f32; dim];
        for block in &blocks {
            let len = block.len() as f64;
            let floor = (spread[block.clone()].iter().sum::<f64>() / len * f64::from(SPREAD_FLOOR))
                .max(1e-6);
            let weight = 1.0 / (len * blocks.len() as f64).sqrt();
            for i in block.clone() {
                scale[i] = (weight / spread[i].max(floor)) as f32;
            }
        }
        Scaling {
            center: mean.iter().map(|&m| m as f32).collect(),
            scale,
        }
    }

    /// `x` in the standardised space.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(self.center.iter().zip(&self.scale))
            .map(|(v, (c, s))| (v - c) * s)
            .collect()
    }

    /// Back from the standardised space.
    fn invert(&self, z: &[f32]) -> Vec<f32> {
        z.iter()
            .zip(self.center.iter().zip(&self.scale))
            .map(|(v, (c, s))| v / s + c)
            .collect()
    }
}

/// Normal windows (row-major, `len × dim`) with calibration: unit-norm embeddings, or
/// standardised rows when the bank has a [`Scaling`].
#[derive(Debug, Clone)]
pub struct NormalBank {
    dim: usize,
    embeddings: Vec<f32>,
    /// `Some`: the standardised metric; rows are stored standardised.
    scaling: Option<Scaling>,
    /// One entry per row (`None`: made by an older hark, or without notes).
    notes: Vec<Option<RowNote>>,
    /// Calibration from the enrolment windows.
    pub calibration: Calibration,
    /// sha256 of the model that made the embeddings.
    pub model_hash: String,
    /// Windows seen during enrolment (before the coreset cap).
    pub n_windows: usize,
}

/// A bank file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct BankError {
    /// The bank file.
    pub file: PathBuf,
    /// What is wrong.
    pub why: String,
}

impl NormalBank {
    /// Builds a bank from unit-norm embeddings: calibrates on all of them, then keeps at
    /// most `max_size` by greedy k-center selection. `notes` is empty or has one entry
    /// per embedding.
    pub fn build(
        embeddings: &[Vec<f32>],
        origins: &[Origin],
        notes: &[Option<RowNote>],
        guard: u32,
        max_size: usize,
        target: Target,
        model_hash: &str,
    ) -> anyhow::Result<NormalBank> {
        anyhow::ensure!(
            embeddings.len() >= 2,
            "need at least 2 normal windows to enrol, got {}",
            embeddings.len()
        );
        anyhow::ensure!(
            embeddings.len() == origins.len(),
            "one origin per embedding"
        );
        anyhow::ensure!(
            notes.is_empty() || notes.len() == embeddings.len(),
            "one note per embedding"
        );
        let dim = embeddings[0].len();
        if let Some((i, e)) = embeddings.iter().enumerate().find(|(_, e)| e.len() != dim) {
            anyhow::bail!("embedding {i} has {} values, the first has {dim}", e.len());
        }
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let scaling = match target.metric {
            Metric::Cosine => None,
            Metric::Standardised { embedding_dim } => Some(Scaling::fit(&flat, dim, embedding_dim)),
        };
        let flat = match &scaling {
            Some(s) => flat.chunks_exact(dim).flat_map(|r| s.apply(r)).collect(),
            None => flat,
        };
        let euclidean = scaling.is_some();
        let scores = leave_one_out_scores(&flat, dim, origins, guard, euclidean);
        let calibration = calibrate(&scores, target);
        let keep = k_center(&flat, dim, max_size.max(1), euclidean);
        let embeddings = keep
            .iter()
            .flat_map(|&i| flat[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let notes = keep
            .iter()
            .map(|&i| notes.get(i).cloned().flatten())
            .collect();
        Ok(NormalBank {
            dim,
            embeddings,
            scaling,
            notes,
            calibration,
            model_hash: model_hash.to_string(),
            n_windows: origins.len(),
        })
    }

    /// This bank with more windows (`learn_stop`, `enroll_stop`): standardised and
    /// calibrated anew over its rows and the new ones, as close as it can come to
    /// enrolling every window from the start.
    ///
    /// The bank keeps only its rows, not every window it was enrolled from, so a rebuild
    /// differs from that enrolment in two ways. Measured on `../shared/data/fan`
    /// (2026-11-22): a bank of its seven 2020 recordings learns the 2021 one; enrolling
    /// all eight from the start gives a threshold of 1.911.
    /// - Overlapping windows must stay out of each other's calibration score:
    ///   [`Origin::from_notes`] recovers which overlap. Without it: 1.788.
    /// - A capped bank keeps spread-out rows (k-center), whose leave-one-out scores run
    ///   higher than those of every window: capped at 256 of 843 rows, 2.205. So the
    ///   old rows are also rebuilt alone, and the factor by which that moves their
    ///   threshold from the stored one is divided out of the new calibration: 2.007.
    ///   An uncapped bank with notes rebuilds exactly (1.911), the factor is 1.
    pub fn extend(
        &self,
        rows: Vec<Vec<f32>>,
        notes: Vec<Option<RowNote>>,
        spacing: Spacing,
        guard: u32,
        max_size: usize,
        target: Target,
    ) -> anyhow::Result<NormalBank> {
        anyhow::ensure!(rows.len() == notes.len(), "one note per new row");
        let added = rows.len();
        let old: Vec<Vec<f32>> = self.rows().collect();
        let build = |rows: &[Vec<f32>], notes: &[Option<RowNote>]| {
            let origins = Origin::from_notes(notes, spacing);
            NormalBank::build(
                rows,
                &origins,
                notes,
                guard,
                max_size,
                target,
                &self.model_hash,
            )
        };
        let all_notes: Vec<Option<RowNote>> = self.notes.iter().cloned().chain(notes).collect();
        let all_rows: Vec<Vec<f32>> = old.iter().cloned().chain(rows).collect();
        let mut bank = build(&all_rows, &all_notes)?;
        let bias = match old.len() >= 2 {
            true => build(&old, &self.notes)?.calibration.threshold / self.calibration.threshold,
            false => 1.0,
        };
        if bias.is_finite() && bias > 0.0 {
            let c = &mut bank.calibration;
            for v in [
                &mut c.threshold,
                &mut c.score_mean,
                &mut c.score_std,
                &mut c.score_max,
            ] {
                *v /= bias;
            }
        }
        bank.n_windows = self.n_windows + added;
        Ok(bank)
    }

    /// A bank from already unit-norm rows and a known calibration (benches, tests).
    pub fn from_parts(rows: &[Vec<f32>], calibration: Calibration, model_hash: &str) -> NormalBank {
        NormalBank {
            dim: rows.first().map_or(0, Vec::len),
            embeddings: rows.iter().flatten().copied().collect(),
            scaling: None,
            notes: vec![None; rows.len()],
            calibration,
            model_hash: model_hash.to_string(),
            n_windows: rows.len(),
        }
    }

    /// The rows as the model made them (standardised rows are scaled back), one
    /// vector per row: what [`NormalBank::build`] takes to rebuild the bank.
    pub fn rows(&self) -> impl Iterator<Item = Vec<f32>> + '_ {
        self.embeddings
            .chunks_exact(self.dim)
            .map(|r| match &self.scaling {
                Some(s) => s.invert(r),
                None => r.to_vec(),
            })
    }

    /// How the bank measures distance.
    pub fn metric(&self) -> &'static str {
        match self.scaling {
            Some(_) => "standardised",
            None => "cosine",
        }
    }

    /// What row `i` was made from, if the bank knows.
    pub fn note(&self, i: usize) -> Option<&RowNote> {
        self.notes.get(i).and_then(Option::as_ref)
    }

    /// One note per row, in row order (for rebuilding a bank with more rows).
    pub fn notes(&self) -> &[Option<RowNote>] {
        &self.notes
    }

    /// Adds one window as the model made it (a knock an operator says was good); the
    /// calibration and the standardisation stay as they were. The first row of an
    /// empty bank sets its width; a row of another width is ignored.
    pub fn push(&mut self, embedding: &[f32], note: Option<RowNote>) {
        if self.embeddings.is_empty() {
            self.dim = embedding.len();
        }
        if embedding.len() == self.dim && self.dim > 0 {
            match &self.scaling {
                Some(s) => self.embeddings.extend(s.apply(embedding)),
                None => self.embeddings.extend_from_slice(embedding),
            }
            self.notes.push(note);
        }
    }

    /// Keeps at most `max_size` rows by greedy k-center selection, as
    /// [`NormalBank::build`] does; the calibration stays. For rows added by
    /// [`NormalBank::push`]: an unattended daemon's `false_alarm`s would otherwise
    /// grow the bank, and every window's nearest-row search with it, for as long as it
    /// runs. Rows that are far from the others (a sound the bank had not heard) are
    /// what k-center keeps first, so what the operator taught is kept.
    pub fn cap(&mut self, max_size: usize) {
        if self.is_empty() || self.len() <= max_size {
            return;
        }
        let keep = k_center(
            &self.embeddings,
            self.dim,
            max_size.max(1),
            self.scaling.is_some(),
        );
        let row = |i: usize| &self.embeddings[i * self.dim..(i + 1) * self.dim];
        self.embeddings = keep.iter().flat_map(|&i| row(i).to_vec()).collect();
        self.notes = keep.iter().map(|&i| self.notes[i].clone()).collect();
    }

    /// Number of stored embeddings.
    pub fn len(&self) -> usize {
        self.embeddings.len() / self.dim
    }

    /// True when the bank holds no embedding.
    pub fn is_empty(&self) -> bool {
        self.embeddings.is_empty()
    }

    /// Embedding length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Distance from a window, as the model made it, to its nearest bank row, and
    /// which row: cosine distance, or standardised Euclidean distance.
    pub fn nearest(&self, query: &[f32]) -> (f32, usize) {
        self.nearest_where(query, |_| true)
    }

    /// [`NormalBank::nearest`] among the rows `keep` accepts (by index); `None` when it
    /// accepts none.
    pub fn nearest_among(&self, query: &[f32], keep: impl Fn(usize) -> bool) -> Option<f32> {
        let (d, i) = self.nearest_where(query, keep);
        (i != usize::MAX).then_some(d)
    }

    fn nearest_where(&self, query: &[f32], keep: impl Fn(usize) -> bool) -> (f32, usize) {
        // Rows are ranked by a key that needs no square root, then the best key
        // becomes the distance.
        match &self.scaling {
            Some(s) => {
                let q = s.apply(query);
                let (key, i) = self.smallest(|row| sq_dist(row, &q), keep);
                (key.sqrt(), i)
            }
            None => {
                let (key, i) = self.smallest(|row| -dot(row, query), keep);
                (1.0 + key, i)
            }
        }
    }

    /// Among the rows `keep` accepts, the one with the smallest `key`, and that key
    /// (`f32::MAX` and index `usize::MAX` for no row).
    fn smallest(&self, key: impl Fn(&[f32]) -> f32, keep: impl Fn(usize) -> bool) -> (f32, usize) {
        let mut best = (f32::MAX, usize::MAX);
        for (i, row) in self.embeddings.chunks_exact(self.dim).enumerate() {
            if !keep(i) {
                continue;
            }
            let k = key(row);
            if k < best.0 {
                best = (k, i);
            }
        }
        best
    }
}

/// `Σ term(aᵢ, bᵢ)` with eight independent partial sums, so the compiler can keep them
/// in SIMD lanes (a plain `sum()` must add in order and stays scalar). Scoring against
/// the bank is this N times per window.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += term(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Dot product (eight-lane sum: `lane_sum`).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// Squared Euclidean distance (eight-lane sum: `lane_sum`).
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

#[cfg(test)]
mod tests;
