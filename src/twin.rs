//! Anomaly twins: synthetic defects applied to normal audio. `hark train` makes classes
//! of them, so that even one machine alone gives the classifier something to separate;
//! `hark eval --holdout` applies them to held-out clips to choose a model or scorer
//! without a real fault.

use crate::model::SplitMix64;

/// Synthetic defects applied to normal audio: each (class, defect) pair is a class of
/// its own, so even one machine alone gives the classifier something to separate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twin {
    /// Runs 6 % fast: every tone shifts up a semitone (a motor off its speed).
    Pitch,
    /// Sharp periodic clicks (a chipped gear tooth, a loose blade).
    Clicks,
    /// A harmonic hum under the sound (an electrical fault).
    Hum,
    /// One band boosted 12 dB (a new resonance, a cracked housing).
    Band,
    /// Noise bursts at 10–30 Hz (something rattling loose).
    Rattle,
    /// The ring dies away fast after the loudest sample: a crack or a porous body
    /// damps what a sound board, bottle or stone would let ring (knocks).
    Damped,
    /// The whole sound 6 dB louder, clipped at full scale: a machine working harder.
    /// A doubled amplitude is trend monitoring's usual alert. Only `eval --holdout`
    /// applies it ([`Twin::check`]), so that choosing a scorer there cannot favour
    /// one that ignores loudness; training does not, so the shipped model is the same.
    Louder,
}

impl Twin {
    /// Every defect kind of a running machine, in class order.
    pub const ALL: [Twin; 5] = [
        Twin::Pitch,
        Twin::Clicks,
        Twin::Hum,
        Twin::Band,
        Twin::Rattle,
    ];

    /// The defects of a knocked object: its modes move (pitch), it rings shorter
    /// (damped), a new resonance appears (band), something buzzes (rattle).
    pub const KNOCK: [Twin; 4] = [Twin::Pitch, Twin::Damped, Twin::Band, Twin::Rattle];

    /// What `eval --holdout` applies to a running machine's held-out clips: every
    /// training defect, then [`Twin::Louder`] (last, so it leaves the others' random
    /// draws as they were).
    pub const CHECK: [Twin; 6] = [
        Twin::Pitch,
        Twin::Clicks,
        Twin::Hum,
        Twin::Band,
        Twin::Rattle,
        Twin::Louder,
    ];

