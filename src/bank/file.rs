//! The bank file: safetensors with the rows, the calibration and the model's hash in
//! the metadata, and optionally the standardisation (`center`, `scale`) and the rows'
//! notes (`profiles`, `origins`, `clips`). Written atomically; every value read back
//! is checked, and a bad one is a one-line error naming the tensor or key.

use std::collections::HashMap;
use std::path::Path;

use super::{
    BANK_FORMAT_VERSION, BankError, Calibration, MAX_SCALE, MAX_STANDARDISED, MIN_SCALE,
    NormalBank, RowNote, Scaling, UNIT_NORM_TOLERANCE, dot,
};

/// An entry of a bank file's clip list: a clip's name and the item its rows are of.
type ClipKey<'a> = (&'a str, Option<&'a str>);

impl NormalBank {
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
            ("metric", self.metric().to_string()),
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
        if let Some(sc) = &self.scaling {
            tensors.push(("center".into(), vec![self.dim], sc.center.clone()));
            tensors.push(("scale".into(), vec![self.dim], sc.scale.clone()));
        }
        if let Some((profiles, origins, clips)) = self.flat_notes() {
            tensors.push((
                "profiles".into(),
                vec![self.len(), profiles.len() / self.len()],
                profiles,
            ));
            tensors.push(("origins".into(), vec![self.len(), 2], origins));
            let (names, items): (Vec<&str>, Vec<Option<&str>>) = clips.into_iter().unzip();
            meta.insert("clips".into(), serde_json::to_string(&names)?);
            // Only where an item was named: banks without stay as they were.
            if items.iter().any(Option::is_some) {
                meta.insert("items".into(), serde_json::to_string(&items)?);
            }
        }
        crate::model::save_tensors(path, &tensors, meta)
    }

    /// The notes as stored: profiles `[n, bands]`, origins `[n, 2]` (index into the clip
    /// list or −1 for a row without a note, then the time in the clip), and the clip
    /// list: each clip's name and item (metadata `clips` and `items`). `None` when no
    /// row has a note with a profile (a note without one is stored as no note: the
    /// file cannot hold a profile of no bands).
    fn flat_notes(&self) -> Option<(Vec<f32>, Vec<f32>, Vec<ClipKey<'_>>)> {
        let bands = self
            .notes
            .iter()
            .flatten()
            .map(|n| n.profile.len())
            .find(|&b| b > 0)?;
        let mut clips: Vec<ClipKey> = Vec::new();
        let mut index: HashMap<ClipKey, usize> = HashMap::new();
        let (mut profiles, mut origins) = (Vec::new(), Vec::new());
        for note in &self.notes {
            match note {
                Some(n) if n.profile.len() == bands => {
                    let key = (n.clip.as_str(), n.item.as_deref());
                    let i = *index.entry(key).or_insert_with(|| {
                        clips.push(key);
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
        let scaling = match meta.get("metric").map(String::as_str) {
            None | Some("cosine") => None,
            Some("standardised") => Some(read_scaling(&st, shape[1]).map_err(err)?),
            Some(v) => {
                return Err(err(format!(
                    "metadata key `metric` = {v:?}, expected \"cosine\" or \"standardised\""
                )));
            }
        };
        if let Some(i) = embeddings
            .iter()
            .position(|x| scaling.is_some() && x.abs() > MAX_STANDARDISED)
        {
            return Err(err(format!(
                "tensor `embeddings` value {i} = {} must be within ±{MAX_STANDARDISED:e} (standardised rows)",
                embeddings[i]
            )));
        }
        // Cosine scores are `1 − dot`, which only means cosine distance for unit rows; a
        // row of 1e30s would score every window -inf (never an alarm).
        let norms = embeddings
            .chunks_exact(shape[1])
            .map(|row| dot(row, row).sqrt());
        if let Some((i, norm)) = norms
            .enumerate()
            .find(|(_, norm)| scaling.is_none() && (norm - 1.0).abs() > UNIT_NORM_TOLERANCE)
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
            scaling,
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

/// Reads the `center` and `scale` tensors of a standardised bank with `dim` columns.
fn read_scaling(st: &safetensors::SafeTensors, dim: usize) -> Result<Scaling, String> {
    let vector = |name: &str| -> Result<Vec<f32>, String> {
        let t = st
            .tensor(name)
            .map_err(|_| format!("tensor `{name}` is missing (metric \"standardised\")"))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != [dim] {
            return Err(format!(
                "tensor `{name}` must be f32 [{dim}], is {:?} {:?}",
                t.dtype(),
                t.shape()
            ));
        }
        let v = f32_values(&t);
        match v.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(format!("tensor `{name}` holds a non-finite value at {i}")),
            None => Ok(v),
        }
    };
    let (center, scale) = (vector("center")?, vector("scale")?);
    // Bounds that keep every score finite: a window is `(x − center) × scale`, and
    // rows are scaled back as `row / scale + center` for a rebuild.
    if let Some(i) = scale
        .iter()
        .position(|s| !(MIN_SCALE..=MAX_SCALE).contains(s))
    {
        return Err(format!(
            "tensor `scale` value {i} = {} must be in {MIN_SCALE:e}..={MAX_SCALE:e}",
            scale[i]
        ));
    }
    if let Some(i) = center.iter().position(|c| c.abs() > MAX_STANDARDISED) {
        return Err(format!(
            "tensor `center` value {i} = {} must be within ±{MAX_STANDARDISED:e}",
            center[i]
        ));
    }
    Ok(Scaling { center, scale })
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
    // Each clip's item (banks before items, or without any, have no key).
    let items: Vec<Option<String>> = match meta.get("items") {
        None => vec![None; clips.len()],
        Some(items) => match serde_json::from_str::<Vec<Option<String>>>(items) {
            Ok(v) if v.len() == clips.len() => v,
            _ => {
                return Err(format!(
                    "metadata key `items` = {:?} is not a JSON list of {} strings or nulls (one per clip)",
                    crate::model::single_line(&items.chars().take(80).collect::<String>()),
                    clips.len()
                ));
            }
        },
    };
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
                item: items[o[0] as usize].clone(),
            }))
        })
        .collect()
}
