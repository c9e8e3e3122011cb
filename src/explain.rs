//! Why a window scored high: the frequency bands where it differs most from the
//! nearest normal window of the bank, and which normal clip that window came from.
//!
//! Pure. The bank keeps, per row, the window's mean level in each mel band (its
//! "profile", see [`crate::bank::RowNote`]); an explanation is the difference between
//! the anomalous window's profile and its nearest normal row's, grouped into runs of
//! neighbouring bands that moved the same way: "+12 dB at 2.0-3.1 kHz".

use serde_json::{Value, json};

use crate::bank::{NormalBank, RowNote};
use crate::spectrogram::FrontEndParams;

/// Runs of bands reported at most.
pub const MAX_BANDS: usize = 3;
/// Runs smaller than this (dB) are left out, except the largest one.
pub const MIN_DB: f32 = 3.0;
/// A run grows over neighbours that moved at least this share of its peak.
const GROW_SHARE: f32 = 0.5;

/// One run of neighbouring mel bands and how far it moved.
#[derive(Debug, Clone, PartialEq)]
pub struct BandDelta {
    /// Lower edge, Hz.
    pub lo_hz: f32,
    /// Upper edge, Hz.
    pub hi_hz: f32,
    /// Mean level difference over the run, dB (positive: louder than normal).
    pub db: f32,
}

/// What made a window anomalous, in words an operator can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The runs of bands that moved most, largest first.
    pub bands: Vec<BandDelta>,
    /// Mean difference over all bands, dB (overall loudness change).
    pub level_db: f32,
    /// The nearest normal window's clip (file or live segment).
    pub nearest_clip: String,
    /// Where in that clip the nearest normal window starts, seconds.
    pub nearest_t: f32,
}

/// A window's mean level per mel band, dB. `mels` is frame-major (`frames × n_mels`).
pub fn profile(mels: &[f32], n_mels: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; n_mels];
    let frames = mels.len() / n_mels.max(1);
    for frame in mels.chunks_exact(n_mels.max(1)) {
        for (s, v) in sum.iter_mut().zip(frame) {
            *s += *v as f64;
        }
    }
    sum.iter()
        .map(|s| (s / frames.max(1) as f64) as f32)
        .collect()
}

/// The frequency span of each mel band: `n_mels + 1` boundaries, Hz. Band `m` reaches
/// from halfway between its triangle's lower foot and centre to halfway between its
/// centre and upper foot, so neighbouring bands tile the range without overlap.
pub fn band_bounds_hz(p: &FrontEndParams) -> Vec<f32> {
    let points = crate::spectrogram::mel_points_hz(p);
    (0..=p.n_mels)
        .map(|m| 0.5 * (points[m] + points[m + 1]))
        .collect()
}

/// The runs of neighbouring bands in which `window` differs most from `normal`.
///
/// Repeatedly takes the band with the largest difference not yet reported and grows
/// it over neighbours that moved the same way by at least half as much. Runs under
/// [`MIN_DB`] are dropped unless nothing larger exists. `bounds` comes from
/// [`band_bounds_hz`]. Bands that are not finite in either profile are ignored.
pub fn deviations(window: &[f32], normal: &[f32], bounds: &[f32]) -> Vec<BandDelta> {
    let n = window
        .len()
        .min(normal.len())
        .min(bounds.len().saturating_sub(1));
    let delta: Vec<f32> = (0..n)
        .map(|b| window[b] - normal[b])
        .map(|d| if d.is_finite() { d } else { 0.0 })
        .collect();
    let mut taken = vec![false; n];
    let mut runs = Vec::new();
    while runs.len() < MAX_BANDS {
        let Some(peak) = (0..n)
            .filter(|&b| !taken[b])
            .max_by(|&a, &b| delta[a].abs().total_cmp(&delta[b].abs()))
        else {
            break;
        };
        let d = delta[peak];
        if d == 0.0 || (d.abs() < MIN_DB && !runs.is_empty()) {
            break;
        }
        let joins = |b: usize| !taken[b] && delta[b] * d.signum() >= GROW_SHARE * d.abs();
        let (mut lo, mut hi) = (peak, peak);
        while lo > 0 && joins(lo - 1) {
            lo -= 1;
        }
        while hi + 1 < n && joins(hi + 1) {
            hi += 1;
        }
        taken[lo..=hi].iter_mut().for_each(|t| *t = true);
        let db = delta[lo..=hi].iter().sum::<f32>() / (hi - lo + 1) as f32;
        runs.push(BandDelta {
            lo_hz: bounds[lo],
            hi_hz: bounds[hi + 1],
            db,
        });
    }
    runs
}

/// Explains a window (its [`profile`]) against the nearest normal row's note.
/// `None` when the note's profile is of another length (another front end).
pub fn explain(window: &[f32], nearest: &RowNote, bounds: &[f32]) -> Option<Explanation> {
    if nearest.profile.len() != window.len() || window.is_empty() {
        return None;
    }
    let bands = deviations(window, &nearest.profile, bounds);
    let diffs: Vec<f32> = window
        .iter()
        .zip(&nearest.profile)
        .map(|(w, n)| w - n)
        .filter(|d| d.is_finite())
        .collect();
    let level_db = diffs.iter().sum::<f32>() / diffs.len().max(1) as f32;
    Some(Explanation {
        bands,
        level_db,
        nearest_clip: nearest.clip.clone(),
        nearest_t: nearest.t,
    })
}

