//! The embedding network: a small 1-D CNN over time with mel bands as channels.
//!
//! Why 1-D: a 2-D CNN of the same width costs ~2.7 ms per window in candle on one core,
//! ten times the whole budget. Treating the 64 mel bands as input channels turns every
//! layer into one im2col matmul of useful size, which candle's gemm runs well.
//!
//! Struct fields mirror the safetensors keys (`conv1.weight`, `fc.bias`, ...) through
//! `vb.pp(..)`. The file's metadata carries the front-end geometry the network was
//! trained with, so the dsp stage is built from the model, never guessed. Pure: no
//! threads; the only I/O is reading and writing the weights file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use sha2::Digest;

use crate::spectrogram::FrontEndParams;

/// Version of the weights-file layout this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Largest embedding a model file may declare (the shipped ones use 128).
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// Largest weight magnitude a model file may hold. Trained and fixed-seed weights are
/// far below it; past it a window's embedding can overflow f32.
pub const MAX_ABS_WEIGHT: f32 = 1e4;

/// Channel widths of the three conv blocks.
const WIDTHS: [usize; 3] = [48, 96, 128];

/// What the model file says about itself (its safetensors `__metadata__`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// Front-end geometry the network expects.
    pub front: FrontEndParams,
    /// Length of the embedding vector.
    pub embedding_dim: usize,
    /// Input normalisation: `(dB - offset) / scale`.
    pub input_offset_db: f32,
    /// See `input_offset_db`.
    pub input_scale_db: f32,
    /// `continuous` or `tap`.
    pub mode: String,
    /// The model's output also carries the window's band profile (each mel band's mean
    /// and spread over the window, dB) after the embedding, and banks enrolled with it
    /// score by standardised distance ([`crate::bank::Metric::Standardised`]). Metadata
    /// key `features`: `embedding` (absent: the same) or `embedding+profile`.
    pub profile: bool,
    /// How the weights were made (e.g. `fixed-seed 7`, `trained ...`).
    pub origin: String,
}

/// A model file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct ModelError {
    /// The weights file.
    pub file: PathBuf,
    /// What is wrong, naming the key and value.
    pub why: String,
}

/// A 1-D convolution (kernel 3, padding 1) over time-major input, computed as three
/// matmuls on shifted views. The weight keeps conv1d's `[out, in, 3]` layout in the file.
///
/// Why not candle's conv1d: at these sizes its im2col and strided copies cost more than
/// the arithmetic. Shifted views of a contiguous `[b, t+2, c]` tensor feed the matmul
/// directly, so the only copy per layer is the padding (measured 2.5× faster).
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    /// The three `[in, out]` tap matrices for inference; `None` while training.
    taps: Option<[Tensor; 3]>,
}

