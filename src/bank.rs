//! The normal bank: unit-norm embeddings of normal sound plus their calibration.
//!
//! Pure math and one file format. Scoring is `1 − max dot` against the bank (cosine
//! distance to the nearest normal window). The bank is capped by a greedy k-center
//! coreset, and its threshold comes from leave-one-out scores of the normal windows
//! themselves, so calibration never needs an anomaly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Version of the bank-file layout.
pub const BANK_FORMAT_VERSION: u32 = 1;

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

/// Unit-norm normal embeddings (row-major, `len × dim`) with calibration.
#[derive(Debug, Clone)]
pub struct NormalBank {
    dim: usize,
    embeddings: Vec<f32>,
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
    /// most `max_size` by greedy k-center selection.
    pub fn build(
        embeddings: &[Vec<f32>],
        origins: &[Origin],
        guard: u32,
        max_size: usize,
        target_far: f32,
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
        let dim = embeddings[0].len();
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let scores = leave_one_out_scores(&flat, dim, origins, guard);
        let calibration = calibrate(&scores, target_far);
        let keep = k_center(&flat, dim, max_size.max(1));
        let embeddings = keep
            .iter()
            .flat_map(|&i| flat[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        Ok(NormalBank {
            dim,
            embeddings,
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
            calibration,
            model_hash: model_hash.to_string(),
            n_windows: rows.len(),
        }
    }

    /// The stored embeddings, one slice per row.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.embeddings.chunks_exact(self.dim)
    }

    /// Adds one unit-norm embedding (a knock an operator says was good); the
    /// calibration stays as it was.
    pub fn push(&mut self, embedding: &[f32]) {
        if embedding.len() == self.dim {
            self.embeddings.extend_from_slice(embedding);
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
        crate::model::save_tensors(
            path,
            &[(
                "embeddings".into(),
                vec![self.len(), self.dim],
                self.embeddings.clone(),
            )],
            meta,
        )
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
        if version != BANK_FORMAT_VERSION.to_string() {
            return Err(err(format!(
                "metadata key `format_version` = {version:?}, this hark reads {BANK_FORMAT_VERSION}"
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
        let embeddings: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
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
        Ok(NormalBank {
            dim: shape[1],
            embeddings,
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

/// Threshold at [`THRESHOLD_MARGIN`] × the `1 − target_far` quantile of normal scores.
pub fn calibrate(scores: &[f32], target_far: f32) -> Calibration {
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let n = s.len() as f32;
    let mean = s.iter().sum::<f32>() / n;
    let std = (s.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    let q = ((1.0 - target_far) * (n - 1.0)).round() as usize;
    Calibration {
        threshold: THRESHOLD_MARGIN * s[q.min(s.len() - 1)],
        score_mean: mean,
        score_std: std,
        score_max: *s.last().unwrap_or(&0.0),
        target_far,
        margin: THRESHOLD_MARGIN,
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
        let bank = NormalBank::build(&e, &origins(2), 0, 10, 0.01, "h").unwrap();
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
        let bank = NormalBank::build(&e, &origins(30), 0, 3, 0.01, "h").unwrap();
        assert_eq!(bank.len(), 3);
        for v in &e {
            assert!(bank.nearest(v).0 < 0.01);
        }
    }

    #[test]
    fn calibration_quantile() {
        let scores: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        let c = calibrate(&scores, 0.1);
        assert!((c.threshold - THRESHOLD_MARGIN * 0.9).abs() < 1e-6);
        assert!((c.score_mean - 0.5).abs() < 1e-6);
        assert_eq!(c.score_max, 1.0);
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
        let bank = NormalBank::build(&e, &origins(3), 0, 10, 0.01, "abc").unwrap();
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
    fn hostile_banks_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bank.safetensors");
        // Found by tests/fuzz.rs: rows of 1e30s loaded, and every score was -inf.
        let c = calibrate(&[0.0, 0.1], 0.01);
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
