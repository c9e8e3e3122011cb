//! Operator experience: progress bars only for a person at a terminal, `score --plot`
//! on real recordings, and `hark status` reading back what a running node retained.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{
    Collector, Msg, SERIAL, concat_wav, enrol, free_port, hark, json_rows, mosquitto, run_ok,
    scoring_config, shared_data, shipped_model, system_binary,
};

/// Colours `hark score --plot` draws with (src/commands/plot.rs): event spans,
/// the threshold line, good and defective knocks.
const EVENT_FILL: &str = "fill=\"#F5B7B1\"";
const THRESHOLD_STROKE: &str = "stroke=\"#E67E22\"";
const GOOD_FILL: &str = "fill=\"#27AE60\"";
const DEFECTIVE_FILL: &str = "fill=\"#CB4335\"";

/// A bank enrolled from fan/train with the shipped model, and a config using it.
fn fan_config(data: &Path, dir: &Path) -> PathBuf {
    let model = shipped_model("default.safetensors");
    let bank = enrol(dir, "fan", &data.join("fan"), &model);
    scoring_config(dir, "fan", &model, &bank, "")
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
    let threshold = rows
        .last()
        .and_then(|r| r["threshold"].as_f64())
        .unwrap_or(-1.0);
    // The legend prints it to 5 decimals (the JSON has f32 noise past that).
    let legend = format!("threshold {}", &format!("{threshold:.5}")[..4]);
    assert!(
        threshold > 0.0 && svg.contains(&legend),
        "the threshold in the legend: no {legend:?}"
    );
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
    let (model, bank) = crate::tap::enrol_station(&data, dir.path());
    // A station that would much rather knock twice than miss a crack.
    let cfg = scoring_config(
        dir.path(),
        "station",
        &model,
        &bank,
        "mode = \"tap\"\nthreshold_scale = 0.5\n",
    );
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

/// The latest message on `topic`, as JSON.
fn last_json(msgs: &[Msg], topic: &str) -> serde_json::Value {
    msgs.iter()
        .rev()
        .find(|m| m.topic == topic)
        .unwrap_or_else(|| panic!("nothing on {topic}"))
        .json()
}

#[test]
fn status_reads_back_what_a_running_node_retained() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let Some(mosquitto_pub) = system_binary("mosquitto_pub") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Learn on a normal clip, then hear a blade fault; replayed as fast as it goes.
    let wav = dir.path().join("stream.wav");
    let (starts, _) = concat_wav(
        &[
            data.join("fan/test/normal_id_00_20210210T012029.wav"),
            data.join("fan/test/anomaly_id_00_bladefault_20200318T205628.wav"),
        ],
        &wav,
    );
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"ops\"\nstate_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
             health_interval_s = 0.5\n[[source]]\nname = \"fan\"\ndevice = \"file:{}\"\n\
             realtime = false\nmodel = \"{}\"\nlearn_seconds = {}\n",
            dir.path().display(),
            wav.display(),
            shipped_model("default.safetensors").display(),
            starts[1] - 1.0
        ),
    )
    .unwrap();
    let sub = Collector::connect(port, "hark/ops/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let ended = sub.wait_for(Duration::from_secs(120), |m| {
        m.topic == "hark/ops/fan/health" && m.json()["ended"] == true
    });
    if ended.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("replay never ended: {}", proc.stderr());
    }
    // The latest event, retained as the main branch's `last_event` will be.
    let event = r#"{"id":"fan-1","type":"end","ts_start":"2026-01-02T03:04:05.000Z","ts_end":"2026-01-02T03:04:35.000Z","score_max":0.125,"threshold":0.0107,"model":"default.safetensors","bank":"fan.bank.safetensors","explain":{"text":"+12 dB at 2.0-3.1 kHz","nearest":{"clip":"live:2026-01-02T00:00:00.000Z","t":4.5}}}"#;
    run_ok(
        Command::new(&mosquitto_pub)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-r"])
            .args(["-t", "hark/ops/fan/last_event", "-m", event]),
    );
    // Let the periodic health and state settle after the end of the input.
    std::thread::sleep(Duration::from_millis(1500));
    let out = run_ok(hark().args(["status", "--json", "--config"]).arg(&config));
    let msgs = sub.all();
    let rows = json_rows(&out.stdout);
    assert_eq!(rows.len(), 1, "one object per source: {rows:?}");
    let s = &rows[0];
    assert_eq!(s["source"], "fan");
    assert_eq!(s["node"], "ops");
    assert_eq!(s["configured"], true);
    assert_eq!(s["availability"], "online");
    let state = last_json(&msgs, "hark/ops/fan/state");
    for key in ["state", "score", "threshold", "ts"] {
        assert_eq!(s["state"][key], state[key], "state.{key}: {s} vs {state}");
    }
    assert!(
        ["normal", "anomaly"].contains(&s["state"]["state"].as_str().unwrap()),
        "armed after learning: {s}"
    );
    let health = last_json(&msgs, "hark/ops/fan/health");
    for key in [
        "capture_ok",
        "sample_rate",
        "dropped_samples",
        "dropped_windows",
        "level_dbfs",
        "reopens",
        "storage_ok",
        "windows",
        "ended",
    ] {
        assert_eq!(
            s["health"][key], health[key],
            "health.{key}: {s} vs {health}"
        );
    }
    assert_eq!(
        s["last_event"],
        serde_json::from_str::<serde_json::Value>(event).unwrap()
    );
    // The summary for people.
    let text = run_ok(hark().args(["status", "--config"]).arg(&config));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "node ops on 127.0.0.1:{port} (prefix hark): online"
        )),
        "{text}"
    );
    let word = s["state"]["state"].as_str().unwrap().to_uppercase();
    assert!(text.contains(&format!("fan: {word}")), "{text}");
    assert!(
        text.contains("last event end, started 2026-01-02T03:04:05.000Z"),
        "{text}"
    );
    assert!(text.contains("score_max 0.12500"), "{text}");
    assert!(
        text.contains(
            "why        +12 dB at 2.0-3.1 kHz (nearest normal: live:2026-01-02T00:00:00.000Z)"
        ),
        "{text}"
    );
    assert!(text.contains("capture    ok, 16000 Hz"), "{text}");
    assert!(
        text.contains("dropped    0 samples, 0 windows; reopens 0"),
        "{text}"
    );
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", proc.stderr());
}

#[test]
fn status_names_an_unreachable_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        format!("node = \"ops\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let out = hark()
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
