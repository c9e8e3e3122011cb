//! The normal bank: unit-norm embeddings of normal sound plus their calibration.
//!
//! Pure math and one file format. Scoring is `1 − max dot` against the bank (cosine
//! distance to the nearest normal window). The bank is capped by a greedy k-center
//! coreset, and its threshold comes from leave-one-out scores of the normal windows
//! themselves, so calibration never needs an anomaly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Version of the bank-file layout. Version 2 added the optional per-row notes
/// (`profiles`, `origins` and the `clips` list); version 1 files still load.
pub const BANK_FORMAT_VERSION: u32 = 2;

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
/// recorded a year after most of its training clips). Scores are cosine distances, so
/// a factor, not an offset, carries across models and machines.
pub const THRESHOLD_MARGIN: f32 = 2.0;

/// The margin for knocks (`mode = "tap"`): none. A station's knocks are made the same
/// way each time, and held-out knocks score like the bank's own: enrolled on half of
/// bottles/train, the other half's 99th percentile was 0.92× the calibrated quantile
/// (1 of 250 over it). A missed crack costs more than a second knock, and a false
/// alarm is one `false_alarm` command away from joining the bank.
pub const TAP_THRESHOLD_MARGIN: f32 = 1.0;

/// Target false-alarm rate per window for threshold calibration (before the margin).
pub const TARGET_FAR: f32 = 0.01;

/// What a bank's threshold is set for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// False-alarm rate per window of the normal-score quantile.
    pub far: f32,
    /// Threshold = this × that quantile.
    pub margin: f32,
}

impl Target {
    /// The target for banks of a model made for `mode` (`"tap"` or `"continuous"`).
    pub fn for_mode(mode: &str) -> Target {
        Target {
            far: TARGET_FAR,
            margin: match mode {
                "tap" => TAP_THRESHOLD_MARGIN,
                _ => THRESHOLD_MARGIN,
            },
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

/// Unit-norm normal embeddings (row-major, `len × dim`) with calibration.
#[derive(Debug, Clone)]
pub struct NormalBank {
    dim: usize,
    embeddings: Vec<f32>,
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
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let scores = leave_one_out_scores(&flat, dim, origins, guard);
        let calibration = calibrate(&scores, target);
        let keep = k_center(&flat, dim, max_size.max(1));
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
            notes,
            calibration,
            model_hash: model_hash.to_string(),
            n_windows: origins.len(),
        })
    }

    /// A bank from already unit-norm rows and a known calibration (benches, tests).
    pub fn from_parts(rows: &[Vec<f32>], calibration: Calibration, model_hash: &str) -> NormalBank {
        NormalBank {
            dim: rows.first().map_or(0, Vec::len),
            embeddings: rows.iter().flatten().copied().collect(),
            notes: vec![None; rows.len()],
            calibration,
            model_hash: model_hash.to_string(),
            n_windows: rows.len(),
        }
    }

