//! Pure knock detection for tap-test stations: onsets from short-frame energy against an
//! adaptive noise floor, one trigger per knock (refractory time), and the window of
//! samples around each onset. No threads, no I/O.
//!
//! Energy (not spectral flux) on ~2 ms frames: a knock is a jump of tens of dB within a
//! few milliseconds, and energy stays meaningful when the knock clips at full scale,
//! where spectral shapes do not.

use std::collections::VecDeque;

/// Knock-detector settings, in milliseconds and decibels so they hold at any rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TapParams {
    /// A frame this many dB above the noise floor starts a knock.
    pub threshold_db: f32,
    /// And it must be at least this loud (dBFS), so digital near-silence never triggers.
    pub min_level_dbfs: f32,
    /// After an onset, no new onset for this long (the knock's own ring-out).
    pub refractory_ms: f32,
    /// Samples kept before the onset.
    pub pre_ms: f32,
    /// Samples taken after the onset.
    pub post_ms: f32,
}

impl Default for TapParams {
    fn default() -> Self {
        TapParams {
            threshold_db: 18.0,
            min_level_dbfs: -50.0,
            refractory_ms: 250.0,
            pre_ms: 5.0,
            post_ms: 45.0,
        }
    }
}

/// One detected knock: its onset and the samples around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Knock {
    /// Running index of the knock in its stream.
    pub index: u64,
    /// Stream time of the onset, in seconds.
    pub onset_s: f64,
    /// `pre_ms` before to `post_ms` after the onset, at the input rate.
    pub samples: Vec<f32>,
    /// Peak level of the knock frame, dBFS.
    pub peak_dbfs: f32,
}

/// Streaming knock detector: push samples in chunks of any size.
#[derive(Debug)]
pub struct KnockDetector {
    params: TapParams,
    rate_hz: u32,
    frame_len: usize,
    frame: Vec<f32>,
    /// Recent samples, enough for `pre_ms` plus one frame.
    history: VecDeque<f32>,
    history_len: usize,
    /// Samples consumed so far (the stream clock).
    position: u64,
    floor_db: Option<f32>,
    refractory_until: u64,
    /// A knock waiting for its `post_ms` samples: (onset sample, samples so far, peak).
    pending: Option<(u64, Vec<f32>, f32)>,
    post_len: usize,
    knocks: u64,
}

impl KnockDetector {
    /// A detector for input at `rate_hz`.
    pub fn new(params: TapParams, rate_hz: u32) -> KnockDetector {
        let ms = |v: f32| ((v / 1000.0) * rate_hz as f32).round() as usize;
        let frame_len = ms(2.0).max(8);
        KnockDetector {
            frame_len,
            frame: Vec::with_capacity(frame_len),
            history_len: ms(params.pre_ms) + frame_len,
            history: VecDeque::with_capacity(ms(params.pre_ms) + frame_len + 1),
            position: 0,
            floor_db: None,
            refractory_until: 0,
            pending: None,
            post_len: ms(params.pre_ms) + ms(params.post_ms),
            knocks: 0,
            params,
            rate_hz,
        }
    }

    /// The current noise floor estimate in dBFS (after the first frame).
    pub fn floor_db(&self) -> Option<f32> {
        self.floor_db
    }

    /// Feeds samples; calls `emit` for each knock once its window is complete.
    pub fn push(&mut self, input: &[f32], emit: &mut dyn FnMut(Knock)) {
        for &x in input {
            self.position += 1;
            if let Some((_, samples, _)) = self.pending.as_mut() {
                samples.push(x);
                if samples.len() >= self.post_len {
                    let (onset, samples, peak) = self.pending.take().expect("checked above");
                    self.knocks += 1;
                    emit(Knock {
                        index: self.knocks - 1,
                        onset_s: onset as f64 / self.rate_hz as f64,
                        samples,
                        peak_dbfs: peak,
                    });
                }
            }
            self.history.push_back(x);
            if self.history.len() > self.history_len {
                self.history.pop_front();
            }
            self.frame.push(x);
            if self.frame.len() == self.frame_len {
                self.end_frame();
                self.frame.clear();
            }
        }
    }

    fn end_frame(&mut self) {
        let n = self.frame.len();
        let energy = self.frame.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let db = 10.0 * energy.max(1e-12).log10();
        let peak = self.frame.iter().fold(0f32, |m, v| m.max(v.abs()));
        let floor = *self.floor_db.get_or_insert(db);
        let frame_start = self.position - n as u64;
        let loud = db > floor + self.params.threshold_db && db > self.params.min_level_dbfs;
        if loud && frame_start >= self.refractory_until && self.pending.is_none() {
            // The onset is the first sample of this frame that stands out from the
            // floor; the window starts `pre_ms` before it.
            let level = 10f32.powf((floor + self.params.threshold_db) / 20.0);
            let offset = self.frame.iter().position(|v| v.abs() > level).unwrap_or(0);
            let onset = frame_start + offset as u64;
            let pre = ((self.params.pre_ms / 1000.0) * self.rate_hz as f32).round() as usize;
            let keep = pre + (n - offset);
            let start = self.history.len().saturating_sub(keep);
            let samples: Vec<f32> = self.history.iter().skip(start).copied().collect();
            let peak_dbfs = 20.0 * peak.max(1e-6).log10();
            self.pending = Some((onset, samples, peak_dbfs));
            let refractory = ((self.params.refractory_ms / 1000.0) * self.rate_hz as f32) as u64;
            self.refractory_until = onset + refractory;
        } else if !loud && frame_start >= self.refractory_until {
            // Quiet frames track the floor: quickly down, slowly up (~1 s), so a
            // rising background is followed but a knock's tail never lifts the floor.
            let alpha = if db < floor { 0.05 } else { 0.002 };
            self.floor_db = Some(floor + alpha * (db - floor));
        }
    }
}

