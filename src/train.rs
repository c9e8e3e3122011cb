//! Training the embedding network: ArcFace classification over the identities of the
//! normal clips, plus self-supervised "anomaly twins" ([`crate::twin`]). No threads and
//! no file I/O; the `train` command gathers the windows and saves the result.
//!
//! Why this works for anomaly detection: to tell machines (and a machine from its own
//! slightly-broken twin) apart with an angular margin, the network must map each
//! one's normal sound to a tight cluster; a faulty sound then lands away from its
//! machine's cluster, which is what the nearest-normal distance measures.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

use crate::model::{ModelMeta, NamedTensor, Net, SplitMix64, fixed_seed_tensors};

/// Training settings; `Default` is what `hark train` uses.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Windows per step.
    pub batch: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// ArcFace additive angular margin (radians).
    pub margin: f64,
    /// ArcFace logit scale.
    pub scale: f64,
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// Probability that a batch is mixed up with a shuffled copy of itself.
    pub mixup: f64,
    /// Mask a random time and frequency band of each window (SpecAugment-style).
    pub spec_mask: bool,
    /// Weight of the anchor term: the mean squared distance between each window's
    /// embedding and the one the fixed-seed starting network gives it. 0 is off.
    pub anchor: f64,
    /// Frames at the end of each window hidden from the network (set to the floor),
    /// which a linear decoder must predict from the embedding (mean squared error on
    /// the normalised values, weight 1, beside the class loss): a self-supervised
    /// objective on the time course inside a window. The decoder is not saved. 0 is
    /// off.
    pub predict_frames: usize,
    /// Seed of initial weights, shuffling and augmentation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch: 64,
            lr: 1e-3,
            weight_decay: 1e-4,
            margin: 0.3,
            scale: 16.0,
            label_smoothing: 0.1,
            mixup: 0.0,
            spec_mask: true,
            anchor: 0.0,
            predict_frames: 0,
            seed: 7,
        }
    }
}

impl TrainConfig {
    /// Settings that cannot work with `meta`'s windows, as a one-line error naming
    /// the flag, before any audio is read.
    pub fn check(&self, meta: &ModelMeta) -> anyhow::Result<()> {
        let frames = meta.front.frames;
        anyhow::ensure!(
            self.predict_frames < frames,
            "--predict-frames {}: must be less than the window's {frames} frames",
            self.predict_frames
        );
        Ok(())
    }
}

/// Progress of one step, for bars and logs.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Epoch, from 0.
    pub epoch: usize,
    /// Step within the epoch, from 0.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// Loss of this step.
    pub loss: f32,
}

/// ArcFace logits: `s·cos θ` for every class, with the target's angle widened by `m`.
/// `emb` `[b, d]`, `weight` `[c, d]`, `onehot` `[b, c]`.
pub fn arcface_logits(
    emb: &Tensor,
    weight: &Tensor,
    onehot: &Tensor,
    m: f64,
    s: f64,
) -> candle_core::Result<Tensor> {
    let cos = unit(emb)?
        .matmul(&unit(weight)?.t()?)?
        .clamp(-1.0 + 1e-6, 1.0 - 1e-6)?;
    let sin = (1.0 - cos.sqr()?)?.sqrt()?;
    let cos_m = ((&cos * m.cos())? - (sin * m.sin())?)?;
    // Only the target class gets the margin.
    let logits = (&cos + (onehot * (cos_m - &cos)?)?)?;
    logits * s
}

/// Rows scaled to unit length.
fn unit(t: &Tensor) -> candle_core::Result<Tensor> {
    let n = t.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-6, f64::MAX)?;
    t.broadcast_div(&n)
}

/// Cross-entropy against soft targets (label smoothing, mixup).
fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(1)?.neg()?.mean_all()
}