/// Explains a window's [`profile`] against bank row `nearest` (the row
/// [`NormalBank::nearest`] found); `None` when the bank has no note for that row.
pub fn against(
    bank: &NormalBank,
    nearest: usize,
    profile: &[f32],
    bounds: &[f32],
) -> Option<Explanation> {
    explain(profile, bank.note(nearest)?, bounds)
}

/// `2.0-3.1 kHz`, `120-180 Hz` or `700 Hz-1.2 kHz`.
pub fn hz_range(lo: f32, hi: f32) -> String {
    let khz = |x: f32| format!("{:.1}", x / 1000.0);
    let hz = |x: f32| format!("{:.0}", x);
    match (lo >= 1000.0, hi >= 1000.0) {
        (true, true) => format!("{}-{} kHz", khz(lo), khz(hi)),
        (false, false) => format!("{}-{} Hz", hz(lo), hz(hi)),
        _ => format!("{} Hz-{} kHz", hz(lo), khz(hi)),
    }
}

impl Explanation {
    /// One line: `+12 dB at 2.0-3.1 kHz, -4 dB at 120-180 Hz`.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self
            .bands
            .iter()
            .map(|b| format!("{:+.0} dB at {}", b.db, hz_range(b.lo_hz, b.hi_hz)))
            .collect();
        parts.join(", ")
    }

    /// The `explain` object of event and verdict payloads.
    pub fn to_json(&self) -> Value {
        let r1 = |x: f32| (x as f64 * 10.0).round() / 10.0;
        json!({
            "text": self.text(),
            "bands": self.bands.iter().map(|b| json!({
                "lo_hz": b.lo_hz.round(),
                "hi_hz": b.hi_hz.round(),
                "db": r1(b.db),
            })).collect::<Vec<_>>(),
            "level_db": r1(self.level_db),
            "nearest": {"clip": self.nearest_clip, "t": (self.nearest_t as f64 * 1000.0).round() / 1000.0},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(n: usize) -> Vec<f32> {
        (0..=n).map(|i| 1000.0 * i as f32).collect()
    }

    #[test]
    fn profile_is_the_mean_of_each_band_over_frames() {
        // 3 frames × 2 bands, frame-major.
        let p = profile(&[0.0, 10.0, 3.0, 20.0, 6.0, 30.0], 2);
        assert_eq!(p, vec![3.0, 20.0]);
    }

    #[test]
    fn a_raised_band_is_found_with_its_edges_and_size() {
        let normal = vec![-40.0; 10];
        let mut window = normal.clone();
        // Bands 4 and 5 (4-6 kHz) up 12 dB, band 6 up 7 dB (joins: over half of 12).
        window[4] += 12.0;
        window[5] += 12.0;
        window[6] += 7.0;
        let d = deviations(&window, &normal, &bounds(10));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].lo_hz, d[0].hi_hz), (4000.0, 7000.0));
        assert!((d[0].db - 31.0 / 3.0).abs() < 1e-4);
    }

    #[test]
    fn opposite_moves_are_separate_runs_largest_first() {
        let normal = vec![-40.0; 10];
        let mut window = normal.clone();
        window[1] -= 6.0;
        window[2] += 15.0;
        window[8] += 4.0;
        window[9] += 1.0; // under MIN_DB and not half of 4: left out
        let d = deviations(&window, &normal, &bounds(10));
        let got: Vec<(f32, f32, f32)> = d.iter().map(|b| (b.lo_hz, b.hi_hz, b.db)).collect();
        assert_eq!(
            got,
            vec![
                (2000.0, 3000.0, 15.0),
                (1000.0, 2000.0, -6.0),
                (8000.0, 9000.0, 4.0)
            ]
        );
    }

    #[test]
    fn small_differences_still_name_the_largest() {
        let normal = vec![-40.0; 4];
        let window = vec![-40.0, -39.0, -40.5, -40.0];
        let d = deviations(&window, &normal, &bounds(4));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].lo_hz, 1000.0);
        // Identical profiles explain nothing rather than inventing a band.
        assert!(deviations(&normal, &normal, &bounds(4)).is_empty());
    }

    #[test]
    fn non_finite_bands_are_ignored() {
        let normal = vec![-40.0, f32::NAN, -40.0];
        let window = vec![-30.0, -10.0, -40.0];
        let d = deviations(&window, &normal, &bounds(3));
        assert_eq!(d[0].lo_hz, 0.0);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn text_and_json_read_well() {
        let note = RowNote {
            profile: vec![-40.0; 4],
            clip: "normal_0001.wav".into(),
            t: 2.5,
            item: None,
        };
        let e = explain(
            &[-40.0, -28.0, -40.0, -44.4],
            &note,
            &[100.0, 500.0, 2000.0, 3100.0, 8000.0],
        )
        .unwrap();
        assert_eq!(e.text(), "+12 dB at 500 Hz-2.0 kHz, -4 dB at 3.1-8.0 kHz");
        let j = e.to_json();
        assert_eq!(j["nearest"]["clip"], "normal_0001.wav");
        assert_eq!(j["bands"][0]["db"], 12.0);
        assert_eq!(j["level_db"], 1.9);
        assert_eq!(hz_range(120.0, 180.0), "120-180 Hz");
        // Another front end's profile cannot be compared.
        assert!(explain(&[0.0; 3], &note, &bounds(3)).is_none());
    }

    #[test]
    fn band_bounds_tile_the_mel_range() {
        let p = FrontEndParams::DEFAULT;
        let b = band_bounds_hz(&p);
        assert_eq!(b.len(), p.n_mels + 1);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
        assert!(b[0] > p.fmin_hz && b[p.n_mels] < p.fmax_hz);
    }
}