    /// The stored embeddings, one slice per row.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.embeddings.chunks_exact(self.dim)
    }

    /// What row `i` was made from, if the bank knows.
    pub fn note(&self, i: usize) -> Option<&RowNote> {
        self.notes.get(i).and_then(Option::as_ref)
    }

    /// One note per row, in row order (for rebuilding a bank with more rows).
    pub fn notes(&self) -> &[Option<RowNote>] {
        &self.notes
    }

    /// Adds one unit-norm embedding (a knock an operator says was good); the
    /// calibration stays as it was. The first row of an empty bank sets its width;
    /// a row of another width is ignored.
    pub fn push(&mut self, embedding: &[f32], note: Option<RowNote>) {
        if self.embeddings.is_empty() {
            self.dim = embedding.len();
        }
        if embedding.len() == self.dim && self.dim > 0 {
            self.embeddings.extend_from_slice(embedding);
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

    /// Cosine distance from a unit-norm query to its nearest bank embedding, and which.
    pub fn nearest(&self, query: &[f32]) -> (f32, usize) {
        let mut best = (f32::MIN, 0);
        for (i, row) in self.embeddings.chunks_exact(self.dim).enumerate() {
            let dot = dot(row, query);
            if dot > best.0 {
                best = (dot, i);
            }
        }
        (1.0 - best.0, best.1)
    }

    /// Writes the bank atomically (temp file + fsync + rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let c = &self.calibration;
        let meta: HashMap<String, String> = [
            ("format_version", BANK_FORMAT_VERSION.to_string()),
            ("kind", "hark-normal-bank".into()),
            ("model_sha256", self.model_hash.clone()),
            ("threshold", c.threshold.to_string()),
            ("score_mean", c.score_mean.to_string()),
            ("score_std", c.score_std.to_string()),
            ("score_max", c.score_max.to_string()),
            ("target_far", c.target_far.to_string()),
            ("margin", c.margin.to_string()),
            ("n_windows", self.n_windows.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut meta = meta;
        let mut tensors = vec![(
            "embeddings".into(),
            vec![self.len(), self.dim],
            self.embeddings.clone(),
        )];
        if let Some((profiles, origins, clips)) = self.flat_notes() {
            tensors.push((
                "profiles".into(),
                vec![self.len(), profiles.len() / self.len()],
                profiles,
            ));
            tensors.push(("origins".into(), vec![self.len(), 2], origins));
            meta.insert("clips".into(), serde_json::to_string(&clips)?);
        }
        crate::model::save_tensors(path, &tensors, meta)
    }

    /// The notes as stored: profiles `[n, bands]`, origins `[n, 2]` (index into the clip
    /// list or −1 for a row without a note, then the time in the clip), and the clip
    /// list. `None` when no row has a note.
    fn flat_notes(&self) -> Option<(Vec<f32>, Vec<f32>, Vec<String>)> {
        let bands = self.notes.iter().flatten().next()?.profile.len();
        let mut clips: Vec<String> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let (mut profiles, mut origins) = (Vec::new(), Vec::new());
        for note in &self.notes {
            match note {
                Some(n) if n.profile.len() == bands => {
                    let i = *index.entry(n.clip.as_str()).or_insert_with(|| {
                        clips.push(n.clip.clone());
                        clips.len() - 1
                    });
                    profiles.extend_from_slice(&n.profile);
                    origins.extend([i as f32, n.t]);
                }
                _ => {
                    profiles.extend(std::iter::repeat_n(0.0, bands));
                    origins.extend([-1.0, 0.0]);
                }
            }
        }
        Some((profiles, origins, clips))
    }

    /// Reads a bank and checks it belongs to the model with hash `model_hash`.
    pub fn load(path: &Path, model_hash: &str, model_path: &Path) -> Result<NormalBank, BankError> {
        let bytes = std::fs::read(path).map_err(|e| BankError {
            file: path.to_path_buf(),
            why: format!("cannot read bank: {e}"),
        })?;
        Self::from_bytes(&bytes, path, model_hash, model_path)
    }

    /// Parses a bank file already read into memory, with the checks of
    /// [`NormalBank::load`]; `path` only names it in messages.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        model_hash: &str,
        model_path: &Path,
    ) -> Result<NormalBank, BankError> {
        let err = |why: String| BankError {
            file: path.to_path_buf(),
            why,
        };
        let not_a_bank = |e: safetensors::SafeTensorError| {
            err(format!(
                "not a safetensors bank: {}",
                crate::model::single_line(&e)
            ))
        };
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(not_a_bank)?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(not_a_bank)?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| -> Result<String, BankError> {
            meta.get(key)
                .cloned()
                .ok_or_else(|| err(format!("metadata key `{key}` is missing")))
        };
        let num = |key: &str| -> Result<f32, BankError> {
            let v = get(key)?;
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| err(format!("metadata key `{key}` = {v:?} is not a number")))
        };
        let version = get("format_version")?;
        if !(1..=BANK_FORMAT_VERSION).any(|v| v.to_string() == version) {
            return Err(err(format!(
                "metadata key `format_version` = {version:?}, this hark reads 1 to {BANK_FORMAT_VERSION}"
            )));
        }
        let hash = get("model_sha256")?;
        if hash != model_hash {
            return Err(err(format!(
                "bank was enrolled with model sha256 {hash:?}, but {} has sha256 {model_hash}; re-enrol",
                model_path.display()
            )));
        }
        let t = st
            .tensor("embeddings")
            .map_err(|_| err("tensor `embeddings` is missing".into()))?;
        let shape = t.shape();
        if t.dtype() != safetensors::Dtype::F32
            || shape.len() != 2
            || shape[0] == 0
            || shape[1] == 0
        {
            return Err(err(format!(
                "tensor `embeddings` must be non-empty f32 [n, dim], is {:?} {shape:?}",
                t.dtype()
            )));
        }
        let embeddings = f32_values(&t);
        if embeddings.iter().any(|x| !x.is_finite()) {
            return Err(err(
                "tensor `embeddings` holds NaN or infinite values".into()
            ));
        }
        // Scores are `1 − dot`, which only means cosine distance for unit rows; a row of
        // 1e30s would score every window -inf (never an alarm).
        let norms = embeddings
            .chunks_exact(shape[1])
            .map(|row| dot(row, row).sqrt());
        if let Some((i, norm)) = norms
            .enumerate()
            .find(|(_, norm)| (norm - 1.0).abs() > UNIT_NORM_TOLERANCE)
        {
            return Err(err(format!(
                "tensor `embeddings` row {i} has norm {norm}, not 1 (embeddings are unit-norm)"
            )));
        }
        let n_windows = get("n_windows")?;
        let n_windows: usize = n_windows.parse().map_err(|_| {
            err(format!(
                "metadata key `n_windows` = {n_windows:?} is not a count"
            ))
        })?;
        let notes = read_notes(&st, &meta, shape[0]).map_err(err)?;
        Ok(NormalBank {
            dim: shape[1],
            embeddings,
            notes,
            calibration: Calibration {
                threshold: num("threshold")?,
                score_mean: num("score_mean")?,
                score_std: num("score_std")?,
                score_max: num("score_max")?,
                target_far: num("target_far")?,
                margin: num("margin")?,
            },
            model_hash: hash,
            n_windows,
        })
    }
}