/// Trains a network on normalised-later dB windows with integer class labels.
/// Returns the network's tensors (no classifier head) and the loss of every step.
pub fn train(
    meta: &ModelMeta,
    windows: &[Vec<f32>],
    labels: &[u32],
    n_classes: usize,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(Step),
) -> anyhow::Result<(Vec<NamedTensor>, Vec<f32>)> {
    anyhow::ensure!(
        windows.len() == labels.len() && !windows.is_empty(),
        "no training windows"
    );
    anyhow::ensure!(
        n_classes >= 2,
        "need at least two classes to train, got {n_classes}"
    );
    cfg.check(meta)?;
    let (frames, mels) = (meta.front.frames, meta.front.n_mels);
    let predict = cfg.predict_frames;
    let device = Device::Cpu;
    let initial = fixed_seed_tensors(meta, cfg.seed)
        .into_iter()
        .map(|(name, shape, values)| Ok((name, Tensor::from_vec(values, shape, &device)?)))
        .collect::<candle_core::Result<std::collections::HashMap<_, _>>>()?;
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned var map"))?;
        for (name, t) in &initial {
            // A variable copies the tensor: the starting weights stay as they are.
            data.insert(name.clone(), Var::from_tensor(t)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let net = Net::new(meta, vb.clone())?;
    // The starting network, frozen: the anchor term keeps the trained embedding near
    // it, so the fine detail of random features that nearest-normal scoring relies on
    // survives while the classes pull.
    let start = if cfg.anchor > 0.0 {
        Some(Net::new(
            meta,
            VarBuilder::from_tensors(initial, DType::F32, &device),
        )?)
    } else {
        None
    };
    let mut rng = SplitMix64(cfg.seed ^ 0xA5A5_5A5A);
    let head: Vec<f32> = (0..n_classes * meta.embedding_dim)
        .map(|_| rng.normal() as f32 * 0.1)
        .collect();
    let head = Var::from_tensor(&Tensor::from_vec(
        head,
        (n_classes, meta.embedding_dim),
        &device,
    )?)?;
    let mut params = varmap.all_vars();
    params.push(head.clone());
    // The decoder of `predict_frames`: embedding → the hidden frames' values.
    let decoder = if predict > 0 {
        let out = predict * mels;
        let w: Vec<f32> = (0..meta.embedding_dim * out)
            .map(|_| rng.normal() as f32 * 0.01)
            .collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (meta.embedding_dim, out), &device)?)?;
        let b = Var::from_tensor(&Tensor::zeros(out, DType::F32, &device)?)?;
        params.extend([w.clone(), b.clone()]);
        Some((w, b))
    } else {
        None
    };
    let mut opt = AdamW::new(
        params,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let floor = (crate::spectrogram::POWER_FLOOR.log10() * 10.0 - meta.input_offset_db)
        / meta.input_scale_db;
    let mut order: Vec<usize> = (0..windows.len()).collect();
    let steps = windows.len().div_ceil(cfg.batch);
    let mut losses = Vec::new();
    for epoch in 0..cfg.epochs {
        // Fisher–Yates with our own generator: the seed fixes the order.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        for (step, idx) in order.chunks(cfg.batch).enumerate() {
            let b = idx.len();
            let mut x = Vec::with_capacity(b * frames * mels);
            let mut hidden = Vec::with_capacity(b * predict * mels);
            for &i in idx {
                let start = x.len();
                meta.normalise_into(&windows[i], &mut x);
                if predict > 0 {
                    let cut = start + (frames - predict) * mels;
                    hidden.extend_from_slice(&x[cut..]);
                    x[cut..].fill(floor);
                }
                if cfg.spec_mask {
                    mask(&mut x[start..], frames, mels, floor, &mut rng);
                }
            }
            let eps = cfg.label_smoothing as f32;
            let mut target = vec![eps / n_classes as f32; b * n_classes];
            let mut onehot = vec![0f32; b * n_classes];
            for (r, &i) in idx.iter().enumerate() {
                target[r * n_classes + labels[i] as usize] += 1.0 - eps;
                onehot[r * n_classes + labels[i] as usize] = 1.0;
            }
            let mut xt = Tensor::from_vec(x, (b, frames, mels), &device)?;
            let mut tt = Tensor::from_vec(target, (b, n_classes), &device)?;
            let mut ht = Tensor::from_vec(hidden, (b, predict * mels), &device)?;
            if cfg.mixup > 0.0 && rng.uniform() < cfg.mixup && b > 1 {
                let lam = 0.5 + 0.5 * rng.uniform();
                let perm: Vec<u32> = (0..b as u32).map(|r| (r + 1) % b as u32).collect();
                let perm = Tensor::new(perm.as_slice(), &device)?;
                let mix = |t: &Tensor| (t * lam)? + (t.index_select(&perm, 0)? * (1.0 - lam))?;
                xt = mix(&xt)?;
                tt = mix(&tt)?;
                if predict > 0 {
                    ht = mix(&ht)?;
                }
            }
            let onehot = Tensor::from_vec(onehot, (b, n_classes), &device)?;
            let emb = net.forward(&xt)?;
            let logits = arcface_logits(&emb, head.as_tensor(), &onehot, cfg.margin, cfg.scale)?;
            let mut loss = soft_cross_entropy(&logits, &tt)?;
            if let Some((w, bias)) = &decoder {
                let guess = emb.matmul(w.as_tensor())?.broadcast_add(bias.as_tensor())?;
                loss = (loss + (guess - ht)?.sqr()?.mean_all()?)?;
            }
            if let Some(start) = &start {
                // On the raw vectors, length included: anchoring only their
                // directions (what the bank compares) held them far less (measured).
                let drift = (&emb - start.forward(&xt)?.detach())?
                    .sqr()?
                    .sum(1)?
                    .mean_all()?;
                loss = (loss + (drift * cfg.anchor)?)?;
            }
            opt.backward_step(&loss)?;
            let loss = loss.to_scalar::<f32>()?;
            losses.push(loss);
            progress(Step {
                epoch,
                step,
                steps,
                loss,
            });
        }
    }
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned var map"))?;
    let mut out = Vec::new();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let t = data[name].as_tensor();
        out.push((
            name.clone(),
            t.dims().to_vec(),
            t.flatten_all()?.to_vec1::<f32>()?,
        ));
    }
    Ok((out, losses))
}

