//! Front-end geometry flags shared by `train` and `init-model`: the defaults are the
//! shipped model's; any change is validated exactly as a model file's metadata is.

use clap::Args;

use crate::model::ModelMeta;

/// Optional overrides of the default front end (see models/README.md).
#[derive(Debug, Clone, Args)]
pub struct FrontEndArgs {
    /// Model sample rate in Hz [default: 16000].
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// FFT length [default: 1024].
    #[arg(long)]
    pub n_fft: Option<usize>,
    /// Hop between frames in samples [default: 512].
    #[arg(long)]
    pub hop: Option<usize>,
    /// Mel bands [default: 64].
    #[arg(long)]
    pub n_mels: Option<usize>,
    /// Highest mel edge in Hz [default: 8000, or half the sample rate if lower].
    #[arg(long)]
    pub fmax: Option<f32>,
    /// Frames per window [default: 64].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Frames between windows [default: 8].
    #[arg(long)]
    pub window_hop_frames: Option<usize>,
    /// `continuous` or `tap` (what `mode` a source must have to use the model).
    #[arg(long, default_value = "continuous", value_parser = ["continuous", "tap"])]
    pub mode: String,
    /// Append each window's band profile (mel-band mean and spread, dB) to the
    /// embedding; banks then score by distance in units of the enrolment's own spread.
    #[arg(long)]
    pub profile: bool,
}

impl FrontEndArgs {
    /// The model metadata these flags describe, checked like a loaded file's.
    pub fn meta(&self, origin: &str) -> anyhow::Result<ModelMeta> {
        let mut meta = ModelMeta::default_continuous(origin);
        let f = &mut meta.front;
        f.sample_rate_hz = self.sample_rate.unwrap_or(f.sample_rate_hz);
        f.n_fft = self.n_fft.unwrap_or(f.n_fft);
        f.hop = self.hop.unwrap_or(f.hop);
        f.n_mels = self.n_mels.unwrap_or(f.n_mels);
        f.fmax_hz = self
            .fmax
            .unwrap_or(f.fmax_hz.min(f.sample_rate_hz as f32 / 2.0));
        f.frames = self.frames.unwrap_or(f.frames);
        f.window_hop_frames = self.window_hop_frames.unwrap_or(f.window_hop_frames);
        meta.mode = self.mode.clone();
        meta.profile = self.profile;
        ModelMeta::from_map(&meta.to_map()).map_err(|e| anyhow::anyhow!("front-end flags: {e}"))
    }
}