impl Conv {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> candle_core::Result<Conv> {
        let std = (2.0 / (cin * 3) as f64).sqrt();
        let weight = vb.get_with_hints(
            (cout, cin, 3),
            "weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = vb.get_with_hints(cout, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Conv {
            weight,
            bias,
            taps: None,
        })
    }

    /// Tap k as an `[in, out]` matrix: `w[:, :, k]ᵀ`.
    fn tap(&self, k: usize) -> candle_core::Result<Tensor> {
        self.weight.narrow(2, k, 1)?.squeeze(2)?.t()
    }

    /// Caches the tap matrices (call once the weights are final).
    fn freeze(&mut self) -> candle_core::Result<()> {
        self.taps = Some([
            self.tap(0)?.contiguous()?,
            self.tap(1)?.contiguous()?,
            self.tap(2)?.contiguous()?,
        ]);
        Ok(())
    }

    /// `[b, t, in]` → `[b, t, out]`: y[t] = W₀x[t−1] + W₁x[t] + W₂x[t+1] + bias.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let pad = Tensor::zeros((b, 1, c), x.dtype(), x.device())?;
        let padded = Tensor::cat(&[&pad, x, &pad], 1)?;
        let mut y: Option<Tensor> = None;
        for k in 0..3 {
            let w = match &self.taps {
                Some(taps) => taps[k].clone(),
                None => self.tap(k)?,
            };
            let view = padded.narrow(1, k, t)?;
            let part = if b == 1 {
                view.squeeze(0)?.matmul(&w)?.unsqueeze(0)?
            } else {
                view.broadcast_matmul(&w)?
            };
            y = Some(match y {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        y.expect("three taps were added").broadcast_add(&self.bias)
    }
}

/// The network itself: field names are the safetensors key prefixes.
#[derive(Debug)]
pub struct Net {
    conv1: Conv,
    conv2: Conv,
    conv3: Conv,
    fc: Linear,
}

impl Net {
    /// Builds the layers from a `VarBuilder` (file weights or a fresh `VarMap`).
    pub fn new(meta: &ModelMeta, vb: VarBuilder) -> candle_core::Result<Net> {
        let [w1, w2, w3] = WIDTHS;
        Ok(Net {
            conv1: Conv::new(meta.front.n_mels, w1, vb.pp("conv1"))?,
            conv2: Conv::new(w1, w2, vb.pp("conv2"))?,
            conv3: Conv::new(w2, w3, vb.pp("conv3"))?,
            fc: candle_nn::linear(2 * w3, meta.embedding_dim, vb.pp("fc"))?,
        })
    }

    /// The largest magnitude among the weights and biases; infinite when one is NaN.
    pub fn max_abs_weight(&self) -> candle_core::Result<f32> {
        let mut tensors = vec![self.fc.weight()];
        tensors.extend(self.fc.bias());
        for conv in [&self.conv1, &self.conv2, &self.conv3] {
            tensors.extend([&conv.weight, &conv.bias]);
        }
        let mut max = 0.0f32;
        for t in tensors {
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                max = if v.is_nan() {
                    f32::INFINITY
                } else {
                    max.max(v.abs())
                };
            }
        }
        Ok(max)
    }

    /// Precomputes what inference can (the weights will not change any more).
    pub fn freeze(&mut self) -> candle_core::Result<()> {
        self.conv1.freeze()?;
        self.conv2.freeze()?;
        self.conv3.freeze()
    }

    /// `[batch, frames, n_mels]` normalised log-mels → `[batch, embedding_dim]`, not
    /// yet L2-normalised (training wants the raw vector for its margin loss).
    ///
    /// Time-major layout on purpose: each conv is then a single `[b·t, 3·c]` matmul,
    /// which candle runs ~2.5× faster than its own conv1d at these sizes (measured).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv1.forward(x)?.relu()?;
        let x = max_pool_time(&x)?;
        let x = self.conv2.forward(&x)?.relu()?;
        let x = max_pool_time(&x)?;
        let x = self.conv3.forward(&x)?.relu()?;
        // Mean keeps the steady sound, max keeps a short event that a mean would dilute.
        let pooled = Tensor::cat(&[x.mean(1)?, x.max(1)?], 1)?;
        self.fc.forward(&pooled)
    }
}

/// Max-pool by 2 along time: `[b, t, c]` → `[b, t/2, c]`. Pairs of frames become
/// halves of a row (a free reshape), and the halves are compared elementwise.
fn max_pool_time(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let pairs = x.narrow(1, 0, t / 2 * 2)?.reshape((b, t / 2, 2 * c))?;
    pairs.narrow(2, 0, c)?.maximum(&pairs.narrow(2, c, c)?)
}

/// A loaded model, ready to embed windows.
#[derive(Debug)]
pub struct Embedder {
    net: Net,
    meta: ModelMeta,
    device: Device,
    /// sha256 of the weights file, hex; banks record it.
    hash: String,
    path: PathBuf,
}

