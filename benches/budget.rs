//! The per-window budget: spectrogram per hop, network forward per window, and the
//! nearest-normal search over banks of several sizes, and the cap a `false_alarm` on a
//! full bank costs. `cargo bench` runs it;
//! `hark bench` reports the same stages plus the end-to-end real-time factor.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group};
use hark::bank::{NormalBank, Target, calibrate};
use hark::frontend::FrontEnd;
use hark::inference::MAX_BANK;
use hark::model::Embedder;
use hark::spectrogram::{FrontEndParams, Spectrogram};

fn unit_rows(n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut s = 7u64;
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn budget(c: &mut Criterion) {
    let p = FrontEndParams::DEFAULT;
    let signal: Vec<f32> = (0..p.sample_rate_hz as usize)
        .map(|i| (i as f32 * 0.07).sin() * 0.3)
        .collect();

    let mut spec = Spectrogram::new(p);
    let mut col = vec![0.0; p.n_mels];
    c.bench_function("spectrogram_per_hop", |b| {
        b.iter(|| spec.frame(black_box(&signal[..p.n_fft]), &mut col))
    });

    // One window hop of audio through the whole front end (8 frames + window assembly).
    let mut fe = FrontEnd::new(p, p.sample_rate_hz).unwrap();
    let hop = p.hop * p.window_hop_frames;
    let mut pos = 0;
    c.bench_function("frontend_per_window_hop", |b| {
        b.iter(|| {
            let chunk = &signal[pos..pos + hop];
            pos = (pos + hop) % (signal.len() - hop);
            fe.push(chunk, &mut |w| {
                black_box(w);
            })
        })
    });

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors");
    let embedder = Embedder::load(&model).unwrap();
    let window = vec![-50.0f32; embedder.window_len()];
    c.bench_function("forward_per_window", |b| {
        b.iter(|| embedder.embed(black_box(&[&window])).unwrap())
    });

    let query = embedder.embed(&[&window]).unwrap().remove(0);
    for n in [256usize, 2048, 10_000] {
        let bank = NormalBank::from_parts(
            &unit_rows(n, query.len()),
            calibrate(&[0.0, 1.0], Target::continuous()),
            "bench",
        );
        c.bench_function(&format!("nearest_normal_{n}"), |b| {
            b.iter(|| bank.nearest(black_box(&query)))
        });
    }

    // `false_alarm` on a full bank: the most windows one event adds (256), then the
    // k-center cap back to MAX_BANK.
    let full = NormalBank::from_parts(
        &unit_rows(MAX_BANK + 256, query.len()),
        calibrate(&[0.0, 1.0], Target::continuous()),
        "bench",
    );
    let mut group = c.benchmark_group("false_alarm");
    group.sample_size(10);
    group.bench_function("cap_2304_to_2048", |b| {
        b.iter_batched(
            || full.clone(),
            |mut bank| bank.cap(MAX_BANK),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, budget);

fn main() {
    // The daemon runs candle single-threaded (see src/main.rs); measure that.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
