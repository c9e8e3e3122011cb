//! Real capture: cpal opens an ALSA `file` PCM that replays raw samples from a FIFO,
//! and `hark record` (capture callback → ring → WAV) must return exactly those samples.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::util::{Proc, hark, shared_data};

const ASOUNDRC: &str = r#"
pcm.harktest {
    type file
    slave.pcm "null"
    file "/dev/null"
    infile { @func getenv vars [ REPLAY_FILE ] default "/dev/zero" }
    format "raw"
    hint { show on description "hark test replay" }
}
"#;

/// Interleaved i16 test audio: a real recording when ../shared/data is there, else a
/// generated chirp (the test must not depend on the data to check the capture path).
fn source_samples(channels: usize, frames: usize) -> Vec<i16> {
    let real = shared_data().and_then(|d| {
        let clip =
            hark::wav::Clip::read(&d.join("fan/test/normal_id_00_20210210T012029.wav")).ok()?;
        Some(clip.mono(Some(0)))
    });
    let mono: Vec<f32> = match real {
        Some(x) => x,
        None => (0..frames)
            .map(|i| (i as f32 * i as f32 * 1e-6).sin() * 0.5)
            .collect(),
    };
    let mut out = Vec::with_capacity(frames * channels);
    for i in 0..frames {
        for c in 0..channels {
            // Channel c is the signal scaled differently, so a mix-up cannot pass.
            let v = mono[i % mono.len()] * (1.0 - 0.3 * c as f32);
            out.push((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
        }
    }
    out
}

/// Records `frames` from the test PCM while a thread writes `raw` into its FIFO at
/// about 4x real time (the null slave would otherwise deliver faster than any ring).
fn record(dir: &Path, raw: &[i16], channels: usize, args: &[&str]) -> Vec<i16> {
    std::fs::create_dir_all(dir.join("alsa")).unwrap();
    std::fs::write(dir.join("alsa/asoundrc"), ASOUNDRC).unwrap();
    let fifo = dir.join("replay.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = dir.join("out.wav");
    let frames = raw.len() / channels;
    let seconds = frames as f64 / 16000.0;
    let child = hark()
        .args([
            "record",
            "--device",
            "alsa:harktest",
            "--rate",
            "16000",
            "--format",
            "i16",
        ])
        .args([
            "--channels",
            &channels.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("XDG_CONFIG_HOME", dir)
        .env("REPLAY_FILE", &fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let bytes: Vec<u8> = raw.iter().flat_map(|s| s.to_le_bytes()).collect();
    let fifo2 = fifo.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let writer = std::thread::spawn(move || {
        let block = 160 * 2 * channels; // 10 ms
        // A reader that opens the FIFO and closes it again before streaming (a device
        // probe) leaves the writer with a broken pipe: open again and start over, or
        // the real stream would wait for a writer forever.
        'open: for _ in 0..5 {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo2)
                .unwrap();
            if done2.load(Ordering::SeqCst) {
                return;
            }
            for chunk in bytes.chunks(block) {
                if f.write_all(chunk).is_err() {
                    continue 'open;
                }
                std::thread::sleep(Duration::from_micros(2500));
            }
            // Keep the FIFO open a little: the PCM repeats its last period after EOF,
            // and hark stops after exactly `seconds` anyway.
            std::thread::sleep(Duration::from_secs(1));
            return;
        }
    });
    let status = proc.0.wait().unwrap();
    // hark has stopped reading: if the writer lost its pipe at the very end and waits
    // to open the FIFO again, be the reader it waits for, so it sees `done` and ends
    // (before this, such a run hung in `writer.join()`). O_NONBLOCK (0o4000 on Linux):
    // opening never waits, whether the writer is there or not.
    done.store(true, Ordering::SeqCst);
    let _release = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000)
        .open(&fifo);
    let stderr = proc.stderr();
    assert!(status.success(), "hark record failed: {stderr}");
    assert!(
        !stderr.contains("dropped"),
        "capture dropped samples: {stderr}"
    );
    writer.join().unwrap();
    let mut r = hound::WavReader::open(&out).unwrap();
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

#[test]
fn capture_delivers_exactly_the_replayed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_samples(1, 32000);
    let got = record(dir.path(), &raw, 1, &[]);
    assert_eq!(got.len(), raw.len());
    let first_diff = got.iter().zip(&raw).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "captured samples differ from the file");
}

#[test]
fn capture_picks_the_configured_channel_of_a_stereo_device() {
    let dir = tempfile::tempdir().unwrap();
    let raw = source_samples(2, 16000);
    let got = record(dir.path(), &raw, 2, &["--channel", "1"]);
    let right: Vec<i16> = raw.chunks(2).map(|f| f[1]).collect();
    assert_eq!(got.len(), right.len());
    assert!(
        got == right,
        "channel 1 of the stereo stream is not what was captured"
    );
}
