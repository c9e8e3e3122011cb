//! `hark bench`: what each stage costs on this machine, and the real-time factor.
//!
//! Times are CPU time of this thread (`cpu-time`), so a busy machine inflates them less
//! than wall time would; still, compare ratios measured in one run, not across days.

use std::time::Duration;

use cpu_time::ThreadTime;
use serde_json::json;

use crate::bank::NormalBank;
use crate::detector::{CLEAR_M, Detector, RAISE_K, RAISE_N};
use crate::frontend::FrontEnd;
use crate::model::Embedder;
use crate::spectrogram::Spectrogram;

/// A synthetic pump: 50 Hz harmonics with slow wobble plus broadband noise.
pub fn synthetic_pump(rate_hz: u32, seconds: f64) -> Vec<f32> {
    let n = (rate_hz as f64 * seconds) as usize;
    let mut state = 0x1234_5678_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|i| {
            let t = i as f32 / rate_hz as f32;
            let f0 = 50.0 * (1.0 + 0.003 * (std::f32::consts::TAU * 0.7 * t).sin());
            let tone: f32 = (1..=10)
                .map(|h| {
                    (if h == 6 { 0.3 } else { 0.08 }) / h as f32
                        * (std::f32::consts::TAU * f0 * h as f32 * t).sin()
                })
                .sum();
            0.5 * tone + 0.05 * noise()
        })
        .collect()
}

/// Runs `f` repeatedly for about `budget` of CPU time; returns CPU seconds per call.
fn per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = ThreadTime::now();
    let mut calls = 0u64;
    while start.elapsed() < budget || calls < 3 {
        f();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn random_bank(n: usize, dim: usize, hash: &str) -> anyhow::Result<NormalBank> {
    let mut s = 99u64;
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let calibration = crate::bank::calibrate(&[0.0, 0.1], crate::bank::Target::continuous());
    Ok(NormalBank::from_parts(&rows, calibration, hash))
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What to measure with.
#[derive(Debug)]
pub struct Options {
    /// The network.
    pub model: std::path::PathBuf,
    /// Seconds of audio for the end-to-end run.
    pub seconds: f64,
    /// Bank size for the end-to-end run.
    pub bank: usize,
    /// A recording to use instead of the synthetic pump.
    pub wav: Option<std::path::PathBuf>,
}

/// `seconds` of audio at `rate`: the recording looped (channel 0), or the synthetic pump.
fn audio(o: &Options, rate: u32) -> anyhow::Result<(u32, Vec<f32>)> {
    let Some(path) = &o.wav else {
        return Ok((rate, synthetic_pump(rate, o.seconds)));
    };
    let clip = crate::wav::Clip::read(path)?;
    let x = clip.mono(Some(0));
    let n = (o.seconds * clip.sample_rate_hz as f64) as usize;
    Ok((
        clip.sample_rate_hz,
        x.iter().copied().cycle().take(n).collect(),
    ))
}

/// Measures and prints.
pub fn run(o: &Options, as_json: bool) -> anyhow::Result<()> {
    let seconds = o.seconds;
    let embedder = Embedder::load(&o.model)?;
    let p = embedder.meta().front;
    let budget = Duration::from_millis(700);
    let mut rows: Vec<serde_json::Value> = Vec::new();

    let mut spec = Spectrogram::new(p);
    let frame = synthetic_pump(p.sample_rate_hz, 0.1);
    let mut col = vec![0.0; p.n_mels];
    let t_frame = per_call(budget, || spec.frame(&frame[..p.n_fft], &mut col));
    rows.push(json!({"stage": "spectrogram_frame", "us": t_frame * 1e6}));

    let window = vec![-50.0f32; embedder.window_len()];
    let t_embed = per_call(budget, || {
        let _ = embedder.embed(&[&window]);
    });
    rows.push(json!({"stage": "embed_window_batch1", "us": t_embed * 1e6}));
    let batch: Vec<&[f32]> = (0..16).map(|_| window.as_slice()).collect();
    let t_embed16 = per_call(budget, || {
        let _ = embedder.embed(&batch);
    }) / 16.0;
    rows.push(json!({"stage": "embed_window_batch16", "us": t_embed16 * 1e6}));

    let query = embedder.embed(&[&window])?.remove(0);
    for n in [2048usize, 10_000] {
        let bank = random_bank(n, query.len(), embedder.hash())?;
        let t = per_call(budget, || {
            std::hint::black_box(bank.nearest(&query));
        });
        rows.push(json!({"stage": "nearest_normal", "bank": n, "us": t * 1e6}));
    }

    // End to end, one source: front end + embed + score + decide, as the threads do.
    // The model's own rate, and one that needs resampling.
    let rates = if o.wav.is_some() {
        vec![0]
    } else if p.sample_rate_hz == 48_000 {
        vec![48_000, 16_000]
    } else {
        vec![p.sample_rate_hz, 48_000]
    };
    for rate in rates {
        let (rate, audio) = audio(o, rate)?;
        let bank = random_bank(o.bank, query.len(), embedder.hash())?;
        let mut det = Detector::new(bank, 1.0, RAISE_K, RAISE_N, CLEAR_M);
        let mut fe = FrontEnd::new(p, rate)?;
        let mut windows = 0u64;
        let start = ThreadTime::now();
        for chunk in audio.chunks(rate as usize / 100) {
            fe.push(chunk, &mut |w| {
                windows += 1;
                if let Ok(e) = embedder.embed(&[&w.mels]) {
                    let s = det.score(&e[0]);
                    det.update(s);
                }
            });
        }
        let cpu = start.elapsed().as_secs_f64();
        rows.push(json!({
            "stage": "end_to_end", "input_rate_hz": rate, "audio_s": seconds, "windows": windows,
            "cpu_s": cpu, "cpu_s_per_audio_s": cpu / seconds, "bank": o.bank,
            "audio": o.wav.as_ref().map_or("synthetic pump".to_string(), |w| w.display().to_string()),
        }));
    }
    // The whole process: model, a 10,000-embedding bank, front ends, and the runs above.
    rows.push(
        json!({"stage": "peak_rss", "mib": peak_rss_mib(), "largest_bank": 10_000.max(o.bank)}),
    );

    for r in rows {
        if as_json {
            outln!("{r}")?;
        } else {
            let stage = r["stage"].as_str().unwrap_or("");
            let mut rest: Vec<String> = r
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "stage")
                .map(|(k, v)| match v.as_f64() {
                    Some(x) if !v.is_u64() => format!("{k}={x:.6}"),
                    _ => format!("{k}={v}"),
                })
                .collect();
            rest.sort();
            outln!("{stage:<22} {}", rest.join("  "))?;
        }
    }
    Ok(())
}