/// Tap mode's front end: detects knocks and turns each into one log-mel window of the
/// model's geometry, starting `pre_ms` before the onset.
#[derive(Debug)]
pub struct TapFront {
    detector: KnockDetector,
    params: crate::spectrogram::FrontEndParams,
    rate_hz: u32,
}

impl TapFront {
    /// A tap front end for input at `rate_hz`; the window after the onset lasts as long
    /// as the model's window, so `post_ms` is derived from it.
    pub fn new(
        mut tap: TapParams,
        params: crate::spectrogram::FrontEndParams,
        rate_hz: u32,
    ) -> anyhow::Result<TapFront> {
        // Fail now, not at the first knock, if the rates cannot be converted.
        crate::frontend::FrontEnd::new(params, rate_hz)?;
        tap.post_ms = (params.window_seconds() * 1000.0) as f32 - tap.pre_ms;
        Ok(TapFront {
            detector: KnockDetector::new(tap, rate_hz),
            params,
            rate_hz,
        })
    }

    /// Feeds samples; calls `emit` with one window per knock. `t_start_s` is the onset.
    pub fn push(&mut self, input: &[f32], emit: &mut dyn FnMut(crate::frontend::Window)) {
        let (params, rate) = (self.params, self.rate_hz);
        self.detector.push(input, &mut |knock| {
            let Ok(windows) = crate::frontend::padded_windows(params, &knock.samples, rate) else {
                return;
            };
            if let Some(mut w) = windows.into_iter().next() {
                w.index = knock.index;
                w.t_start_s = knock.onset_s;
                w.t_end_s = knock.onset_s + params.window_seconds();
                emit(w);
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Noise at `noise` RMS-ish amplitude with decaying 2 kHz knocks at `onsets_s`.
    pub(crate) fn stream(
        rate: u32,
        seconds: f32,
        onsets_s: &[f32],
        amp: f32,
        noise: f32,
    ) -> Vec<f32> {
        let mut state = 12345u32;
        let mut x: Vec<f32> = (0..(rate as f32 * seconds) as usize)
            .map(|_| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                noise * ((state >> 8) as f32 / (1 << 24) as f32 - 0.5)
            })
            .collect();
        for &t in onsets_s {
            let start = (t * rate as f32) as usize;
            for i in 0..(rate as usize / 10) {
                let v = amp
                    * (-(i as f32) / (rate as f32 * 0.01)).exp()
                    * (std::f32::consts::TAU * 2000.0 * i as f32 / rate as f32).sin();
                if let Some(s) = x.get_mut(start + i) {
                    *s = (*s + v).clamp(-1.0, 1.0);
                }
            }
        }
        x
    }

    fn detect(x: &[f32], rate: u32, chunk: usize) -> Vec<Knock> {
        let mut d = KnockDetector::new(TapParams::default(), rate);
        let mut out = Vec::new();
        for c in x.chunks(chunk) {
            d.push(c, &mut |k| out.push(k));
        }
        out
    }

    #[test]
    fn one_onset_per_knock_at_the_right_time() {
        for rate in [44_100u32, 48_000] {
            let onsets = [0.5f32, 1.1, 2.0, 2.35];
            let x = stream(rate, 3.0, &onsets, 0.5, 0.002);
            let knocks = detect(&x, rate, 777);
            assert_eq!(knocks.len(), onsets.len(), "at {rate} Hz");
            for (k, t) in knocks.iter().zip(onsets) {
                assert!(
                    (k.onset_s - t as f64).abs() < 0.002,
                    "onset {} vs {t}",
                    k.onset_s
                );
                let want = ((5.0 + 45.0) / 1000.0 * rate as f32).round() as usize;
                assert!(
                    k.samples.len().abs_diff(want) <= 1,
                    "{} samples",
                    k.samples.len()
                );
            }
        }
    }

    #[test]
    fn clipped_knocks_still_trigger_once() {
        let x = stream(48_000, 2.0, &[0.4, 1.2], 8.0, 0.002); // 18 dB past full scale
        assert!(x.iter().any(|v| v.abs() >= 1.0), "the test knocks clip");
        assert_eq!(detect(&x, 48_000, 512).len(), 2);
    }

    #[test]
    fn steady_noise_and_silence_never_trigger() {
        assert!(detect(&stream(48_000, 3.0, &[], 0.0, 0.2), 48_000, 1024).is_empty());
        assert!(detect(&vec![0.0; 48_000], 48_000, 1024).is_empty());
    }

    #[test]
    fn chunk_size_does_not_change_the_result() {
        let x = stream(44_100, 2.5, &[0.3, 0.9, 1.7], 0.3, 0.001);
        let a = detect(&x, 44_100, 1);
        let b = detect(&x, 44_100, 4096);
        assert_eq!(a, b);
    }
}