/// Sets one random band of up to 8 frames and one of up to 8 mel bands to the floor.
fn mask(x: &mut [f32], frames: usize, mels: usize, floor: f32, rng: &mut SplitMix64) {
    let (tw, fw) = (
        (rng.uniform() * 8.0) as usize,
        (rng.uniform() * 8.0) as usize,
    );
    let t0 = (rng.uniform() * (frames - tw) as f64) as usize;
    let f0 = (rng.uniform() * (mels - fw) as f64) as usize;
    for t in 0..frames {
        for f in 0..mels {
            if (t0..t0 + tw).contains(&t) || (f0..f0 + fw).contains(&f) {
                x[t * mels + f] = floor;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcface_margin_lowers_only_the_target_logit() {
        let dev = Device::Cpu;
        let emb = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let w = Tensor::new(&[[1f32, 0.0], [0.6, 0.8]], &dev).unwrap();
        let onehot = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let plain = arcface_logits(&emb, &w, &onehot, 0.0, 1.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let marg = arcface_logits(&emb, &w, &onehot, 0.5, 1.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((plain[0][1] - 0.6).abs() < 1e-4 && (plain[1][1] - 0.8).abs() < 1e-4);
        assert!(
            (marg[0][1] - plain[0][1]).abs() < 1e-6,
            "non-target unchanged"
        );
        // Target of row 1: cos(acos(0.8) + 0.5).
        assert!((marg[1][1] - (0.8f32.acos() + 0.5).cos()).abs() < 1e-4);
        assert!(marg[0][0] < plain[0][0]);
    }

    /// The raw embeddings of `windows` under `tensors`.
    fn embed(meta: &ModelMeta, tensors: Vec<NamedTensor>, windows: &[Vec<f32>]) -> Tensor {
        let dev = Device::Cpu;
        let map = tensors
            .into_iter()
            .map(|(n, shape, v)| (n, Tensor::from_vec(v, shape, &dev).unwrap()))
            .collect();
        let net = Net::new(meta, VarBuilder::from_tensors(map, DType::F32, &dev)).unwrap();
        let mut x = Vec::new();
        for w in windows {
            meta.normalise_into(w, &mut x);
        }
        let (f, m) = (meta.front.frames, meta.front.n_mels);
        net.forward(&Tensor::from_vec(x, (windows.len(), f, m), &dev).unwrap())
            .unwrap()
    }

    #[test]
    fn the_anchor_keeps_the_embedding_near_the_starting_network() {
        let meta = ModelMeta::default_continuous("test");
        let (f, m) = (meta.front.frames, meta.front.n_mels);
        let mut rng = SplitMix64(5);
        // Two classes of noise windows: class 1 is 10 dB louder in the upper half.
        let (mut windows, mut labels) = (Vec::new(), Vec::new());
        for i in 0..48 {
            let class = i % 2;
            windows.push(
                (0..f * m)
                    .map(|k| {
                        let lift = if class == 1 && k % m >= m / 2 {
                            10.0
                        } else {
                            0.0
                        };
                        -50.0 + lift + 6.0 * rng.normal() as f32
                    })
                    .collect::<Vec<f32>>(),
            );
            labels.push(class as u32);
        }
        // Directions, as the bank compares them.
        let start = unit(&embed(&meta, fixed_seed_tensors(&meta, 7), &windows)).unwrap();
        let drift = |anchor: f64| -> f32 {
            let cfg = TrainConfig {
                epochs: 3,
                batch: 16,
                lr: 1e-3,
                anchor,
                ..Default::default()
            };
            let (tensors, _) = train(&meta, &windows, &labels, 2, &cfg, &mut |_| {}).unwrap();
            let e = unit(&embed(&meta, tensors, &windows)).unwrap();
            (e - &start)
                .unwrap()
                .sqr()
                .unwrap()
                .sum(1)
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (free, held) = (drift(0.0), drift(0.3));
        assert!(
            free > 0.0 && held < free / 4.0,
            "drift {free} free, {held} anchored"
        );
    }

    #[test]
    fn predicting_hidden_frames_trains_the_network_and_saves_no_decoder() {
        let meta = ModelMeta::default_continuous("test");
        let (f, m) = (meta.front.frames, meta.front.n_mels);
        let mut rng = SplitMix64(9);
        // Windows of one level each (-70 to -30 dB), so the hidden frames follow from
        // the rest; two classes by parity, as training needs two.
        let (mut windows, mut labels) = (Vec::new(), Vec::new());
        for i in 0..32 {
            let level = -70.0 + 40.0 * rng.uniform() as f32;
            windows.push((0..f * m).map(|_| level + rng.normal() as f32).collect());
            labels.push(i % 2);
        }
        let run = |predict_frames| {
            let cfg = TrainConfig {
                epochs: 4,
                batch: 16,
                predict_frames,
                ..Default::default()
            };
            train(&meta, &windows, &labels, 2, &cfg, &mut |_| {})
        };
        let (plain, _) = run(0).unwrap();
        let (taught, losses) = run(4).unwrap();
        let names = |t: &[NamedTensor]| t.iter().map(|(n, ..)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&taught), names(&plain), "the decoder is not saved");
        assert_ne!(taught, plain, "the prediction reaches the network");
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < first, "loss {first} -> {last}");
        // All frames hidden leaves nothing to predict from: a one-line error.
        let err = run(f).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("--predict-frames {f}: must be less than the window's {f} frames")
        );
    }
}
