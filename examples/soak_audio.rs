//! Writes the long 48 kHz recording that `scripts/soak.sh` replays on 8 sources: the
//! real fan recordings of `../shared/data/fan` (normal clips, with a fault clip every
//! few minutes so events happen), resampled 16 → 48 kHz with rubato, repeated until
//! the length asked for. Streams to disk, so an hour costs no more memory than a clip.
//!
//! `cargo run --release --example soak_audio -- DATA_DIR MINUTES OUT.wav`

use std::path::{Path, PathBuf};

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

fn clips(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

fn to_48k(path: &Path) -> Vec<f32> {
    let clip = hark::wav::Clip::read(path).unwrap_or_else(|e| panic!("{e}"));
    let x = clip.mono(Some(0));
    let mut r = Fft::<f32>::new(
        clip.sample_rate_hz as usize,
        48_000,
        1024,
        1,
        FixedSync::Input,
    )
    .expect("16 kHz → 48 kHz resampler");
    let input = InterleavedSlice::new(&x[..], 1, x.len()).expect("mono buffer");
    r.process_all(&input, x.len(), None)
        .expect("resampling a whole clip")
        .take_data()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, minutes, out] = &args[..] else {
        eprintln!("usage: soak_audio DATA_DIR MINUTES OUT.wav");
        std::process::exit(2);
    };
    let data = Path::new(data);
    let minutes: f64 = minutes.parse().expect("MINUTES is a number");
    let mut normal = clips(&data.join("fan/train"), "");
    normal.extend(clips(&data.join("fan/test"), "normal_"));
    let faults = clips(&data.join("fan/test"), "anomaly_id_00_blade");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(out, spec).expect("create OUT.wav");
    let want = (minutes * 60.0 * 48_000.0) as u64;
    let (mut written, mut i) = (0u64, 0usize);
    while written < want {
        // Every fifth clip a fault: a few events per hour of audio.
        let path = if i % 5 == 4 {
            &faults[(i / 5) % faults.len()]
        } else {
            &normal[i % normal.len()]
        };
        for s in to_48k(path) {
            if written == want {
                break;
            }
            w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                .expect("write OUT.wav");
            written += 1;
        }
        i += 1;
    }
    w.finalize().expect("finish OUT.wav");
    eprintln!("{out}: {minutes} min at 48 kHz from {i} clips");
}
