//! Writing weights files (a sorted safetensors header, so the same weights give the
//! same sha256), the fixed-seed network that training starts from, and small helpers
//! for one-line error messages.

use std::collections::HashMap;
use std::path::Path;

use super::{ModelMeta, WIDTHS};

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