    /// Lower-case name, as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Twin::Pitch => "pitch",
            Twin::Clicks => "clicks",
            Twin::Hum => "hum",
            Twin::Band => "band",
            Twin::Rattle => "rattle",
            Twin::Damped => "damped",
            Twin::Louder => "louder",
        }
    }

    /// The twins that make sense for a model's mode (`"tap"` or `"continuous"`).
    pub fn for_mode(mode: &str) -> &'static [Twin] {
        match mode {
            "tap" => &Twin::KNOCK,
            _ => &Twin::ALL,
        }
    }

    /// The twins `eval --holdout` applies for a model's mode: the training ones, and
    /// for a running machine [`Twin::Louder`] too. A knock's loudness is the hand's
    /// force, not the object's state, so a tap model is checked without it.
    pub fn check(mode: &str) -> &'static [Twin] {
        match mode {
            "tap" => &Twin::KNOCK,
            _ => &Twin::CHECK,
        }
    }

    /// The defect applied to mono audio `x` at `rate` Hz, drawing parameters from `rng`.
    pub fn apply(self, x: &[f32], rate: u32, rng: &mut SplitMix64) -> Vec<f32> {
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32)
            .sqrt()
            .max(1e-4);
        let r = rate as f32;
        match self {
            Twin::Pitch => {
                let factor = 1.06f32;
                let n = (x.len() as f32 / factor) as usize;
                (0..n)
                    .map(|i| {
                        let pos = i as f32 * factor;
                        let (j, frac) = (pos as usize, pos.fract());
                        let a = x[j.min(x.len() - 1)];
                        let b = x[(j + 1).min(x.len() - 1)];
                        a + (b - a) * frac
                    })
                    .collect()
            }
            Twin::Clicks => {
                let period = ((0.05 + 0.15 * rng.uniform() as f32) * r) as usize;
                let mut y = x.to_vec();
                for start in
                    (rng.next_u64() as usize % period.max(1)..y.len()).step_by(period.max(1))
                {
                    for k in 0..(r * 0.002) as usize {
                        if let Some(v) = y.get_mut(start + k) {
                            *v += 4.0
                                * rms
                                * (-(k as f32) / (r * 0.0005)).exp()
                                * if k % 2 == 0 { 1.0 } else { -1.0 };
                        }
                    }
                }
                y
            }
            Twin::Hum => {
                let f0 = 50.0 + 350.0 * rng.uniform() as f32;
                x.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let t = i as f32 / r;
                        let hum: f32 = (1..=4)
                            .map(|h| (std::f32::consts::TAU * f0 * h as f32 * t).sin() / h as f32)
                            .sum();
                        v + 0.5 * rms * hum
                    })
                    .collect()
            }
            Twin::Band => {
                // Peaking biquad (RBJ cookbook): +12 dB, Q 4, at 300 Hz–0.4·rate.
                let f = 300.0 * ((0.4 * r / 300.0).ln() * rng.uniform() as f32).exp();
                let (a_lin, q) = (10f32.powf(12.0 / 40.0), 4.0f32);
                let w = std::f32::consts::TAU * f / r;
                let alpha = w.sin() / (2.0 * q);
                let (b0, b1, b2) = (1.0 + alpha * a_lin, -2.0 * w.cos(), 1.0 - alpha * a_lin);
                let (a0, a1, a2) = (1.0 + alpha / a_lin, -2.0 * w.cos(), 1.0 - alpha / a_lin);
                let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
                x.iter()
                    .map(|&v| {
                        let y = (b0 * v + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2) / a0;
                        (x2, x1, y2, y1) = (x1, v, y1, y);
                        y
                    })
                    .collect()
            }
            Twin::Damped => {
                // Decay time constant 3–15 ms from the peak on.
                let tau = (0.003 + 0.012 * rng.uniform() as f32) * r;
                let peak = x
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .map_or(0, |(i, _)| i);
                x.iter()
                    .enumerate()
                    .map(|(i, v)| v * (-(i.saturating_sub(peak) as f32) / tau).exp())
                    .collect()
            }
            Twin::Louder => x.iter().map(|v| (2.0 * v).clamp(-1.0, 1.0)).collect(),
            Twin::Rattle => {
                let rate_hz = 10.0 + 20.0 * rng.uniform() as f32;
                x.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let gate = ((std::f32::consts::TAU * rate_hz * i as f32 / r).sin())
                            .max(0.0)
                            .powi(8);
                        v + 1.5 * rms * gate * (2.0 * rng.uniform() as f32 - 1.0)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_change_the_sound_but_keep_its_scale() {
        let rate = 16_000;
        let x: Vec<f32> = (0..rate).map(|i| 0.1 * (i as f32 * 0.05).sin()).collect();
        for t in Twin::ALL.into_iter().chain(Twin::KNOCK) {
            let y = t.apply(&x, rate as u32, &mut SplitMix64(1));
            assert!(!y.is_empty() && y.iter().all(|v| v.is_finite()), "{t:?}");
            let diff: f32 =
                x.iter().zip(&y).map(|(a, b)| (a - b).abs()).sum::<f32>() / y.len() as f32;
            assert!(diff > 1e-3, "{t:?} changed nothing");
            let peak = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(peak < 2.0, "{t:?} peak {peak}");
        }
    }

    #[test]
    fn a_damped_twin_rings_shorter_from_its_peak() {
        // A knock: a 1 kHz ring decaying over 200 ms, peak at sample 0.
        let rate = 16_000u32;
        let x: Vec<f32> = (0..rate as usize / 2)
            .map(|i| {
                let t = i as f32 / rate as f32;
                (std::f32::consts::TAU * 1000.0 * t).cos() * (-t / 0.2).exp()
            })
            .collect();
        let y = Twin::Damped.apply(&x, rate, &mut SplitMix64(3));
        let energy = |v: &[f32]| v.iter().map(|s| s * s).sum::<f32>();
        let tail = rate as usize / 20; // after 50 ms
        assert_eq!(y[0], x[0], "the strike itself is kept");
        assert!(
            energy(&y[tail..]) < 1e-2 * energy(&x[tail..]),
            "the ring is cut short"
        );
        assert_eq!(Twin::for_mode("tap"), &Twin::KNOCK);
        assert_eq!(Twin::for_mode("continuous"), &Twin::ALL);
    }

    #[test]
    fn a_louder_twin_doubles_the_amplitude_up_to_full_scale_and_draws_nothing() {
        let x = [0.1f32, -0.3, 0.6, -0.9];
        let mut rng = SplitMix64(5);
        assert_eq!(
            Twin::Louder.apply(&x, 16_000, &mut rng),
            [0.2, -0.6, 1.0, -1.0]
        );
        // It takes no random draw, so the other twins' draws are as they were.
        assert_eq!(rng.next_u64(), SplitMix64(5).next_u64());
        // Only the held-out check applies it, and only to running machines.
        assert_eq!(Twin::check("continuous").last(), Some(&Twin::Louder));
        assert_eq!(&Twin::check("continuous")[..5], &Twin::ALL);
        assert_eq!(Twin::check("tap"), &Twin::KNOCK);
        assert!(!Twin::ALL.contains(&Twin::Louder) && !Twin::KNOCK.contains(&Twin::Louder));
    }
}
