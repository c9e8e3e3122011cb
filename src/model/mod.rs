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

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use sha2::Digest;

mod file;
mod locate;
mod meta;
pub use file::{
    NamedTensor, SplitMix64, first_line, fixed_seed_tensors, hex, init_fixed_seed, save_tensors,
    single_line,
};
pub use locate::{candidates, locate};
pub use meta::ModelMeta;

/// Version of the weights-file layout this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Largest embedding a model file may declare (the shipped ones use 128).
pub const MAX_EMBEDDING_DIM: usize = 4096;

/// Largest weight magnitude a model file may hold. Trained and fixed-seed weights are
/// far below it; past it a window's embedding can overflow f32.
pub const MAX_ABS_WEIGHT: f32 = 1e4;

/// Channel widths of the three conv blocks.
const WIDTHS: [usize; 3] = [48, 96, 128];

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
    ///
    /// A relative `path` that is not there is also looked for beside the binary
    /// ([`locate`]); [`Embedder::path`] reports the file that was read.
    pub fn load(path: &Path) -> Result<Embedder, ModelError> {
        let (path, looked) = match locate(path) {
            Ok(found) => (found, String::new()),
            Err(places) => {
                let others: Vec<String> = places[1..]
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                let looked = if others.is_empty() {
                    String::new()
                } else {
                    format!(" (also looked for {})", others.join(", "))
                };
                (path.to_path_buf(), looked)
            }
        };
        let bytes = std::fs::read(&path).map_err(|e| ModelError {
            file: path.clone(),
            why: format!("cannot read model: {e}{looked}"),
        })?;
        Self::from_bytes(bytes, &path)
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

#[cfg(test)]
mod tests;
