//! `hark run` end to end on real parts: a `file:` source replays real fan recordings
//! (enrolment clips, then a normal clip, then a blade fault) into the daemon, which
//! learns, arms, and publishes to a real broker that a subscriber watches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    Collector, Proc, SERIAL, concat_wav, free_port, mosquitto, shared_data, shipped_model,
    spawn_hark, wait_for_port,
};

struct Stream {
    wav: PathBuf,
    learn_s: f64,
    normal_start: f64,
    anomaly_start: f64,
}

fn build_stream(data: &Path, dir: &Path) -> Stream {
    let mut files = crate::util::sorted_files(&data.join("fan/train"));
    let n_train = files.len();
    files.push(data.join("fan/test/normal_id_00_20210210T012029.wav"));
    files.push(data.join("fan/test/anomaly_id_00_bladefault_20200318T205628.wav"));
    let wav = dir.join("stream.wav");
    let (starts, _) = concat_wav(&files, &wav);
    Stream {
        wav,
        learn_s: starts[n_train],
        normal_start: starts[n_train],
        anomaly_start: starts[n_train + 1],
    }
}

fn write_config(dir: &Path, s: &Stream, mqtt: &str) -> PathBuf {
    let model = shipped_model("default.safetensors");
    let cfg = format!(
        r#"node = "e2e"
state_dir = "{dir}"
[mqtt]
{mqtt}
health_interval_s = 0.5
[[source]]
name = "fan"
device = "file:{wav}"
realtime = false
model = "{model}"
learn_seconds = {learn}
"#,
        dir = dir.display(),
        wav = s.wav.display(),
        model = model.display(),
        learn = s.learn_s,
    );
    let path = dir.join("hark.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// The assertions both broker flavours share.
fn check_flow(sub: &Collector, s: &Stream, mut proc: Proc, dir: &Path) {
    let t = Duration::from_secs(120);
    let start = sub.wait_for(t, |m| {
        m.topic == "hark/e2e/fan/event"
            && m.json()["type"] == "start"
            && m.json()["t_start"].as_f64().unwrap_or(0.0) >= s.normal_start
    });
    let Some(start) = start else {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!(
            "no anomaly event; stderr: {}\nmessages: {:?}",
            proc.stderr(),
            sub.all()
        );
    };
    let ev = start.json();
    let t_start = ev["t_start"].as_f64().unwrap();
    assert!(
        t_start >= s.anomaly_start - crate::util::shipped_window_s(),
        "event began at {t_start} s, before the anomaly at {} s (normal clip from {} s): {ev}",
        s.anomaly_start,
        s.normal_start
    );
    assert!(
        ev["score_max"].as_f64().unwrap() > ev["threshold"].as_f64().unwrap(),
        "{ev}"
    );
    for key in ["id", "ts_start", "model", "bank"] {
        assert!(!ev[key].is_null(), "event lacks {key}: {ev}");
    }
    // The explanation compares against a window the daemon learned from this stream.
    let x = &ev["explain"];
    let nearest = &x["nearest"];
    assert!(
        nearest["clip"]
            .as_str()
            .unwrap_or_default()
            .starts_with("live:")
            && nearest["t"].as_f64().unwrap_or(f64::MAX) < s.learn_s,
        "nearest normal window: {x}"
    );
    let band = &x["bands"][0];
    let (lo, hi) = (
        band["lo_hz"].as_f64().unwrap(),
        band["hi_hz"].as_f64().unwrap(),
    );
    // The fan was recorded at 16 kHz: the band starts below its 8 kHz Nyquist (the
    // model's own bands reach 24 kHz).
    assert!(
        (50.0..8000.0).contains(&lo) && lo < hi && hi <= 24000.0,
        "{x}"
    );
    assert!(band["db"].as_f64().unwrap().abs() >= 3.0, "{x}");
    // Wait for the replay to finish so every window of the normal clip was scored.
    sub.wait_for(t, |m| {
        m.topic == "hark/e2e/fan/health" && m.json()["ended"] == true
    })
    .expect("replay ends");
    std::thread::sleep(Duration::from_millis(500));
    let msgs = sub.all();
    let early: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "hark/e2e/fan/event" && m.json()["type"] == "start")
        .filter(|m| {
            m.json()["t_start"].as_f64().unwrap()
                < s.anomaly_start - crate::util::shipped_window_s()
        })
        .collect();
    assert!(early.is_empty(), "events before the anomaly: {early:?}");
    let states: Vec<String> = msgs
        .iter()
        .filter(|m| m.topic == "hark/e2e/fan/state")
        .map(|m| m.json()["state"].as_str().unwrap_or("").to_string())
        .collect();
    let learning = states
        .iter()
        .position(|s| s == "learning")
        .expect("state learning");
    let normal = states
        .iter()
        .position(|s| s == "normal")
        .expect("state normal");
    assert!(learning < normal, "learning before normal: {states:?}");
    assert!(states.contains(&"anomaly".to_string()), "{states:?}");
    // A healthy file source never reports a fault (it once did, racing its own start).
    assert!(!states.contains(&"fault".to_string()), "{states:?}");
    let health = msgs
        .iter()
        .rev()
        .find(|m| m.topic == "hark/e2e/fan/health")
        .unwrap()
        .json();
    for key in [
        "capture_ok",
        "sample_rate",
        "dropped_samples",
        "dropped_windows",
        "level_dbfs",
        "clipping",
    ] {
        assert!(!health[key].is_null(), "health lacks {key}: {health}");
    }
    assert_eq!(health["dropped_windows"], 0, "{health}");
    assert!(
        dir.join("fan.bank.safetensors").exists(),
        "learned bank saved"
    );
    assert!(
        msgs.iter()
            .any(|m| m.topic == "hark/e2e/availability" && m.payload == "online")
    );
    let status = proc
        .terminate(Duration::from_secs(10))
        .expect("hark exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        proc.stderr()
    );
    let offline = sub.wait_for(Duration::from_secs(5), |m| {
        m.topic == "hark/e2e/availability" && m.payload == "offline"
    });
    assert!(offline.is_some(), "offline after SIGTERM: {:?}", sub.all());
    check_evidence(&ev, s);
}

/// The event's evidence clip holds the stream's own samples from 5 s before the event.
fn check_evidence(ev: &serde_json::Value, s: &Stream) {
    let t_start = ev["t_start"].as_f64().unwrap();
    let (got, _) = crate::util::evidence_clip(ev, &s.wav, t_start - 5.0, 32);
    // Pre-roll plus the event to the end of the stream (it ends during the anomaly).
    assert!(
        got.len() as f64 / 16000.0 > 5.0 + crate::util::shipped_window_s(),
        "{} samples",
        got.len()
    );
}

#[test]
fn end_to_end_against_mosquitto() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s = build_stream(&data, dir.path());
    let config = write_config(
        dir.path(),
        &s,
        &format!("url = \"mqtt://127.0.0.1:{port}\""),
    );
    let sub = Collector::connect(port, "hark/#", Duration::from_secs(5));
    let proc = spawn_hark(&config);
    sub.wait_for(Duration::from_secs(10), |m| {
        m.topic == "hark/e2e/availability" && m.payload == "online"
    })
    .expect("online");
    // Retained availability: a second subscriber that arrives later still sees it.
    let late = Collector::connect(port, "hark/e2e/availability", Duration::from_secs(5));
    let online = late.wait_for(Duration::from_secs(10), |m| m.payload == "online");
    assert!(online.is_some_and(|m| m.retain), "retained online");
    check_flow(&sub, &s, proc, dir.path());
}

