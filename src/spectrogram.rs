//! Pure DSP: one frame of samples → one log-mel column. No threads, no I/O.
//!
//! [`Spectrogram`] owns the Hann table, the realfft plan, its scratch buffers and the mel
//! filterbank, all allocated once in [`Spectrogram::new`]; [`Spectrogram::frame`] then
//! runs without allocating.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};

/// The front-end geometry a model was trained with (stored in its metadata).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrontEndParams {
    /// Rate the model expects; input is resampled to it.
    pub sample_rate_hz: u32,
    /// FFT length in samples.
    pub n_fft: usize,
    /// Hop between frames in samples.
    pub hop: usize,
    /// Mel bands (or linear bins when `mel` is false).
    pub n_mels: usize,
    /// Lowest band edge in Hz.
    pub fmin_hz: f32,
    /// Highest band edge in Hz.
    pub fmax_hz: f32,
    /// Frames per window.
    pub frames: usize,
    /// Frames between the starts of consecutive windows.
    pub window_hop_frames: usize,
}

impl FrontEndParams {
    /// How many windows on each side of a sliding window overlap it in time:
    /// leave-one-out calibration skips them.
    pub fn overlapping_windows(&self) -> u32 {
        self.frames.div_ceil(self.window_hop_frames) as u32
    }

    /// The base geometry: 16 kHz, 1024-point FFT, hop 512, 64 mels, 64-frame windows
    /// (2.08 s) every 8 frames (256 ms); the peer pipeline's, for fair comparison. The
    /// shipped models, and `hark train` and `hark init-model` without flags, change
    /// some of it (48 kHz: src/commands/geometry.rs, models/README.md).
    pub const DEFAULT: FrontEndParams = FrontEndParams {
        sample_rate_hz: 16_000,
        n_fft: 1024,
        hop: 512,
        n_mels: 64,
        fmin_hz: 50.0,
        fmax_hz: 8000.0,
        frames: 64,
        window_hop_frames: 8,
    };

    /// Seconds of audio one window spans.
    pub fn window_seconds(&self) -> f64 {
        ((self.frames - 1) * self.hop + self.n_fft) as f64 / self.sample_rate_hz as f64
    }

    /// Seconds between consecutive windows.
    pub fn window_hop_seconds(&self) -> f64 {
        (self.window_hop_frames * self.hop) as f64 / self.sample_rate_hz as f64
    }
}

/// Floor of the power spectrum before the log: -100 dB re full scale.
pub const POWER_FLOOR: f32 = 1e-10;

/// Hann window, real FFT and mel filterbank for one frame size.
pub struct Spectrogram {
    params: FrontEndParams,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    input: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    power: Vec<f32>,
    mel: MelBank,
    /// Scales |X|² so a full-scale sine reads about 0 dB.
    power_scale: f32,
}

impl std::fmt::Debug for Spectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spectrogram")
            .field("params", &self.params)
            .finish()
    }
}

impl Spectrogram {
    /// Plans the FFT and builds the window and filterbank.
    pub fn new(params: FrontEndParams) -> Spectrogram {
        let n = params.n_fft;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        // Periodic Hann: the window sums to n/2, which makes overlap-add at hop n/2 flat.
        let window: Vec<f32> = (0..n)
            .map(|i| {
                let x = std::f32::consts::TAU * i as f32 / n as f32;
                0.5 - 0.5 * x.cos()
            })
            .collect();
        let sum: f32 = window.iter().sum();
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Spectrogram {
            mel: MelBank::new(&params),
            power: vec![0.0; n / 2 + 1],
            input: vec![0.0; n],
            power_scale: 4.0 / (sum * sum),
            window,
            fft,
            spectrum,
            scratch,
            params,
        }
    }

    /// The geometry this was built for.
    pub fn params(&self) -> &FrontEndParams {
        &self.params
    }

    /// Power spectrum of one frame (`n_fft` samples), scaled so that a full-scale sine
    /// centred on a bin reads 1.0 there. Returns the `n_fft/2 + 1` bins.
    pub fn power(&mut self, frame: &[f32]) -> &[f32] {
        for ((x, w), s) in self.input.iter_mut().zip(&self.window).zip(frame) {
            *x = s * w;
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .expect("buffer lengths come from the plan itself");
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr() * self.power_scale;
        }
        &self.power
    }

    /// Log-mel column of one frame, in dB re full scale, written to `out` (`n_mels`).
    pub fn frame(&mut self, frame: &[f32], out: &mut [f32]) {
        self.power(frame);
        self.mel.apply(&self.power, out);
        for v in out.iter_mut() {
            *v = 10.0 * v.max(POWER_FLOOR).log10();
        }
    }
}

/// Triangular filters on the HTK mel scale, stored sparsely (first bin + weights).
#[derive(Debug, Clone)]
pub struct MelBank {
    filters: Vec<(usize, Vec<f32>)>,
}

fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// The `n_mels + 2` mel-spaced points, Hz: band `m`'s triangle rises from point `m`,
/// peaks at `m + 1` and falls to `m + 2`.
pub fn mel_points_hz(p: &FrontEndParams) -> Vec<f32> {
    let (lo, hi) = (hz_to_mel(p.fmin_hz), hz_to_mel(p.fmax_hz));
    (0..p.n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f32 / (p.n_mels + 1) as f32))
        .collect()
}

