//! Bad input never panics: one line on stderr that names the file (and key or value),
//! exit status 2, and nothing already saved is lost.

use std::path::{Path, PathBuf};

use crate::util::{hark, run_ok, shipped_model};

fn model() -> PathBuf {
    shipped_model("default.safetensors")
}

/// Runs hark; asserts a one-line error containing every `needle`, exit code 2.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let out = hark()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code for {args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line for {args:?}: {stderr}");
    assert!(lines[0].starts_with("hark: error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from: {}", lines[0]);
    }
    lines[0].to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

fn source_config(dir: &Path, extra: &str, model: &Path) -> String {
    let wav = dir.join("clip.wav");
    if !wav.exists() {
        let x: Vec<f32> = (0..16000 * 3)
            .map(|i| (i as f32 * 0.05).sin() * 0.2)
            .collect();
        hark::wav::write_mono_i16(&wav, 16000, &x).unwrap();
    }
    write(
        dir,
        "hark.toml",
        &format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[[source]]\nname = \"p\"\ndevice = \"file:{}\"\nmodel = \"{}\"\nbank = \"{}\"\n{extra}",
            wav.display(),
            model.display(),
            dir.join("p.bank.safetensors").display()
        ),
    )
}

#[test]
fn malformed_toml_names_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.toml",
        "node = \"a\"\n[[source]]\nname = \"x\"\nlearn_seconds = = 3\n",
    );
    fails(&["run", "--config", &cfg], &["bad.toml", "line 4"]);
}

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "k.toml",
        "[[source]]\nname = \"x\"\nlearn_secs = 3\n",
    );
    fails(&["run", "--config", &cfg], &["k.toml", "learn_secs"]);
}

#[test]
fn out_of_range_value_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "r.toml",
        "[[source]]\nname = \"x\"\nraise_k = 9\nraise_n = 4\n",
    );
    fails(
        &["run", "--config", &cfg],
        &["r.toml", "source[0].raise_k", "(9, 4)"],
    );
}

#[test]
fn missing_config_file() {
    fails(
        &["run", "--config", "/nonexistent/hark.toml"],
        &["/nonexistent/hark.toml"],
    );
}

#[test]
fn missing_and_corrupt_models() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = source_config(dir.path(), "", &dir.path().join("nope.safetensors"));
    fails(
        &["run", "--config", &cfg],
        &["nope.safetensors", "cannot read"],
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\0\0\0\0\0\0\0{\"a\": 1}       ").unwrap();
    let cfg = source_config(dir.path(), "", &junk);
    fails(&["run", "--config", &cfg], &["junk.safetensors"]);
    // A real model file cut short (as after a failed copy).
    let bytes = std::fs::read(model()).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cfg = source_config(dir.path(), "", &cut);
    fails(&["run", "--config", &cfg], &["cut.safetensors"]);
}

#[test]
fn model_that_does_not_match_the_config_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = source_config(dir.path(), "mode = \"tap\"\n", &model());
    fails(
        &["run", "--config", &cfg],
        &["mode = \"tap\"", "\"continuous\"", "default.safetensors"],
    );
    let cfg = source_config(dir.path(), "window_hop_frames = 100\n", &model());
    fails(
        &["run", "--config", &cfg],
        &["window_hop_frames = 100", "frames = 64"],
    );
}

#[test]
fn bank_of_another_model_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.safetensors");
    let st = hark()
        .args(["init-model", "--seed", "99", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(st.status.success());
    let cfg = source_config(dir.path(), "", &other);
    // Enrol with the other model, then run with the shipped one.
    let bank = dir.path().join("p.bank.safetensors");
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    std::fs::copy(dir.path().join("clip.wav"), clips.join("a.wav")).unwrap();
    run_ok(
        hark()
            .args(["enroll"])
            .arg(&clips)
            .arg("--model")
            .arg(&other)
            .arg("--out")
            .arg(&bank),
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&other.display().to_string(), &model().display().to_string());
    std::fs::write(&cfg, text).unwrap();
    let line = fails(
        &["run", "--config", &cfg],
        &["p.bank.safetensors", "sha256"],
    );
    assert_eq!(line.matches("sha256").count(), 2, "{line}");
}

#[test]
fn non_audio_and_empty_wavs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = source_config(dir.path(), "", &model());
    let junk = write(dir.path(), "notes.wav", "these are not samples");
    fails(
        &["score", &junk, "--config", &cfg],
        &["notes.wav", "not a WAV"],
    );
    let empty = dir.path().join("empty.wav");
    hark::wav::write_mono_i16(&empty, 16000, &[]).unwrap();
    fails(
        &["score", &empty.to_string_lossy(), "--config", &cfg],
        &["empty.wav", "empty"],
    );
    // The daemon refuses a file: device that is not audio before it starts anything.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("clip.wav", "notes.wav");
    std::fs::write(&cfg, text).unwrap();
    fails(&["run", "--config", &cfg], &["notes.wav"]);
}

#[test]
fn device_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "d.toml",
        &format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[[source]]\nname = \"p\"\ndevice = \"no-such-microphone\"\nmodel = \"{}\"\n",
            model().display()
        ),
    );
    fails(&["run", "--config", &cfg], &["no-such-microphone"]);
    fails(
        &[
            "record",
            "--device",
            "no-such-microphone",
            "--seconds",
            "1",
            "--out",
            "/tmp/x.wav",
        ],
        &["no-such-microphone"],
    );
}

#[test]
fn failed_enrolment_leaves_the_old_bank_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    let x: Vec<f32> = (0..16000 * 3)
        .map(|i| (i as f32 * 0.05).sin() * 0.2)
        .collect();
    hark::wav::write_mono_i16(&clips.join("a.wav"), 16000, &x).unwrap();
    let bank = dir.path().join("b.bank.safetensors");
    run_ok(
        hark()
            .arg("enroll")
            .arg(&clips)
            .arg("--out")
            .arg(&bank)
            .args(["--model"])
            .arg(model()),
    );
    let before = std::fs::read(&bank).unwrap();
    std::fs::write(clips.join("b.wav"), b"RIFF garbage").unwrap();
    fails(
        &[
            "enroll",
            &clips.to_string_lossy(),
            "--model",
            &model().to_string_lossy(),
            "--out",
            &bank.to_string_lossy(),
        ],
        &["b.wav"],
    );
    assert!(
        std::fs::read(&bank).unwrap() == before,
        "old bank unchanged"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temp files: {leftovers:?}");
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    // `hark … | head -1`: the reader closes the pipe before hark prints. hark stops
    // writing, without a panic or an error line, and what it saved stays saved.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let mut child = hark()
        .args(["init-model", "--seed", "5", "--out"])
        .arg(&out)
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{:?}: {stderr}", done.status);
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(hark::model::Embedder::load(&out).is_ok());
}
