//! Pure streaming front end: mono samples at any rate → fixed-size log-mel windows.
//!
//! [`FrontEnd::push`] accepts chunks of any size (cpal's callback size varies) and emits
//! exactly the windows a whole-signal pass would: resampling runs on fixed input chunks,
//! framing on a sample FIFO, and windowing on a frame FIFO, so chunk boundaries never
//! change a result. The equivalence test in `tests/integration/streaming.rs` holds it to
//! that. No threads, no I/O.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::spectrogram::{FrontEndParams, Spectrogram};

/// One log-mel window, laid out frame-major: `mels[frame * n_mels + band]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Running index of this window in its stream (0, 1, 2, ...).
    pub index: u64,
    /// Stream time of the window's last sample, in seconds since the stream began.
    pub t_end_s: f64,
    /// Stream time of the window's first sample.
    pub t_start_s: f64,
    /// `frames × n_mels` log-mel values in dB.
    pub mels: Vec<f32>,
    /// RMS level of the window's samples, dB re full scale.
    pub level_dbfs: f32,
}

/// Resampler input chunk: long enough for an efficient FFT resampler, short enough
/// (64 ms at 16 kHz) to add little latency.
const RESAMPLE_CHUNK: usize = 1024;

/// Streaming resampler + framer + windower for one source.
pub struct FrontEnd {
    params: FrontEndParams,
    spectrogram: Spectrogram,
    resampler: Option<Fft<f32>>,
    /// Input waiting for a full resampler chunk.
    pending_in: Vec<f32>,
    resampled: Vec<f32>,
    /// Samples at the model rate not yet consumed by a frame.
    samples: VecDeque<f32>,
    frame_buf: Vec<f32>,
    column: Vec<f32>,
    /// The last `frames` columns and their mean-square levels.
    columns: VecDeque<(Vec<f32>, f32)>,
    frames_done: u64,
    windows_done: u64,
}

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontEnd")
            .field("params", &self.params)
            .field("resampling", &self.resampler.is_some())
            .finish()
    }
}

impl FrontEnd {
    /// A front end for input at `input_rate_hz`, producing windows of geometry `params`.
    pub fn new(params: FrontEndParams, input_rate_hz: u32) -> anyhow::Result<FrontEnd> {
        let resampler = if input_rate_hz == params.sample_rate_hz {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    input_rate_hz as usize,
                    params.sample_rate_hz as usize,
                    RESAMPLE_CHUNK,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| {
                    anyhow::anyhow!(
                        "resampler {input_rate_hz} → {} Hz: {e}",
                        params.sample_rate_hz
                    )
                })?,
            )
        };
        let resampled = vec![0.0; resampler.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(FrontEnd {
            spectrogram: Spectrogram::new(params),
            resampler,
            pending_in: Vec::with_capacity(RESAMPLE_CHUNK),
            resampled,
            samples: VecDeque::with_capacity(4 * params.n_fft),
            frame_buf: vec![0.0; params.n_fft],
            column: vec![0.0; params.n_mels],
            columns: VecDeque::with_capacity(params.frames + 1),
            frames_done: 0,
            windows_done: 0,
            params,
        })
    }

    /// The geometry of the windows this emits.
    pub fn params(&self) -> &FrontEndParams {
        &self.params
    }

    /// Feeds mono samples at the input rate; calls `emit` for every completed window.
    pub fn push(&mut self, input: &[f32], emit: &mut dyn FnMut(Window)) {
        match self.resampler.as_mut() {
            None => {
                self.samples.extend(input);
                self.drain_frames(emit);
            }
            Some(_) => {
                let mut rest = input;
                while !rest.is_empty() {
                    let take = (RESAMPLE_CHUNK - self.pending_in.len()).min(rest.len());
                    self.pending_in.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.pending_in.len() == RESAMPLE_CHUNK {
                        self.resample_chunk();
                        self.drain_frames(emit);
                    }
                }
            }
        }
    }

    fn resample_chunk(&mut self) {
        let Some(r) = self.resampler.as_mut() else {
            return;
        };
        let n_out = self.resampled.len();
        let input = InterleavedSlice::new(&self.pending_in[..], 1, RESAMPLE_CHUNK)
            .expect("pending_in holds exactly one chunk");
        let mut output = rubato::audioadapter_buffers::direct::InterleavedSlice::new_mut(
            &mut self.resampled[..],
            1,
            n_out,
        )
        .expect("resampled is sized by output_frames_max");
        let (_, produced) = r
            .process_into_buffer(&input, &mut output, None)
            .expect("buffers are sized from the resampler's own limits");
        self.samples.extend(&self.resampled[..produced]);
        self.pending_in.clear();
    }

    fn drain_frames(&mut self, emit: &mut dyn FnMut(Window)) {
        let p = self.params;
        while self.samples.len() >= p.n_fft {
            for (dst, src) in self.frame_buf.iter_mut().zip(self.samples.iter()) {
                *dst = *src;
            }
            self.samples.drain(..p.hop);
            let mean_square =
                self.frame_buf[..p.hop].iter().map(|x| x * x).sum::<f32>() / p.hop as f32;
            self.spectrogram.frame(&self.frame_buf, &mut self.column);
            let mut col = if self.columns.len() == p.frames {
                self.columns.pop_front().map(|(c, _)| c).unwrap_or_default()
            } else {
                Vec::with_capacity(p.n_mels)
            };
            col.clear();
            col.extend_from_slice(&self.column);
            self.columns.push_back((col, mean_square));
            self.frames_done += 1;
            let full = self.frames_done >= p.frames as u64;
            if full && (self.frames_done - p.frames as u64) % p.window_hop_frames as u64 == 0 {
                emit(self.window());
            }
        }
    }

    fn window(&mut self) -> Window {
        let p = self.params;
        let mut mels = Vec::with_capacity(p.n_mels * p.frames);
        for (col, _) in &self.columns {
            mels.extend_from_slice(col);
        }
        let ms = self.columns.iter().map(|(_, ms)| *ms).sum::<f32>() / p.frames as f32;
        let first_frame = self.frames_done - p.frames as u64;
        let rate = p.sample_rate_hz as f64;
        let index = self.windows_done;
        self.windows_done += 1;
        Window {
            index,
            t_start_s: (first_frame * p.hop as u64) as f64 / rate,
            t_end_s: ((first_frame + p.frames as u64 - 1) * p.hop as u64 + p.n_fft as u64) as f64
                / rate,
            mels,
            level_dbfs: 10.0 * ms.max(1e-10).log10(),
        }
    }
}