#[test]
fn end_to_end_against_the_embedded_broker() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s = build_stream(&data, dir.path());
    let port = free_port();
    let config = write_config(dir.path(), &s, &format!("embedded_port = {port}"));
    let proc = spawn_hark(&config);
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "embedded broker listens"
    );
    let sub = Collector::connect(port, "hark/#", Duration::from_secs(5));
    check_flow(&sub, &s, proc, dir.path());
}

#[test]
fn an_absent_broker_never_blocks_detection_or_shutdown() {
    // No broker listens on the configured port: capture, dsp and inference must carry
    // on (the bank is learned and saved) and SIGTERM must still end hark cleanly.
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s = build_stream(&data, dir.path());
    let config = write_config(
        dir.path(),
        &s,
        &format!("url = \"mqtt://127.0.0.1:{}\"", free_port()),
    );
    let mut proc = spawn_hark(&config);
    let bank = dir.path().join("fan.bank.safetensors");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !bank.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no bank learned without a broker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = proc
        .terminate(Duration::from_secs(10))
        .expect("exits after SIGTERM without a broker");
    assert!(status.success(), "{status:?}: {}", proc.stderr());
    assert!(proc.stderr().contains("mqtt down"), "the outage is logged");
}

#[test]
fn two_sources_run_side_by_side_with_their_own_banks_and_topics() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let s = build_stream(&data, dir.path());
    let config = write_config(
        dir.path(),
        &s,
        &format!("url = \"mqtt://127.0.0.1:{port}\""),
    );
    // A second source on the same recording, mixed from all channels and learning on
    // its own: it must get its own bank file and its own topics.
    let second = format!(
        "[[source]]\nname = \"fan2\"\ndevice = \"file:{}\"\nrealtime = false\nmodel = \"{}\"\nlearn_seconds = {}\n",
        s.wav.display(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/default.safetensors")
            .display(),
        s.learn_s
    );
    let text = std::fs::read_to_string(&config).unwrap() + &second;
    std::fs::write(&config, text).unwrap();
    let sub = Collector::connect(port, "hark/#", Duration::from_secs(5));
    let mut proc = spawn_hark(&config);
    for source in ["fan", "fan2"] {
        let topic = format!("hark/e2e/{source}/event");
        let ev = sub.wait_for(Duration::from_secs(120), |m| {
            m.topic == topic && m.json()["type"] == "start"
        });
        assert!(ev.is_some(), "no event on {topic}: {:?}", sub.all());
        assert!(
            dir.path()
                .join(format!("{source}.bank.safetensors"))
                .exists()
        );
    }
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}