/// The values of an F32 tensor (its dtype already checked), little-endian as stored.
fn f32_values(t: &safetensors::tensor::TensorView) -> Vec<f32> {
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Reads the optional per-row notes of a bank with `rows` rows (all `None` when the
/// file has none); the error says which tensor or key is wrong.
fn read_notes(
    st: &safetensors::SafeTensors,
    meta: &HashMap<String, String>,
    rows: usize,
) -> Result<Vec<Option<RowNote>>, String> {
    let (profiles, origins) = match (st.tensor("profiles"), st.tensor("origins")) {
        (Err(_), Err(_)) => return Ok(vec![None; rows]),
        (Ok(p), Ok(o)) => (p, o),
        (Ok(_), Err(_)) => return Err("tensor `profiles` without tensor `origins`".into()),
        (Err(_), Ok(_)) => return Err("tensor `origins` without tensor `profiles`".into()),
    };
    let floats = |t: &safetensors::tensor::TensorView, name: &str, cols: Option<usize>| {
        let shape = t.shape();
        let ok = t.dtype() == safetensors::Dtype::F32
            && shape.len() == 2
            && shape[0] == rows
            && shape[1] > 0
            && cols.is_none_or(|c| shape[1] == c);
        if !ok {
            return Err(format!(
                "tensor `{name}` must be f32 [{rows}, {}], is {:?} {shape:?}",
                cols.map_or("bands".to_string(), |c| c.to_string()),
                t.dtype()
            ));
        }
        let v = f32_values(t);
        match v.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(format!("tensor `{name}` holds a non-finite value at {i}")),
            None => Ok((v, shape[1])),
        }
    };
    let (profiles, bands) = floats(&profiles, "profiles", None)?;
    let (origins, _) = floats(&origins, "origins", Some(2))?;
    let clips = meta
        .get("clips")
        .ok_or("metadata key `clips` is missing (the bank has `origins`)")?;
    let clips: Vec<String> = serde_json::from_str(clips).map_err(|_| {
        format!(
            "metadata key `clips` = {:?} is not a JSON list of strings",
            crate::model::single_line(&clips.chars().take(80).collect::<String>())
        )
    })?;
    profiles
        .chunks_exact(bands)
        .zip(origins.chunks_exact(2))
        .enumerate()
        .map(|(row, (profile, o))| {
            if o[0] == -1.0 {
                return Ok(None);
            }
            let clip = (o[0] >= 0.0 && o[0].fract() == 0.0)
                .then(|| clips.get(o[0] as usize))
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "tensor `origins` row {row} names clip {}, the bank lists {}",
                        o[0],
                        clips.len()
                    )
                })?;
            Ok(Some(RowNote {
                profile: profile.to_vec(),
                clip: clip.clone(),
                t: o[1],
            }))
        })
        .collect()
}

/// Dot product with eight independent partial sums, so the compiler can keep them in
/// SIMD lanes (a plain `sum()` must add in order and stays scalar). Scoring against
/// the bank is this function N times per window.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Each window's distance to its nearest neighbour outside its own time neighbourhood.
fn leave_one_out_scores(flat: &[f32], dim: usize, origins: &[Origin], guard: u32) -> Vec<f32> {
    let n = origins.len();
    (0..n)
        .map(|i| {
            let q = &flat[i * dim..(i + 1) * dim];
            let mut best = f32::MIN;
            for j in 0..n {
                let (a, b) = (origins[i], origins[j]);
                if a.segment == b.segment && a.index.abs_diff(b.index) <= guard {
                    continue;
                }
                best = best.max(dot(q, &flat[j * dim..(j + 1) * dim]));
            }
            // A single short segment has no independent neighbour: fall back to itself.
            if best == f32::MIN { 0.0 } else { 1.0 - best }
        })
        .collect()
}

/// Threshold at `target.margin` × the `1 − target.far` quantile of normal scores.
pub fn calibrate(scores: &[f32], target: Target) -> Calibration {
    let Target {
        far: target_far,
        margin,
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
fn k_center(flat: &[f32], dim: usize, k: usize) -> Vec<usize> {
    let n = flat.len() / dim;
    if n <= k {
        return (0..n).collect();
    }
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    let mut chosen = vec![0];
    let mut dist: Vec<f32> = (0..n).map(|i| 1.0 - dot(row(i), row(0))).collect();
    while chosen.len() < k {
        let (far, _) = dist
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("n > k >= 1");
        chosen.push(far);
        for (i, d) in dist.iter_mut().enumerate() {
            *d = d.min(1.0 - dot(row(i), row(far)));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = leave_one_out_scores(&e.concat(), 2, &o, 1);
        assert!((s[0] - 1.0).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6);
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