/// A source's front end: sliding windows (continuous mode) or one window per knock.
#[derive(Debug)]
pub enum Front {
    /// Continuous mode.
    Continuous(Box<FrontEnd>),
    /// Tap mode.
    Tap(Box<crate::tap::TapFront>),
}

impl Front {
    /// Feeds mono samples at the input rate; calls `emit` for every window.
    pub fn push(&mut self, input: &[f32], emit: &mut dyn FnMut(Window)) {
        match self {
            Front::Continuous(f) => f.push(input, emit),
            Front::Tap(t) => t.push(input, emit),
        }
    }

    /// Seconds between the polls of an idle ring (a fraction of a frame hop).
    pub fn idle_seconds(&self) -> f64 {
        match self {
            Front::Continuous(f) => {
                let p = f.params();
                (p.hop as f64 / p.sample_rate_hz as f64 / 2.0).clamp(0.001, 0.02)
            }
            // Verdicts must follow the knock within 100 ms: poll often.
            Front::Tap(_) => 0.002,
        }
    }
}

/// Runs a whole signal through a fresh front end (the offline path of `score`, `enroll`).
pub fn windows_of(
    params: FrontEndParams,
    input_rate_hz: u32,
    samples: &[f32],
) -> anyhow::Result<Vec<Window>> {
    let mut fe = FrontEnd::new(params, input_rate_hz)?;
    let mut out = Vec::new();
    fe.push(samples, &mut |w| out.push(w));
    Ok(out)
}

/// RMS level of a clip (0 for an empty one).
pub fn rms(mono: &[f32]) -> f64 {
    (mono.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / mono.len().max(1) as f64).sqrt()
}

/// A clip's windows (dB), padded with silence to one window when it is shorter (a
/// single knock, a bottle strike): the offline path of eval and train.
pub fn padded_windows(
    front: FrontEndParams,
    mono: &[f32],
    rate_hz: u32,
) -> anyhow::Result<Vec<Window>> {
    // One window plus slack for the resampler's delay.
    let min_len = ((front.window_seconds() + 0.25) * rate_hz as f64) as usize;
    let windows = if mono.len() < min_len {
        let mut x = mono.to_vec();
        x.resize(min_len, 0.0);
        // Only the window that starts with the sound; the rest would be padding.
        windows_of(front, rate_hz, &x)?
            .into_iter()
            .take(1)
            .collect()
    } else {
        windows_of(front, rate_hz, mono)?
    };
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_count_and_times() {
        let p = FrontEndParams::DEFAULT;
        let seconds = 5.0;
        let x = vec![0.01f32; (p.sample_rate_hz as f64 * seconds) as usize];
        let w = windows_of(p, p.sample_rate_hz, &x).unwrap();
        let frames = (x.len() - p.n_fft) / p.hop + 1;
        assert_eq!(w.len(), (frames - p.frames) / p.window_hop_frames + 1);
        assert!((w[0].t_end_s - p.window_seconds()).abs() < 1e-9);
        assert!((w[1].t_start_s - p.window_hop_seconds()).abs() < 1e-9);
        assert!((w[0].level_dbfs + 40.0).abs() < 0.01, "{}", w[0].level_dbfs);
    }

    #[test]
    fn resampling_keeps_a_tone_in_its_band() {
        let p = FrontEndParams::DEFAULT;
        let rate = 48_000u32;
        let x: Vec<f32> = (0..rate as usize * 3)
            .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        let w = windows_of(p, rate, &x).unwrap();
        assert!(!w.is_empty());
        let last = w.last().unwrap();
        let band_energy: Vec<f32> = (0..p.n_mels)
            .map(|b| last.mels[(p.frames / 2) * p.n_mels + b])
            .collect();
        let peak = band_energy
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let bank = crate::spectrogram::MelBank::new(&p);
        let bin_1k = (1000.0 / (p.sample_rate_hz as f32 / p.n_fft as f32)).round() as usize;
        assert!(
            bank.row(peak, p.n_fft / 2 + 1)[bin_1k] > 0.0,
            "band {peak} holds 1 kHz"
        );
    }
}
