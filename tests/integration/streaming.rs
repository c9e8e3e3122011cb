//! Streaming equals offline: the front end fed random chunk sizes (1..=4096 samples,
//! as cpal's callbacks vary) emits exactly the windows of one whole-signal pass.

use rand::{RngExt, SeedableRng};

use hark::frontend::{FrontEnd, Window, windows_of};
use hark::spectrogram::FrontEndParams;

use crate::util::shared_data;

fn streamed(p: FrontEndParams, rate: u32, x: &[f32], seed: u64) -> Vec<Window> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut fe = FrontEnd::new(p, rate).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < x.len() {
        let n = rng.random_range(1..=4096).min(x.len() - pos);
        fe.push(&x[pos..pos + n], &mut |w| out.push(w));
        pos += n;
    }
    out
}

fn check(rate: u32, x: &[f32]) {
    let p = FrontEndParams::DEFAULT;
    let whole = windows_of(p, rate, x).unwrap();
    assert!(whole.len() > 3, "signal too short for the test");
    for seed in [1, 2, 3] {
        let parts = streamed(p, rate, x, seed);
        assert_eq!(
            parts.len(),
            whole.len(),
            "window count at {rate} Hz, seed {seed}"
        );
        for (a, b) in parts.iter().zip(&whole) {
            assert!(
                a == b,
                "window {} differs at {rate} Hz, seed {seed}",
                a.index
            );
        }
    }
}

#[test]
fn random_chunks_equal_whole_file_at_the_model_rate() {
    let x: Vec<f32> = match shared_data() {
        Some(d) => hark::wav::Clip::read(&d.join("fan/test/normal_id_00_20210210T012029.wav"))
            .unwrap()
            .mono(None),
        None => (0..16000 * 6)
            .map(|i| ((i as f32) * 0.01).sin() * 0.3)
            .collect(),
    };
    check(16_000, &x);
}

#[test]
fn random_chunks_equal_whole_file_through_the_resampler() {
    // 44.1 kHz stereo stones recording (or a generated 48 kHz signal): exercises the
    // resampler's fixed input chunks as well as framing.
    let (rate, x) = match shared_data() {
        Some(d) => {
            let files = crate::util::sorted_files(&d.join("stones/train"));
            let mut x = Vec::new();
            let mut rate = 0;
            for f in files.iter().take(5) {
                let c = hark::wav::Clip::read(f).unwrap();
                rate = c.sample_rate_hz;
                x.extend(c.mono(None));
            }
            (rate, x)
        }
        None => (
            48_000,
            (0..48_000 * 5)
                .map(|i| ((i as f32) * 0.003).sin() * 0.3)
                .collect(),
        ),
    };
    check(rate, &x);
}