impl Embedder {
    /// Loads weights and metadata, then runs one dummy window to fail fast on shapes.
    pub fn load(path: &Path) -> Result<Embedder, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError {
            file: path.to_path_buf(),
            why: format!("cannot read model: {e}"),
        })?;
        Self::from_bytes(bytes, path)
    }

    /// Loads a weights file already read into memory; `path` names it in messages
    /// and is what [`Embedder::path`] reports.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Embedder, ModelError> {
        let err = |why: String| ModelError {
            file: path.to_path_buf(),
            why,
        };
        let hash = hex(&sha2::Sha256::digest(&bytes));
        let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| err(format!("not a safetensors model: {}", single_line(&e))))?;
        // safetensors lets a zero dimension hide an overflowing product of the others
        // ([0, 2^62, 2^62] holds 0 bytes), on which candle's stride arithmetic overflows;
        // no tensor of the network is empty.
        for (name, info) in st_meta.tensors() {
            if info.shape.contains(&0) {
                return Err(err(format!(
                    "tensor {name:?} has shape {:?}: no tensor of the network is empty",
                    info.shape
                )));
            }
        }
        let map = st_meta.metadata().clone().unwrap_or_default();
        let meta = ModelMeta::from_map(&map).map_err(err)?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| err(format!("cannot read weights: {}", first_line(&e))))?;
        let mut net = Net::new(&meta, vb).map_err(|e| {
            err(format!(
                "weights do not fit the network: {}",
                first_line(&e)
            ))
        })?;
        // One NaN, infinity or huge weight turns every score into NaN or infinity, and
        // NaN never raises an alarm.
        let max = net
            .max_abs_weight()
            .map_err(|e| err(format!("cannot read weights: {}", first_line(&e))))?;
        if max > MAX_ABS_WEIGHT {
            return Err(err(format!(
                "weights hold NaN, infinite or huge values (largest magnitude {max}, limit {MAX_ABS_WEIGHT})"
            )));
        }
        net.freeze().map_err(|e| {
            err(format!(
                "weights do not fit the network: {}",
                first_line(&e)
            ))
        })?;
        let e = Embedder {
            net,
            meta,
            device,
            hash,
            path: path.to_path_buf(),
        };
        let zeros = vec![0.0; e.window_len()];
        let test = e
            .embed(&[&zeros])
            .map_err(|x| err(format!("a test window failed: {}", first_line(&x))))?;
        if test.iter().flatten().any(|v| !v.is_finite()) {
            return Err(err(
                "a test window embeds to NaN or infinite values (weights too large?)".into(),
            ));
        }
        Ok(e)
    }

    /// Metadata of the loaded file.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// sha256 of the weights file.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Values per window (`n_mels × frames`).
    pub fn window_len(&self) -> usize {
        self.meta.front.n_mels * self.meta.front.frames
    }

    /// Embeds a batch of frame-major log-mel windows: each result is the unit-norm
    /// embedding, followed by the window's band profile when the model has one
    /// ([`ModelMeta::profile`]); [`ModelMeta::output_dim`] values in all.
    pub fn embed(&self, windows: &[&[f32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let p = &self.meta.front;
        let mut flat = Vec::with_capacity(windows.len() * self.window_len());
        for w in windows {
            self.meta.normalise_into(w, &mut flat);
        }
        let x = Tensor::from_vec(flat, (windows.len(), p.frames, p.n_mels), &self.device)?;
        let y = self.net.forward(&x)?;
        let norm = y.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let mut out = y.broadcast_div(&norm)?.to_vec2::<f32>()?;
        if self.meta.profile {
            for (v, w) in out.iter_mut().zip(windows) {
                v.extend(band_profile(w, p.n_mels));
            }
        }
        Ok(out)
    }
}

/// Each mel band's mean over the window's frames, then each band's standard deviation
/// (`2 × n_mels` values, dB): the window's spectral envelope and how much it moves. It
/// keeps the level the unit-norm embedding divides away (a fan that got louder).
pub fn band_profile(window_db: &[f32], n_mels: usize) -> Vec<f32> {
    let mean = crate::explain::profile(window_db, n_mels);
    let frames = (window_db.len() / n_mels.max(1)).max(1) as f64;
    let mut var = vec![0.0f64; n_mels];
    for frame in window_db.chunks_exact(n_mels.max(1)) {
        for ((s, v), m) in var.iter_mut().zip(frame).zip(&mean) {
            *s += f64::from(v - m).powi(2);
        }
    }
    mean.iter()
        .copied()
        .chain(var.iter().map(|s| (s / frames).sqrt() as f32))
        .collect()
}

impl ModelMeta {
    /// Default metadata for a continuous-mode model of the default geometry.
    pub fn default_continuous(origin: &str) -> ModelMeta {
        ModelMeta {
            front: FrontEndParams::DEFAULT,
            embedding_dim: 128,
            input_offset_db: -60.0,
            input_scale_db: 20.0,
            mode: "continuous".into(),
            profile: false,
            origin: origin.into(),
        }
    }

    /// Values per window the model outputs: the embedding, plus `2 × n_mels` when it
    /// carries the band profile.
    pub fn output_dim(&self) -> usize {
        self.embedding_dim
            + if self.profile {
                2 * self.front.n_mels
            } else {
                0
            }
    }

    /// Appends a window's network input: `(dB − offset) / scale`.
    pub fn normalise_into(&self, window_db: &[f32], out: &mut Vec<f32>) {
        let (off, inv) = (self.input_offset_db, 1.0 / self.input_scale_db);
        out.extend(window_db.iter().map(|v| (v - off) * inv));
    }

    /// Serialises to the safetensors string map.
    pub fn to_map(&self) -> HashMap<String, String> {
        let f = &self.front;
        let pairs: [(&str, String); 15] = [
            ("format_version", FORMAT_VERSION.to_string()),
            ("arch", "hark-cnn1d-v1".into()),
            ("sample_rate_hz", f.sample_rate_hz.to_string()),
            ("n_fft", f.n_fft.to_string()),
            ("hop", f.hop.to_string()),
            ("n_mels", f.n_mels.to_string()),
            ("scale", "mel".into()),
            ("fmin_hz", f.fmin_hz.to_string()),
            ("fmax_hz", f.fmax_hz.to_string()),
            ("frames", f.frames.to_string()),
            ("window_hop_frames", f.window_hop_frames.to_string()),
            ("embedding_dim", self.embedding_dim.to_string()),
            ("input_offset_db", self.input_offset_db.to_string()),
            ("input_scale_db", self.input_scale_db.to_string()),
            ("mode", self.mode.clone()),
        ];
        let mut map: HashMap<String, String> =
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
        map.insert("origin".into(), self.origin.clone());
        // Only written when set, so a model without it keeps the bytes it always had.
        if self.profile {
            map.insert("features".into(), "embedding+profile".into());
        }
        map
    }

    /// Parses the safetensors string map; errors name the key and value.
    pub fn from_map(map: &HashMap<String, String>) -> Result<ModelMeta, String> {
        fn get<T: std::str::FromStr>(
            map: &HashMap<String, String>,
            key: &str,
        ) -> Result<T, String> {
            let v = map
                .get(key)
                .ok_or_else(|| format!("metadata key `{key}` is missing"))?;
            v.parse()
                .map_err(|_| format!("metadata key `{key}` = {v:?} is not a valid value"))
        }
        let version: u32 = get(map, "format_version")?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "metadata key `format_version` = {version}, this hark reads {FORMAT_VERSION}"
            ));
        }
        let arch: String = get(map, "arch")?;
        if arch != "hark-cnn1d-v1" {
            return Err(format!(
                "metadata key `arch` = {arch:?}, expected \"hark-cnn1d-v1\""
            ));
        }
        let front = FrontEndParams {
            sample_rate_hz: get(map, "sample_rate_hz")?,
            n_fft: get(map, "n_fft")?,
            hop: get(map, "hop")?,
            n_mels: get(map, "n_mels")?,
            fmin_hz: get(map, "fmin_hz")?,
            fmax_hz: get(map, "fmax_hz")?,
            frames: get(map, "frames")?,
            window_hop_frames: get(map, "window_hop_frames")?,
        };
        let f = &front;
        let checks: [(&str, String, bool, &str); 8] = [
            (
                "sample_rate_hz",
                f.sample_rate_hz.to_string(),
                f.sample_rate_hz >= 4000,
                "must be >= 4000",
            ),
            (
                "n_fft",
                f.n_fft.to_string(),
                f.n_fft.is_power_of_two() && (16..=65536).contains(&f.n_fft),
                "must be a power of two in 16..=65536",
            ),
            (
                "hop",
                f.hop.to_string(),
                (1..=f.n_fft).contains(&f.hop),
                "must be in 1..=n_fft",
            ),
            (
                "n_mels",
                f.n_mels.to_string(),
                (1..=512).contains(&f.n_mels),
                "must be in 1..=512",
            ),
            (
                "frames",
                f.frames.to_string(),
                (4..=4096).contains(&f.frames),
                "must be in 4..=4096",
            ),
            (
                "window_hop_frames",
                f.window_hop_frames.to_string(),
                (1..=f.frames).contains(&f.window_hop_frames),
                "must be in 1..=frames",
            ),
            (
                "fmin_hz",
                f.fmin_hz.to_string(),
                f.fmin_hz >= 0.0,
                "must be >= 0",
            ),
            (
                "fmax_hz",
                f.fmax_hz.to_string(),
                f.fmax_hz > f.fmin_hz && f.fmax_hz <= f.sample_rate_hz as f32 / 2.0,
                "must be above fmin_hz and at most sample_rate_hz / 2",
            ),
        ];
        if let Some((key, value, _, rule)) = checks.iter().find(|c| !c.2) {
            return Err(format!("metadata key `{key}` = {value} {rule}"));
        }
        // `(dB - offset) / scale` must stay a modest number for any dB the front end
        // makes: a scale of 1e-45 passed `> 0` and turned windows into infinities.
        let scale: f32 = get(map, "input_scale_db")?;
        if !(0.01..=1000.0).contains(&scale) {
            return Err(format!(
                "metadata key `input_scale_db` = {scale:?} must be in 0.01..=1000"
            ));
        }
        let offset: f32 = get(map, "input_offset_db")?;
        if !(-1000.0..=1000.0).contains(&offset) {
            return Err(format!(
                "metadata key `input_offset_db` = {offset:?} must be in -1000..=1000"
            ));
        }
        let embedding_dim: usize = get(map, "embedding_dim")?;
        if !(1..=MAX_EMBEDDING_DIM).contains(&embedding_dim) {
            return Err(format!(
                "metadata key `embedding_dim` = {embedding_dim} must be in 1..={MAX_EMBEDDING_DIM}"
            ));
        }
        Ok(ModelMeta {
            front,
            embedding_dim,
            input_offset_db: offset,
            input_scale_db: scale,
            mode: get(map, "mode")?,
            profile: match map.get("features").map(String::as_str) {
                None | Some("embedding") => false,
                Some("embedding+profile") => true,
                Some(v) => {
                    return Err(format!(
                        "metadata key `features` = {v:?}, expected \"embedding\" or \"embedding+profile\""
                    ));
                }
            },
            origin: map.get("origin").cloned().unwrap_or_default(),
        })
    }
}

