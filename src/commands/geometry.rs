//! Front-end geometry flags shared by `train` and `init-model`. Their defaults are
//! the shipped models' (models/README.md): `hark train DIR… --out M` trains at the
//! geometry of `models/default.safetensors`, and with `--mode tap` at that of
//! `models/tap.safetensors`. Any change is validated exactly as a model file's
//! metadata is.

use clap::Args;

use crate::model::ModelMeta;
use crate::spectrogram::FrontEndParams;

/// `models/default.safetensors`' front end: 0.69 s windows every 256 ms.
const CONTINUOUS: FrontEndParams = FrontEndParams {
    sample_rate_hz: 48_000,
    fmax_hz: 24_000.0,
    window_hop_frames: 24,
    ..FrontEndParams::DEFAULT
};

/// `models/tap.safetensors`' front end: 51 ms windows at each knock.
pub(super) const TAP: FrontEndParams = FrontEndParams {
    sample_rate_hz: 48_000,
    n_fft: 512,
    hop: 128,
    fmax_hz: 24_000.0,
    frames: 16,
    window_hop_frames: 4,
    ..FrontEndParams::DEFAULT
};

/// Optional overrides of the shipped front end of the chosen mode.
#[derive(Debug, Clone, Args)]
pub struct FrontEndArgs {
    /// Model sample rate in Hz [default: 48000].
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// FFT length [default: 1024; tap: 512].
    #[arg(long)]
    pub n_fft: Option<usize>,
    /// Hop between frames in samples [default: 512; tap: 128].
    #[arg(long)]
    pub hop: Option<usize>,
    /// Mel bands [default: 64].
    #[arg(long)]
    pub n_mels: Option<usize>,
    /// Highest mel edge in Hz [default: 24000, or half the sample rate if lower].
    #[arg(long)]
    pub fmax: Option<f32>,
    /// Frames per window [default: 64; tap: 16].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Frames between windows [default: 24; tap: 4].
    #[arg(long)]
    pub window_hop_frames: Option<usize>,
    /// `continuous` or `tap` (what `mode` a source must have to use the model).
    #[arg(long, default_value = "continuous", value_parser = ["continuous", "tap"])]
    pub mode: String,
    /// Append each window's band profile (mel-band mean and spread, dB) to the
    /// embedding; banks then score by distance in units of the enrolment's own spread
    /// [default: on; tap: off].
    #[arg(long, overrides_with = "no_profile")]
    pub profile: bool,
    /// No band profile: the embedding alone, scored by cosine distance.
    #[arg(long, overrides_with = "profile")]
    pub no_profile: bool,
}

impl FrontEndArgs {
    /// The model metadata these flags describe, checked like a loaded file's.
    pub fn meta(&self, origin: &str) -> anyhow::Result<ModelMeta> {
        // The shipped model of the mode: its front end, and whether it has the profile.
        let (p, profile) = if self.mode == "tap" {
            (TAP, false)
        } else {
            (CONTINUOUS, true)
        };
        let mut meta = ModelMeta::default_continuous(origin);
        let f = &mut meta.front;
        f.sample_rate_hz = self.sample_rate.unwrap_or(p.sample_rate_hz);
        f.n_fft = self.n_fft.unwrap_or(p.n_fft);
        f.hop = self.hop.unwrap_or(p.hop);
        f.n_mels = self.n_mels.unwrap_or(p.n_mels);
        f.fmax_hz = self
            .fmax
            .unwrap_or(p.fmax_hz.min(f.sample_rate_hz as f32 / 2.0));
        f.frames = self.frames.unwrap_or(p.frames);
        f.window_hop_frames = self.window_hop_frames.unwrap_or(p.window_hop_frames);
        meta.mode = self.mode.clone();
        meta.profile = (profile || self.profile) && !self.no_profile;
        ModelMeta::from_map(&meta.to_map()).map_err(|e| anyhow::anyhow!("front-end flags: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::commands::{Cli, Command};

    /// What `hark ARGS` would train: the model metadata, epochs, anchor and seed.
    fn training(args: &str) -> (crate::model::ModelMeta, usize, f64, u64) {
        let cli = Cli::try_parse_from(args.split_whitespace()).unwrap();
        let Command::Train {
            front,
            epochs,
            anchor,
            seed,
            ..
        } = cli.command
        else {
            panic!("not a train command: {args}")
        };
        (front.meta("").unwrap(), epochs, anchor, seed)
    }

    #[test]
    fn train_without_flags_is_the_shipped_models_recipe() {
        // The commands models/README.md recorded for the two shipped models.
        let default = "--profile --anchor 0.3 --epochs 5 --seed 7 --sample-rate 48000 \
                       --n-fft 1024 --hop 512 --fmax 24000 --window-hop-frames 24";
        let tap = "--mode tap --sample-rate 48000 --n-fft 512 --hop 128 --fmax 24000 \
                   --frames 16 --window-hop-frames 4 --epochs 5 --anchor 0.3 --seed 7";
        assert_eq!(
            training("hark train d --out m"),
            training(&format!("hark train d --out m {default}"))
        );
        assert_eq!(
            training("hark train d --out m --mode tap"),
            training(&format!("hark train d --out m {tap}"))
        );
        let (meta, ..) = training("hark train d --out m");
        assert!(meta.profile && meta.front.sample_rate_hz == 48_000);
        // The profile can be turned off, and on for a tap model; a lower rate lowers
        // the top mel edge to its Nyquist frequency.
        assert!(!training("hark train d --out m --no-profile").0.profile);
        assert!(
            training("hark train d --out m --mode tap --profile")
                .0
                .profile
        );
        let (meta, ..) = training("hark train d --out m --sample-rate 16000");
        assert_eq!(meta.front.fmax_hz, 8000.0);
    }
}
