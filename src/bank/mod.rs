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

use std::path::PathBuf;

/// Version of the bank-file layout. Version 2 added the optional per-row notes
/// (`profiles`, `origins` and the `clips` list); version 3 the standardised metric
/// (metadata `metric`, tensors `center` and `scale`). Older files still load.
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

/// Where an enrolment window came from: windows of the same segment closer than
/// `guard` positions overlap in time and are left out of each other's calibration score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Clip or recording segment.
    pub segment: u32,
    /// Window index inside the segment.
    pub index: u32,
}

impl Origin {
    /// The origins of bank rows, recovered from their notes when a bank is rebuilt with
    /// more rows (`learn_stop`): rows of one clip are one segment, indexed by their start
    /// time over `window_hop_s`, so overlapping windows stay out of each other's
    /// calibration score as they did at enrolment. A row without a note (banks from
    /// before notes) is a segment of its own.
    ///
    /// Without this a rebuild let every window count its overlapping neighbour as an
    /// independent normal: the leave-one-out scores shrank and the threshold with them
    /// (fan's bank: 2.66 → 2.27 from a rebuild that added nothing).
    pub fn from_notes(notes: &[Option<RowNote>], window_hop_s: f64) -> Vec<Origin> {
        let mut clips = std::collections::HashMap::new();
        let mut next = 0u32;
        let mut segment = |clip: Option<&str>| {
            let id = match clip {
                Some(c) => *clips.entry(c.to_string()).or_insert(next),
                None => next,
            };
            next += u32::from(id == next);
            id
        };
        notes
            .iter()
            .map(|note| match note {
                Some(n) => Origin {
                    segment: segment(Some(&n.clip)),
                    index: (f64::from(n.t) / window_hop_s).round().max(0.0) as u32,
                },
                None => Origin {
                    segment: segment(None),
                    index: 0,
                },
            })
            .collect()
    }
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
        window_hop_s: f64,
        guard: u32,
        max_size: usize,
        target: Target,
    ) -> anyhow::Result<NormalBank> {
        anyhow::ensure!(rows.len() == notes.len(), "one note per new row");
        let old: Vec<Vec<f32>> = self.rows().collect();
        let build = |rows: &[Vec<f32>], notes: &[Option<RowNote>]| {
            let origins = Origin::from_notes(notes, window_hop_s);
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
        bank.n_windows = self.n_windows + bank.n_windows - old.len();
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
        // Rows are ranked by a key that needs no square root, then the best key
        // becomes the distance.
        match &self.scaling {
            Some(s) => {
                let q = s.apply(query);
                let (key, i) = self.smallest(|row| sq_dist(row, &q));
                (key.sqrt(), i)
            }
            None => {
                let (key, i) = self.smallest(|row| -dot(row, query));
                (1.0 + key, i)
            }
        }
    }

    /// The row with the smallest `key`, and that key (`f32::MAX` for no row).
    fn smallest(&self, key: impl Fn(&[f32]) -> f32) -> (f32, usize) {
        let mut best = (f32::MAX, 0);
        for (i, row) in self.embeddings.chunks_exact(self.dim).enumerate() {
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

/// Most windows whose leave-one-out score calibrates a bank. Each is scored against
/// every window, so calibration grows as O(n), not O(n²). Measured here (256-value
/// rows, 2026-11-22): a bank built from 16,384 windows took 29 s scoring every
/// window, 6.2 s with this cap; from the most a `learn_stop` can hold (a 2,048-row
/// bank and 32,768 windows, 2.3 hours) 15 s, where every window would take about
/// 130 s. 4,096 scores still put ~40 above the 99th percentile the threshold is
/// taken at.
pub const MAX_CALIBRATION_SCORES: usize = 4096;

/// The distance of windows to their nearest neighbour outside their own time
/// neighbourhood: every window's, or for more than [`MAX_CALIBRATION_SCORES`]
/// windows, that many spread evenly over them.
fn leave_one_out_scores(
    flat: &[f32],
    dim: usize,
    origins: &[Origin],
    guard: u32,
    euclidean: bool,
) -> Vec<f32> {
    let n = origins.len();
    let scored = n.min(MAX_CALIBRATION_SCORES);
    (0..scored)
        .map(|k| k * n / scored)
        .map(|i| {
            let q = &flat[i * dim..(i + 1) * dim];
            let mut best = f32::MAX;
            for j in 0..n {
                let (a, b) = (origins[i], origins[j]);
                if a.segment == b.segment && a.index.abs_diff(b.index) <= guard {
                    continue;
                }
                best = best.min(distance(q, &flat[j * dim..(j + 1) * dim], euclidean));
            }
            // A single short segment has no independent neighbour: fall back to itself.
            if best == f32::MAX { 0.0 } else { best }
        })
        .collect()
}

/// Distance between two stored rows: Euclidean (standardised rows) or cosine.
fn distance(a: &[f32], b: &[f32], euclidean: bool) -> f32 {
    match euclidean {
        true => sq_dist(a, b).sqrt(),
        false => 1.0 - dot(a, b),
    }
}

/// Threshold at `target.margin` × the `1 − target.far` quantile of normal scores.
pub fn calibrate(scores: &[f32], target: Target) -> Calibration {
    let Target {
        far: target_far,
        margin,
        ..
    } = target;
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let n = s.len() as f32;
    let mean = s.iter().sum::<f32>() / n;
    let std = (s.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    let q = ((1.0 - target_far) * (n - 1.0)).round() as usize;
    Calibration {
        threshold: margin * s[q.min(s.len() - 1)],
        score_mean: mean,
        score_std: std,
        score_max: *s.last().unwrap_or(&0.0),
        target_far,
        margin,
    }
}

/// Greedy k-center: indices of at most `k` rows such that every row is close to one.
fn k_center(flat: &[f32], dim: usize, k: usize, euclidean: bool) -> Vec<usize> {
    let n = flat.len() / dim;
    if n <= k {
        return (0..n).collect();
    }
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    let mut chosen = vec![0];
    let mut dist: Vec<f32> = (0..n)
        .map(|i| distance(row(i), row(0), euclidean))
        .collect();
    while chosen.len() < k {
        let (far, _) = dist
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("n > k >= 1");
        chosen.push(far);
        for (i, d) in dist.iter_mut().enumerate() {
            *d = d.min(distance(row(i), row(far), euclidean));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn origins(n: usize) -> Vec<Origin> {
        (0..n)
            .map(|i| Origin {
                segment: i as u32,
                index: 0,
            })
            .collect()
    }

    #[test]
    fn identical_is_zero_and_orthogonal_is_one() {
        let e = vec![unit(&[1.0, 0.0, 0.0]), unit(&[0.0, 1.0, 0.0])];
        let bank =
            NormalBank::build(&e, &origins(2), &[], 0, 10, Target::continuous(), "h").unwrap();
        assert!(bank.nearest(&[1.0, 0.0, 0.0]).0.abs() < 1e-6);
        assert!((bank.nearest(&[0.0, 0.0, 1.0]).0 - 1.0).abs() < 1e-6);
        assert_eq!(bank.nearest(&[0.0, 1.0, 0.0]).1, 1);
    }

    #[test]
    fn k_center_keeps_the_spread() {
        // Three tight clusters of 10; a cap of 3 keeps one of each.
        let mut e = Vec::new();
        for axis in 0..3 {
            for j in 0..10 {
                let mut v = vec![0.01 * j as f32; 3];
                v[axis] = 1.0;
                e.push(unit(&v));
            }
        }
        let bank =
            NormalBank::build(&e, &origins(30), &[], 0, 3, Target::continuous(), "h").unwrap();
        assert_eq!(bank.len(), 3);
        for v in &e {
            assert!(bank.nearest(v).0 < 0.01);
        }
    }

    #[test]
    fn calibration_quantile() {
        let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let c = calibrate(
            &scores,
            Target {
                far: 0.1,
                margin: THRESHOLD_MARGIN,
                metric: Metric::Cosine,
            },
        );
        assert!((c.threshold - THRESHOLD_MARGIN * 0.9).abs() < 1e-6);
        assert!((c.score_mean - 0.5).abs() < 1e-6);
        assert_eq!(c.score_max, 1.0);
    }

    #[test]
    fn knock_banks_take_no_margin_running_machines_twice_the_quantile() {
        let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let tap = calibrate(&scores, Target::for_mode("tap"));
        let cont = calibrate(&scores, Target::for_mode("continuous"));
        assert!((tap.threshold - 0.99).abs() < 1e-6, "{tap:?}");
        assert!((cont.threshold - 2.0 * 0.99).abs() < 1e-6, "{cont:?}");
        assert_eq!((tap.margin, cont.margin), (1.0, 2.0));
    }

    #[test]
    fn leave_one_out_skips_overlapping_windows() {
        // Two windows of one segment next to each other are identical; the guard hides
        // that, so each is scored against the other segment only.
        let e = [unit(&[1.0, 0.0]), unit(&[1.0, 0.0]), unit(&[0.0, 1.0])];
        let o = [
            Origin {
                segment: 0,
                index: 0,
            },
            Origin {
                segment: 0,
                index: 1,
            },
            Origin {
                segment: 1,
                index: 0,
            },
        ];
        let s = leave_one_out_scores(&e.concat(), 2, &o, 1, false);
        assert!((s[0] - 1.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_bank_rebuilt_from_its_notes_keeps_its_threshold() {
        // Two clips of 39 overlapping windows every 0.25 s, in runs of 3 near copies:
        // each window's near copies are within the guard, the next run is not.
        let (hop_s, guard) = (0.25, 2);
        let mut rows = Vec::new();
        let (mut origins, mut notes) = (Vec::new(), Vec::new());
        for clip in 0..2 {
            for i in 0..39 {
                let a = 0.05 * (i / 3) as f32 + 0.003 * (i % 3) as f32 + clip as f32;
                rows.push(unit(&[a.cos(), a.sin(), 0.2]));
                origins.push(Origin {
                    segment: clip,
                    index: i,
                });
                notes.push(Some(RowNote {
                    profile: vec![],
                    clip: format!("clip{clip}.wav"),
                    t: i as f32 * hop_s,
                }));
            }
        }
        let first = NormalBank::build(
            &rows,
            &origins,
            &notes,
            guard,
            100,
            Target::continuous(),
            "h",
        )
        .unwrap();
        let rebuild = |o: &[Origin]| {
            NormalBank::build(&rows, o, &notes, guard, 100, Target::continuous(), "h")
                .unwrap()
                .calibration
        };
        let recovered = Origin::from_notes(&notes, f64::from(hop_s));
        assert_eq!(recovered, origins);
        assert_eq!(rebuild(&recovered), first.calibration);
        // What a rebuild did before: every row its own segment. Near copies then count
        // as independent normals and the threshold falls.
        let alone: Vec<Origin> = (0..78)
            .map(|i| Origin {
                segment: i,
                index: 0,
            })
            .collect();
        let fallen = rebuild(&alone).threshold;
        assert!(
            fallen < 0.5 * first.calibration.threshold,
            "{fallen} vs {}",
            first.calibration.threshold
        );
        // Rows without a note stand alone, each a segment of its own.
        let mixed = Origin::from_notes(&[None, notes[0].clone(), None, notes[1].clone()], 0.25);
        let segments: Vec<u32> = mixed.iter().map(|o| o.segment).collect();
        assert_eq!(segments, [0, 1, 2, 1]);
        assert_eq!((mixed[1].index, mixed[3].index), (0, 1));
    }

    /// `n` windows of clip `clip`, 0.25 s apart, wandering on the unit sphere (each a
    /// small step from the last, so overlapping neighbours are close), with notes.
    fn wander(clip: u32, n: usize) -> (Vec<Vec<f32>>, Vec<Option<RowNote>>) {
        let mut state = 0x9E37_79B9_u32.wrapping_mul(clip + 1);
        let mut step = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut x = [1.0f32, clip as f32, 0.5, -0.3];
        (0..n)
            .map(|i| {
                x.iter_mut().for_each(|v| *v += 0.05 * step());
                let note = RowNote {
                    profile: vec![],
                    clip: format!("clip{clip}"),
                    t: i as f32 * 0.25,
                };
                (unit(&x), Some(note))
            })
            .unzip()
    }

    #[test]
    fn extending_a_capped_bank_lands_near_enrolling_every_window() {
        let (guard, target) = (2, Target::continuous());
        let (mut rows, mut notes) = wander(0, 300);
        let (r1, n1) = wander(1, 300);
        rows.extend(r1);
        notes.extend(n1);
        let (new_rows, new_notes) = wander(2, 60);
        let build = |rows: &[Vec<f32>], notes: &[Option<RowNote>], cap: usize| {
            let origins = Origin::from_notes(notes, 0.25);
            NormalBank::build(rows, &origins, notes, guard, cap, target, "h").unwrap()
        };
        let every: Vec<Vec<f32>> = rows.iter().chain(&new_rows).cloned().collect();
        let every_note: Vec<_> = notes.iter().chain(&new_notes).cloned().collect();
        let want = build(&every, &every_note, 10_000).calibration.threshold;
        for cap in [10_000, 80] {
            let bank = build(&rows, &notes, cap);
            let extended = bank
                .extend(
                    new_rows.clone(),
                    new_notes.clone(),
                    0.25,
                    guard,
                    cap,
                    target,
                )
                .unwrap();
            assert_eq!(extended.n_windows, 660);
            let got = extended.calibration.threshold;
            // A plain rebuild of the kept rows and the new ones, as `learn_stop` did.
            let kept: Vec<Vec<f32>> = bank.rows().chain(new_rows.clone()).collect();
            let kept_notes: Vec<_> = bank.notes().iter().chain(&new_notes).cloned().collect();
            let plain = build(&kept, &kept_notes, cap).calibration.threshold;
            if cap > 660 {
                assert_eq!(got, want, "an uncapped bank extends exactly");
            } else {
                assert!(
                    (got / want - 1.0).abs() < 0.5 * (plain / want - 1.0).abs(),
                    "capped at {cap}: extended {got}, plain rebuild {plain}, every window {want}"
                );
            }
        }
    }

    #[test]
    fn a_large_bank_calibrates_on_a_spread_of_its_windows() {
        let (rows, notes) = wander(0, 6000);
        let origins = Origin::from_notes(&notes, 0.25);
        let flat = rows.concat();
        let bank =
            NormalBank::build(&rows, &origins, &notes, 2, 100, Target::continuous(), "h").unwrap();
        // Every window's score, by brute force, against the 4,096 the bank used.
        let every: Vec<f32> = (0..rows.len())
            .map(|i| {
                (0..rows.len())
                    .filter(|&j| i.abs_diff(j) > 2)
                    .map(|j| 1.0 - dot(&rows[i], &flat[j * 4..(j + 1) * 4]))
                    .fold(f32::MAX, f32::min)
            })
            .collect();
        let full = calibrate(&every, Target::continuous());
        let ratio = bank.calibration.threshold / full.threshold;
        assert!(
            (ratio - 1.0).abs() < 0.05,
            "{ratio}: {:?} vs {full:?}",
            bank.calibration
        );
        assert_eq!(bank.n_windows, 6000);
    }

    /// Enrolment rows of a standardised bank: a 2-value unit embedding, then a 3-band
    /// "profile" in dB (`level` ± 1, one band that never moves).
    fn profiled(n: usize, level: f32) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let a = i as f32 * 0.01;
                let wobble = (i % 3) as f32 - 1.0;
                vec![
                    a.cos(),
                    a.sin(),
                    level + wobble,
                    level - 10.0 - wobble,
                    -100.0,
                ]
            })
            .collect()
    }

    fn standardised() -> Target {
        Target {
            metric: Metric::Standardised { embedding_dim: 2 },
            ..Target::continuous()
        }
    }

    #[test]
    fn standardised_banks_hear_a_louder_window_that_cosine_cannot() {
        let rows = profiled(30, -40.0);
        let bank =
            NormalBank::build(&rows, &origins(30), &[], 0, 100, standardised(), "h").unwrap();
        assert_eq!(bank.metric(), "standardised");
        let normal = bank.nearest(&rows[7]).0;
        assert!(normal < 1e-3, "an enrolment row scores {normal}");
        // Same embedding, every band 10 dB louder: 5 spreads away in two of the three
        // bands. The unit-norm embedding alone cannot see it.
        let mut louder = rows[7].clone();
        louder[2..].iter_mut().for_each(|v| *v += 10.0);
        let score = bank.nearest(&louder).0;
        assert!(
            score > 3.0 * bank.calibration.threshold,
            "louder {score}, threshold {}",
            bank.calibration.threshold
        );
        // A band that never moved during enrolment: its spread is floored at a tenth
        // of the block's mean, so a 0.01 dB wobble in it stays below the threshold
        // (unfloored, it would be 10,000 spreads).
        let mut hum = rows[7].clone();
        hum[4] += 0.01;
        let hum = bank.nearest(&hum).0;
        assert!(
            hum < 0.5 * bank.calibration.threshold,
            "wobble {hum}, threshold {}",
            bank.calibration.threshold
        );
    }

    #[test]
    fn standardised_scores_do_not_depend_on_units() {
        // The same windows with the profile in tenths of a dB (×10, offset): every
        // score is the same, since each value is measured in its own spreads.
        let rows = profiled(20, -40.0);
        let rescaled: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r[2..].iter_mut().for_each(|v| *v = *v * 10.0 + 7.0);
                r
            })
            .collect();
        let a = NormalBank::build(&rows, &origins(20), &[], 0, 100, standardised(), "h").unwrap();
        let b =
            NormalBank::build(&rescaled, &origins(20), &[], 0, 100, standardised(), "h").unwrap();
        assert!((a.calibration.threshold - b.calibration.threshold).abs() < 1e-4);
        let mut q = rows[3].clone();
        q[2] += 2.5;
        let mut q10 = rescaled[3].clone();
        q10[2] += 25.0;
        assert!((a.nearest(&q).0 - b.nearest(&q10).0).abs() < 1e-4);
    }

    #[test]
    fn standardised_banks_round_trip_rebuild_and_refuse_a_bad_scale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bank.safetensors");
        let rows = profiled(10, -30.0);
        let mut bank =
            NormalBank::build(&rows, &origins(10), &[], 0, 100, standardised(), "h").unwrap();
        // A pushed row (an operator's good knock) is standardised like the others.
        let mut extra = rows[0].clone();
        extra[2] += 5.0;
        bank.push(&extra, None);
        assert!(bank.nearest(&extra).0 < 1e-3);
        bank.save(&p).unwrap();
        let back = NormalBank::load(&p, "h", Path::new("m")).unwrap();
        assert_eq!(back.metric(), "standardised");
        assert_eq!(back.calibration, bank.calibration);
        let mut q = rows[4].clone();
        q[3] -= 3.0;
        assert!((back.nearest(&q).0 - bank.nearest(&q).0).abs() < 1e-6);
        // rows() gives the values the model made, to rebuild the bank from.
        let again: Vec<Vec<f32>> = back.rows().collect();
        let worst = again
            .iter()
            .zip(rows.iter().chain([&extra]))
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0, f32::max);
        assert!(worst < 1e-3, "rows() drifted by {worst}");
        // A scale of zero would make every window score 0: never an alarm.
        let mut sc = back.scaling.clone().unwrap();
        sc.scale[1] = 0.0;
        let broken = NormalBank {
            scaling: Some(sc),
            ..back
        };
        broken.save(&p).unwrap();
        let e = NormalBank::load(&p, "h", Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.bank.safetensors") && e.contains("tensor `scale` value 1 = 0 must be"),
            "{e}"
        );
    }

    #[test]
    fn save_load_roundtrip_and_model_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bank.safetensors");
        let e = vec![unit(&[1.0, 2.0]), unit(&[2.0, 1.0]), unit(&[1.0, 1.0])];
        let bank =
            NormalBank::build(&e, &origins(3), &[], 0, 10, Target::continuous(), "abc").unwrap();
        bank.save(&p).unwrap();
        let back = NormalBank::load(&p, "abc", Path::new("m.safetensors")).unwrap();
        assert_eq!(back.calibration, bank.calibration);
        assert_eq!(back.len(), 3);
        let e = NormalBank::load(&p, "def", Path::new("m.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("abc") && e.contains("def") && e.contains("b.bank.safetensors"),
            "{e}"
        );
        std::fs::write(&p, b"\x08\0\0\0\0\0\0\0{}").unwrap();
        assert!(NormalBank::load(&p, "abc", Path::new("m")).is_err());
    }

    #[test]
    fn notes_survive_the_coreset_and_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bank.safetensors");
        let e = vec![unit(&[1.0, 0.0]), unit(&[1.0, 0.001]), unit(&[0.0, 1.0])];
        let note = |clip: &str, t: f32, level: f32| {
            Some(RowNote {
                profile: vec![level, level + 1.0, level + 2.0],
                clip: clip.into(),
                t,
            })
        };
        let notes = vec![note("a.wav", 0.0, -50.0), note("a.wav", 0.5, -49.0), None];
        // A cap of 2 keeps rows 0 and 2 (row 1 sits on row 0): notes follow their rows.
        let mut bank =
            NormalBank::build(&e, &origins(3), &notes, 0, 2, Target::continuous(), "abc").unwrap();
        assert_eq!(bank.len(), 2);
        assert_eq!(bank.note(0), notes[0].as_ref());
        assert_eq!(bank.note(1), None);
        bank.push(&unit(&[1.0, 1.0]), note("live:x", 12.5, -30.0));
        bank.save(&p).unwrap();
        let back = NormalBank::load(&p, "abc", Path::new("m")).unwrap();
        assert_eq!(back.notes(), bank.notes());
        assert_eq!(back.note(2).unwrap().clip, "live:x");
        // A bank without notes (as version 1 wrote them) loads with none.
        NormalBank::from_parts(&e, bank.calibration.clone(), "abc")
            .save(&p)
            .unwrap();
        let back = NormalBank::load(&p, "abc", Path::new("m")).unwrap();
        assert!(back.notes().iter().all(Option::is_none) && back.notes().len() == 3);
    }

    #[test]
    fn hostile_banks_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bank.safetensors");
        // Found by tests/fuzz.rs: rows of 1e30s loaded, and every score was -inf.
        let c = calibrate(&[0.0, 0.1], Target::continuous());
        NormalBank::from_parts(&[vec![1e30, 0.0]], c.clone(), "h")
            .save(&p)
            .unwrap();
        let e = NormalBank::load(&p, "h", Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.bank.safetensors") && e.contains("norm"),
            "{e}"
        );
        // Found by tests/fuzz.rs: values and names read from the file were printed raw.
        let bank = NormalBank::from_parts(&[vec![1.0, 0.0]], c, "h\nx");
        bank.save(&p).unwrap();
        let e = NormalBank::load(&p, "h", Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n') && e.contains("h\\nx"), "{e}");
        let header = br#"{"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}   "#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]);
        let e = NormalBank::from_bytes(&bytes, &p, "h", Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains('\n') && e.contains("offset for tensor `a\\nb`"),
            "{e}"
        );
    }
}