/// The first line of an error's message. candle appends a backtrace to its errors
/// when RUST_BACKTRACE is set; hark's messages stay on one line.
pub fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// An error's message with control characters escaped (`\n` in a tensor name read
/// from a file, say), so it stays on one line.
pub fn single_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes named f32 tensors and string metadata as safetensors, atomically.
///
/// The header is written here rather than by the `safetensors` crate because that
/// crate serialises metadata from a `HashMap`, whose order changes from run to run;
/// a sorted header makes the same weights give the same bytes, hence the same sha256
/// that banks record.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: HashMap<String, String>,
) -> anyhow::Result<()> {
    let mut sorted: Vec<&(String, Vec<usize>, Vec<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    let meta: std::collections::BTreeMap<String, String> = metadata.into_iter().collect();
    header.insert("__metadata__".into(), serde_json::to_value(meta)?);
    let mut offset = 0usize;
    for (name, shape, values) in &sorted {
        anyhow::ensure!(
            shape.iter().product::<usize>() == values.len(),
            "tensor {name}: shape {shape:?} does not match {} values",
            values.len()
        );
        let end = offset + 4 * values.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_string(&serde_json::Value::Object(header))?.into_bytes();
    // The format asks for the data to start 8-byte aligned; pad the header with spaces.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut data = Vec::with_capacity(8 + json.len() + offset);
    data.extend_from_slice(&(json.len() as u64).to_le_bytes());
    data.extend_from_slice(&json);
    for (_, _, values) in &sorted {
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    crate::fsutil::write_atomic(path, &data)
}

/// Creates a network with deterministic weights from `seed` (He-normal convs, Xavier
/// fc, zero biases) and saves it: the start of training (and the anchor's reference).
/// Random conv features already separate spectra that differ; the shipped default is
/// this network trained lightly, and scores level with it (models/README.md).
pub fn init_fixed_seed(meta: &ModelMeta, seed: u64, out: &Path) -> anyhow::Result<()> {
    save_tensors(out, &fixed_seed_tensors(meta, seed), meta.to_map())
}

/// A named tensor as plain data: name, shape, row-major values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The network's weights drawn from `seed` (the start of training, too).
pub fn fixed_seed_tensors(meta: &ModelMeta, seed: u64) -> Vec<NamedTensor> {
    let mut rng = SplitMix64(seed);
    let [w1, w2, w3] = WIDTHS;
    let mut tensors = Vec::new();
    for (name, cin, cout) in [
        ("conv1", meta.front.n_mels, w1),
        ("conv2", w1, w2),
        ("conv3", w2, w3),
    ] {
        let std = (2.0 / (cin * 3) as f64).sqrt();
        let w = (0..cout * cin * 3)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        tensors.push((format!("{name}.weight"), vec![cout, cin, 3], w));
        tensors.push((format!("{name}.bias"), vec![cout], vec![0.0; cout]));
    }
    let (fin, fout) = (2 * w3, meta.embedding_dim);
    let std = (2.0 / (fin + fout) as f64).sqrt();
    let w = (0..fout * fin)
        .map(|_| (rng.normal() * std) as f32)
        .collect();
    tensors.push(("fc.weight".into(), vec![fout, fin], w));
    tensors.push(("fc.bias".into(), vec![fout], vec![0.0; fout]));
    tensors
}

/// A tiny deterministic generator, so a seed means the same weights on every machine.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_seed_model_loads_embeds_unit_vectors_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let meta = ModelMeta::default_continuous("test");
        let (a, b) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
        );
        init_fixed_seed(&meta, 3, &a).unwrap();
        init_fixed_seed(&meta, 3, &b).unwrap();
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "same seed, same bytes"
        );
        let e = Embedder::load(&a).unwrap();
        assert_eq!(e.meta(), &meta);
        let w1: Vec<f32> = (0..e.window_len())
            .map(|i| -60.0 + (i % 17) as f32)
            .collect();
        let w2: Vec<f32> = (0..e.window_len())
            .map(|i| -70.0 + (i % 5) as f32 * 3.0)
            .collect();
        let out = e.embed(&[&w1, &w2, &w1]).unwrap();
        for v in &out {
            let n: f32 = v.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-4);
        }
        assert_eq!(out[0], out[2], "same window, same embedding within a batch");
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn a_profile_model_appends_each_bands_mean_and_spread() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = ModelMeta::default_continuous("test");
        meta.profile = true;
        let path = dir.path().join("p.safetensors");
        init_fixed_seed(&meta, 3, &path).unwrap();
        let e = Embedder::load(&path).unwrap();
        assert!(e.meta().profile);
        let n_mels = meta.front.n_mels;
        assert_eq!(meta.output_dim(), meta.embedding_dim + 2 * n_mels);
        // Band b alternates between -50 - b and -30 - b dB frame by frame: mean
        // -40 - b, spread 10.
        let w: Vec<f32> = (0..e.window_len())
            .map(|i| {
                let (frame, band) = (i / n_mels, i % n_mels);
                -40.0 - band as f32 + if frame % 2 == 0 { -10.0 } else { 10.0 }
            })
            .collect();
        let out = e.embed(&[&w]).unwrap().remove(0);
        assert_eq!(out.len(), meta.output_dim());
        let (emb, profile) = out.split_at(meta.embedding_dim);
        assert!((emb.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        for b in 0..n_mels {
            assert!(
                (profile[b] - (-40.0 - b as f32)).abs() < 1e-3,
                "mean of band {b}"
            );
            assert!(
                (profile[n_mels + b] - 10.0).abs() < 1e-3,
                "spread of band {b}"
            );
        }
        // A model without the key reads as embedding-only; an unknown value is refused.
        let mut map = meta.to_map();
        map.remove("features");
        assert!(!ModelMeta::from_map(&map).unwrap().profile);
        map.insert("features".into(), "spectrum".into());
        let err = ModelMeta::from_map(&map).unwrap_err();
        assert!(err.contains("`features` = \"spectrum\""), "{err}");
    }

    #[test]
    fn bad_model_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"garbage").unwrap();
        let e = Embedder::load(&junk).unwrap_err().to_string();
        assert!(
            e.contains("junk.safetensors") && e.contains("not a safetensors"),
            "{e}"
        );
        let missing = Embedder::load(&dir.path().join("nope.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nope.safetensors") && missing.contains("cannot read"),
            "{missing}"
        );
        let mut map = ModelMeta::default_continuous("x").to_map();
        map.insert("n_mels".into(), "lots".into());
        let e = ModelMeta::from_map(&map).unwrap_err();
        assert!(e.contains("n_mels") && e.contains("lots"), "{e}");
    }

    #[test]
    fn metadata_errors_name_key_and_value() {
        // Found by tests/fuzz.rs: embedding_dim = 0 loaded (and later divided by zero in
        // the bank), a NaN input offset made every embedding NaN, and a front-end value
        // out of range was reported as the whole struct.
        for (key, value, needle) in [
            ("embedding_dim", "0", "1..=4096"),
            ("input_offset_db", "NaN", "-1000..=1000"),
            ("input_scale_db", "1e-45", "0.01..=1000"),
            ("n_fft", "1000", "power of two"),
            ("fmax_hz", "9000", "sample_rate_hz / 2"),
        ] {
            let mut map = ModelMeta::default_continuous("x").to_map();
            map.insert(key.into(), value.into());
            let e = ModelMeta::from_map(&map).unwrap_err();
            assert!(
                e.contains(&format!("`{key}` = {value}")) && e.contains(needle),
                "{e}"
            );
        }
    }

    #[test]
    fn hostile_weights_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let meta = ModelMeta::default_continuous("x");
        let load = |name: &str, edit: &dyn Fn(&mut Vec<NamedTensor>)| {
            let mut tensors = fixed_seed_tensors(&meta, 1);
            edit(&mut tensors);
            let path = dir.path().join(name);
            save_tensors(&path, &tensors, meta.to_map()).unwrap();
            Embedder::load(&path).unwrap_err().to_string()
        };
        // Found by tests/fuzz.rs: a NaN or huge weight loaded, and every score was NaN.
        for (name, v) in [("nan.st", f32::NAN), ("huge.st", 1e30)] {
            let e = load(name, &|t| t[0].2[5] = v);
            assert!(e.contains(name) && e.contains("huge values"), "{e}");
        }
        // Found by tests/fuzz.rs: a zero dimension hides an overflowing product from
        // safetensors' size check; candle's stride arithmetic then overflowed (a panic).
        let e = load("empty.st", &|t| {
            let bias = t.iter_mut().find(|t| t.0 == "conv1.bias").unwrap();
            *bias = ("conv1.bias".into(), vec![0, 1 << 62, 1 << 62], vec![]);
        });
        assert!(e.contains("empty.st") && e.contains("conv1.bias"), "{e}");
    }
}