impl MelBank {
    /// Builds `n_mels` triangles between `fmin_hz` and `fmax_hz`. Each triangle is
    /// widened to at least one FFT bin so no band is empty at low frequencies.
    pub fn new(p: &FrontEndParams) -> MelBank {
        let bins = p.n_fft / 2 + 1;
        let bin_hz = p.sample_rate_hz as f32 / p.n_fft as f32;
        let edges: Vec<f32> = mel_points_hz(p).iter().map(|hz| hz / bin_hz).collect();
        let filters = (0..p.n_mels)
            .map(|m| {
                let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
                let first = (l.floor() as usize).min(bins - 1);
                let last = (r.ceil() as usize).min(bins - 1);
                let mut w: Vec<f32> = (first..=last)
                    .map(|k| {
                        let k = k as f32;
                        let up = (k - l) / (c - l).max(1e-6);
                        let down = (r - k) / (r - c).max(1e-6);
                        up.min(down).max(0.0)
                    })
                    .collect();
                if w.iter().all(|&x| x == 0.0) {
                    let nearest = (c.round() as usize).clamp(first, last);
                    w[nearest - first] = 1.0;
                }
                (first, w)
            })
            .collect();
        MelBank { filters }
    }

    /// Applies the filterbank to a power spectrum.
    pub fn apply(&self, power: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.filters) {
            *o = power[*first..*first + w.len()]
                .iter()
                .zip(w)
                .map(|(p, w)| p * w)
                .sum();
        }
    }

    /// The weights of band `m` over all bins (for tests and plots).
    pub fn row(&self, m: usize, bins: usize) -> Vec<f32> {
        let mut row = vec![0.0; bins];
        let (first, w) = &self.filters[m];
        row[*first..*first + w.len()].copy_from_slice(w);
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq_hz: f32, amp: f32, p: &FrontEndParams) -> Vec<f32> {
        (0..p.n_fft)
            .map(|i| {
                amp * (std::f32::consts::TAU * freq_hz * i as f32 / p.sample_rate_hz as f32).sin()
            })
            .collect()
    }

    #[test]
    fn sine_at_bin_k_peaks_at_bin_k_with_unit_power() {
        let p = FrontEndParams::DEFAULT;
        let mut s = Spectrogram::new(p);
        for k in [10usize, 100, 300] {
            let f = k as f32 * p.sample_rate_hz as f32 / p.n_fft as f32;
            let power = s.power(&sine(f, 1.0, &p)).to_vec();
            let peak = power
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(peak, k);
            assert!((power[k] - 1.0).abs() < 1e-3, "power {}", power[k]);
        }
    }

    #[test]
    fn parseval_holds_for_white_noise() {
        // Without a window: sum |x|² = (1/N) sum |X|² over the full spectrum.
        let p = FrontEndParams::DEFAULT;
        let n = p.n_fft;
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let time_energy: f32 = x.iter().map(|v| v * v).sum();
        let mut spec = fft.make_output_vec();
        fft.process(&mut x, &mut spec).unwrap();
        let mut freq_energy = spec[0].norm_sqr() + spec[n / 2].norm_sqr();
        freq_energy += 2.0 * spec[1..n / 2].iter().map(|c| c.norm_sqr()).sum::<f32>();
        assert!((freq_energy / n as f32 - time_energy).abs() / time_energy < 1e-4);
    }

    #[test]
    fn mel_rows_are_nonnegative_and_cover_the_band() {
        let p = FrontEndParams::DEFAULT;
        let bank = MelBank::new(&p);
        let bins = p.n_fft / 2 + 1;
        let bin_hz = p.sample_rate_hz as f32 / p.n_fft as f32;
        let mut coverage = vec![0.0f32; bins];
        for m in 0..p.n_mels {
            let row = bank.row(m, bins);
            assert!(row.iter().all(|&w| w >= 0.0));
            assert!(row.iter().any(|&w| w > 0.0), "band {m} is empty");
            for (c, w) in coverage.iter_mut().zip(&row) {
                *c += w;
            }
        }
        // Every bin strictly inside (fmin, fmax), away from the edges, is covered.
        let lo = (p.fmin_hz * 2.0 / bin_hz).ceil() as usize;
        let hi = (p.fmax_hz * 0.9 / bin_hz).floor() as usize;
        assert!(coverage[lo..hi].iter().all(|&c| c > 0.0));
    }

    #[test]
    fn log_mel_is_floored_and_level_dependent() {
        let p = FrontEndParams::DEFAULT;
        let mut s = Spectrogram::new(p);
        let mut silent = vec![0.0; p.n_mels];
        s.frame(&vec![0.0; p.n_fft], &mut silent);
        assert!(silent.iter().all(|&v| (v + 100.0).abs() < 1e-3));
        let mut loud = vec![0.0; p.n_mels];
        let mut quiet = vec![0.0; p.n_mels];
        s.frame(&sine(1000.0, 1.0, &p), &mut loud);
        s.frame(&sine(1000.0, 0.1, &p), &mut quiet);
        let (l, q) = (
            loud.iter().cloned().fold(f32::MIN, f32::max),
            quiet.iter().cloned().fold(f32::MIN, f32::max),
        );
        assert!(((l - q) - 20.0).abs() < 0.1, "20 dB apart: {l} vs {q}");
    }
}
