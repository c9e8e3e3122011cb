//! What a model file says about itself: its safetensors `__metadata__`, read and
//! checked key by key (every error names the key and the value), and written back.

use std::collections::HashMap;

use super::{FORMAT_VERSION, MAX_EMBEDDING_DIM};
use crate::spectrogram::FrontEndParams;

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

    /// How many neighbouring windows (or knocks) on either side of one are left out of
    /// its leave-one-out calibration score ([`crate::bank::Origin`]): for a running
    /// machine the windows that overlap it in time; for a tap model
    /// [`crate::bank::KNOCK_GUARD`] knocks, since a station knocks a piece several
    /// times in a row.
    pub fn calibration_guard(&self) -> u32 {
        match self.mode.as_str() {
            "tap" => crate::bank::KNOCK_GUARD,
            _ => self.front.overlapping_windows(),
        }
    }

    /// How the rows of one clip follow each other in a bank this model made: knocks
    /// for a tap model, else windows every [`FrontEndParams::window_hop_seconds`].
    pub fn spacing(&self) -> crate::bank::Spacing {
        match self.mode.as_str() {
            "tap" => crate::bank::Spacing::Knocks,
            _ => crate::bank::Spacing::Windows {
                hop_s: self.front.window_hop_seconds(),
            },
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
