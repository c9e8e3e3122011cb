//! Explanations name the band that changed: a bank enrolled from generated noise with a
//! hum, then clips where a whistle appears or the hum stops, through `hark enroll` and
//! `hark score --json` (the daemon's own scoring and explanation code).

use std::path::Path;

use crate::util::{enrol, hark, run_ok, scoring_config, shipped_model};

const RATE: u32 = 16_000;

/// `seconds` of noise (seeded) plus a 200 Hz hum and an optional tone, mono.
fn clip(seed: u64, seconds: f64, hum: f32, tone: Option<(f32, f32)>) -> Vec<f32> {
    let mut rng = hark::model::SplitMix64(seed);
    (0..(seconds * RATE as f64) as usize)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let tau = std::f32::consts::TAU;
            let noise = 0.02 * rng.normal() as f32;
            let tone = tone.map_or(0.0, |(hz, amp)| amp * (tau * hz * t).sin());
            noise + hum * (tau * 200.0 * t).sin() + tone
        })
        .collect()
}

/// The `explain` objects of every over-threshold window of `wav`.
fn explanations(wav: &Path, cfg: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(
        hark()
            .arg("score")
            .arg(wav)
            .arg("--config")
            .arg(cfg)
            .arg("--json"),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["score"].as_f64() > r["threshold"].as_f64())
        .map(|r| r["explain"].clone())
        .collect()
}

/// The largest run of an explanation: (lower edge, upper edge, dB).
fn top_band(x: &serde_json::Value) -> (f64, f64, f64) {
    let top = &x["bands"][0];
    let num = |k: &str| top[k].as_f64().unwrap_or_else(|| panic!("{k} in {x}"));
    (num("lo_hz"), num("hi_hz"), num("db"))
}

#[test]
fn an_event_names_the_band_that_changed_and_the_nearest_normal_clip() {
    let dir = tempfile::tempdir().unwrap();
    let normal = dir.path().join("normal");
    std::fs::create_dir(&normal).unwrap();
    for i in 0..4 {
        let x = clip(i, 6.0, 0.2, None);
        hark::wav::write_mono_i16(&normal.join(format!("n{i}.wav")), RATE, &x).unwrap();
    }
    let model = shipped_model("default.safetensors");
    let bank = enrol(dir.path(), "m", &normal, &model);
    let cfg = scoring_config(dir.path(), "m", &model, &bank, "");

    // A whistle at 3 kHz, ~25 dB over the noise in its band.
    let whistle = dir.path().join("whistle.wav");
    hark::wav::write_mono_i16(&whistle, RATE, &clip(10, 6.0, 0.2, Some((3000.0, 0.1)))).unwrap();
    let xs = explanations(&whistle, &cfg);
    assert!(!xs.is_empty(), "the whistle was not anomalous");
    for x in &xs {
        let (lo, hi, db) = top_band(x);
        assert!(
            lo <= 3000.0 && 3000.0 <= hi,
            "whistle at 3 kHz, explained as {x}"
        );
        assert!(db > 10.0, "{x}");
        let clip = x["nearest"]["clip"].as_str().unwrap();
        assert!(
            clip.starts_with(&normal.display().to_string()) && clip.ends_with(".wav"),
            "{x}"
        );
        assert!(x["nearest"]["t"].as_f64().unwrap() < 6.0, "{x}");
    }

    // The hum stops: its band is named, with a negative change.
    let quiet = dir.path().join("no-hum.wav");
    hark::wav::write_mono_i16(&quiet, RATE, &clip(11, 6.0, 0.0, None)).unwrap();
    let xs = explanations(&quiet, &cfg);
    assert!(!xs.is_empty(), "the missing hum was not anomalous");
    for x in &xs {
        let (lo, hi, db) = top_band(x);
        assert!(
            lo <= 200.0 && 200.0 <= hi,
            "hum at 200 Hz, explained as {x}"
        );
        assert!(db < -10.0, "{x}");
        assert!(x["text"].as_str().unwrap().starts_with('-'), "{x}");
    }
}
