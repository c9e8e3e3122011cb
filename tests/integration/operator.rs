//! Operator experience: progress bars only for a person at a terminal, and
//! `score --plot` on real recordings.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{concat_wav, hark, run_ok, shared_data, shipped_model, system_binary};

/// Colours `hark score --plot` draws with (src/commands/plot.rs): event spans,
/// the threshold line, good and defective knocks.
const EVENT_FILL: &str = "fill=\"#F5B7B1\"";
const THRESHOLD_STROKE: &str = "stroke=\"#E67E22\"";
const GOOD_FILL: &str = "fill=\"#27AE60\"";
const DEFECTIVE_FILL: &str = "fill=\"#CB4335\"";

/// A bank enrolled from fan/train with the shipped model, and a config using it.
fn fan_config(data: &Path, dir: &Path) -> PathBuf {
    let model = shipped_model("default.safetensors");
    let bank = dir.join("fan.bank.safetensors");
    run_ok(
        hark()
            .arg("enroll")
            .arg(data.join("fan"))
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&bank),
    );
    let cfg = dir.join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[source]]\nname = \"fan\"\nmodel = \"{}\"\nbank = \"{}\"\n",
            model.display(),
            bank.display()
        ),
    )
    .unwrap();
    cfg
}

fn json_rows(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn score_plot_draws_the_threshold_and_one_span_per_event() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = fan_config(&data, dir.path());
    let wav = dir.path().join("normal-then-fault.wav");
    concat_wav(
        &[
            data.join("fan/test/normal_id_00_20210210T012029.wav"),
            data.join("fan/test/anomaly_id_00_bladefault_20200318T205628.wav"),
        ],
        &wav,
    );
    let svg = dir.path().join("score.svg");
    let out = run_ok(
        hark()
            .arg("score")
            .arg(&wav)
            .arg("--config")
            .arg(&cfg)
            .arg("--json")
            .arg("--plot")
            .arg(&svg),
    );
    // Events as the printed decisions have them: each rise of `anomaly`.
    let rows = json_rows(&out.stdout);
    let flags: Vec<bool> = rows.iter().map(|r| r["anomaly"] == true).collect();
    let events = flags
        .iter()
        .enumerate()
        .filter(|&(i, &a)| a && (i == 0 || !flags[i - 1]))
        .count();
    assert!(events >= 1, "the blade fault raises an event: {rows:?}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<title>hark score: normal-then-fault.wav</title>"));
    assert!(
        svg.contains("normal-then-fault.wav"),
        "file name in the caption"
    );
    assert!(svg.contains(THRESHOLD_STROKE), "a threshold line");
    assert!(svg.contains("threshold 0.0"), "the threshold in the legend");
    assert!(svg.contains("time (seconds of audio)"), "x axis label");
    // One rectangle per event span, plus the legend's swatch.
    assert_eq!(
        svg.matches(EVENT_FILL).count(),
        events + 1,
        "{events} event span(s) and one legend swatch"
    );
    assert!(
        !svg.contains(GOOD_FILL),
        "no knock markers in continuous mode"
    );
}

#[test]
fn score_plot_in_tap_mode_marks_every_knock_with_its_verdict() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("knocks.wav");
    crate::tap::knock_stream(&data, &wav, 8);
    let model = shipped_model("tap.safetensors");
    let bank = dir.path().join("station.bank.safetensors");
    run_ok(
        hark()
            .arg("enroll")
            .arg(data.join("bottles"))
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&bank),
    );
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            // A station that would rather knock twice than miss a crack (README).
            "[[source]]\nname = \"station\"\nmode = \"tap\"\nmodel = \"{}\"\nbank = \"{}\"\n\
             threshold_scale = 0.5\n",
            model.display(),
            bank.display()
        ),
    )
    .unwrap();
    let svg = dir.path().join("knocks.svg");
    let out = run_ok(
        hark()
            .arg("score")
            .arg(&wav)
            .arg("--config")
            .arg(&cfg)
            .args(["--json", "--plot"])
            .arg(&svg),
    );
    let rows = json_rows(&out.stdout);
    let defective = rows.iter().filter(|r| r["anomaly"] == true).count();
    let good = rows.len() - defective;
    assert!(good >= 1 && defective >= 1, "{rows:?}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(THRESHOLD_STROKE));
    // One marker per knock in its verdict's colour, plus one legend marker each.
    assert_eq!(svg.matches(GOOD_FILL).count(), good + 1);
    assert_eq!(svg.matches(DEFECTIVE_FILL).count(), defective + 1);
    assert!(!svg.contains(EVENT_FILL), "no event spans in tap mode");
}

#[test]
fn progress_bars_only_for_a_person_at_a_terminal() {
    let Some(data) = shared_data() else { return };
    // `script` gives hark a pseudo-terminal, as a person's shell would.
    let Some(script) = system_binary("script") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clip = data.join("fan/test/normal_id_00_20210210T012029.wav");
    let out = dir.path().join("rec.wav");
    let record = |flags: &str, env: &str| -> String {
        let cmd = format!(
            "{env} '{}' record --device 'file:{}' --seconds 3 --out '{}' {flags}",
            env!("CARGO_BIN_EXE_hark"),
            clip.display(),
            out.display()
        );
        let o = Command::new(&script)
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let shown = record("", "");
    assert!(
        shown.contains("recording") && shown.contains("/3.0 s"),
        "a bar with seconds recorded: {shown:?}"
    );
    assert!(!record("--quiet", "").contains("/3.0 s"), "--quiet");
    assert!(
        !record("", "RUST_LOG=hark=warn").contains("/3.0 s"),
        "log level above info"
    );
    // Not a terminal: no bar, only the log line and the result.
    let piped = run_ok(
        hark()
            .arg("record")
            .arg("--device")
            .arg(format!("file:{}", clip.display()))
            .args(["--seconds", "3", "--out"])
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("/3.0 s") && !stderr.contains('\r'),
        "{stderr:?}"
    );
    assert!(String::from_utf8_lossy(&piped.stdout).contains("wrote"));
}
