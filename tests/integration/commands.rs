//! Operator commands on a continuous source, against a real broker during a real-time
//! replay: `false_alarm` teaches the bank the last event's sound, `mute` holds events
//! back (and `mute 0` ends it), `learn_start`/`learn_stop` add what was heard between.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    Collector, Msg, Proc, SERIAL, concat_wav, hark, mosquitto, run_ok, shared_data, shipped_model,
};

fn reply(sub: &Collector, cmd: &str) -> serde_json::Value {
    sub.wait_for(Duration::from_secs(20), |m| {
        m.topic == "hark/ops/fan/cmd/result" && m.json()["cmd"] == cmd
    })
    .unwrap_or_else(|| panic!("no reply to {cmd}: {:?}", sub.all()))
    .json()
}

fn starts_between(msgs: &[Msg], from: f64, to: f64) -> usize {
    msgs.iter()
        .filter(|m| m.topic == "hark/ops/fan/event" && m.json()["type"] == "start")
        .filter(|m| (from..to).contains(&m.json()["t_start"].as_f64().unwrap()))
        .count()
}

/// `seconds` of each clip, one after the other (faded over 0.25 s), written to `out`;
/// returns where each part starts.
fn stream(dir: &Path, clips: &[&PathBuf], seconds: f64, out: &Path) -> (Vec<f64>, f64) {
    let parts: Vec<PathBuf> = clips
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let clip = hark::wav::Clip::read(f).unwrap();
            let x = clip.mono(Some(0));
            let n = (seconds * clip.sample_rate_hz as f64) as usize;
            let part = dir.join(format!("p{i}.wav"));
            hark::wav::write_mono_i16(&part, clip.sample_rate_hz, &x[..n.min(x.len())]).unwrap();
            part
        })
        .collect();
    concat_wav(&parts, out)
}

/// A config for source `fan` of node `ops` replaying `wav` in real time (× `speed`),
/// with a bank enrolled from fan/train. Returns the config, the bank, the model and
/// the bank's threshold.
fn fan_source(
    data: &Path,
    dir: &Path,
    wav: &Path,
    port: u16,
    speed: f64,
) -> (PathBuf, PathBuf, PathBuf, f32) {
    let bank = dir.join("fan.bank.safetensors");
    let model = shipped_model("default.safetensors");
    run_ok(
        hark()
            .arg("enroll")
            .arg(data.join("fan/train"))
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&bank),
    );
    let enrolled = hark::bank::NormalBank::load(
        &bank,
        hark::model::Embedder::load(&model).unwrap().hash(),
        &model,
    )
    .unwrap()
    .calibration
    .threshold;
    let cfg = format!(
        r#"node = "ops"
state_dir = "{dir}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[[source]]
name = "fan"
device = "file:{wav}"
realtime = true
replay_speed = {speed}
model = "{model}"
bank = "{bank}"
"#,
        dir = dir.display(),
        wav = wav.display(),
        model = model.display(),
        bank = bank.display(),
    );
    let config = dir.join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    (config, bank, model, enrolled)
}

/// Waits up to `timeout` for the replay to end, stops hark (it must exit cleanly) and
/// returns every message heard.
fn after_the_replay(sub: &Collector, proc: &mut Proc, timeout: Duration) -> Vec<Msg> {
    sub.wait_for(timeout, |m| {
        m.topic == "hark/ops/fan/health" && m.json()["ended"] == true
    })
    .expect("replay ends");
    std::thread::sleep(Duration::from_millis(500));
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", proc.stderr());
    sub.all()
}

#[test]
fn false_alarm_during_an_event_lets_it_end() {
    // A bank swap in the middle of an event once put in a fresh detector: the event
    // never ended, and the fault's next windows opened a second one over it.
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let test = data.join("fan/test");
    let normal = test.join("normal_id_00_20210210T012029.wav");
    let fault = test.join("anomaly_id_00_bladefault_20200318T205628.wav");
    // N A N N, 10 s each.
    let wav = dir.path().join("stream.wav");
    let (t, end) = stream(dir.path(), &[&normal, &fault, &normal, &normal], 10.0, &wav);
    let (config, ..) = fan_source(&data, dir.path(), &wav, port, 2.0);
    let sub = Collector::connect(port, "hark/ops/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let is_event =
        |m: &Msg, kind: &str| m.topic == "hark/ops/fan/event" && m.json()["type"] == kind;
    let Some(start) = sub.wait_for(Duration::from_secs(30), |m| is_event(m, "start")) else {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("no event: {}\n{:?}", proc.stderr(), sub.all());
    };
    sub.publish("hark/ops/fan/cmd", r#"{"cmd": "false_alarm"}"#);
    let fa = reply(&sub, "false_alarm");
    assert_eq!(fa["ok"], true, "{fa}");
    let msgs = after_the_replay(&sub, &mut proc, Duration::from_secs(40));
    let starts: Vec<&Msg> = msgs.iter().filter(|m| is_event(m, "start")).collect();
    assert_eq!(starts.len(), 1, "one fault, one event: {starts:?}");
    let id = &start.json()["id"];
    let ended = msgs
        .iter()
        .find(|m| is_event(m, "end") && &m.json()["id"] == id)
        .unwrap_or_else(|| panic!("event {id} has no end: {msgs:?}"));
    // Ended by clean windows after the fault, not closed because the input ended.
    let t_end = ended.json()["t_end"].as_f64().unwrap();
    assert!(
        t_end > t[2] && t_end < end - 5.0,
        "ended at {t_end}, the fault ends at {}, the stream at {end}",
        t[2]
    );
}

#[test]
fn false_alarm_mute_and_learning_over_mqtt() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let test = data.join("fan/test");
    let normal = test.join("normal_id_00_20210210T012029.wav");
    let a1 = test.join("anomaly_id_00_bladefault_20200318T205628.wav");
    let a2 = test.join("anomaly_id_00_bladefault_20200318T205711.wav");
    // N A1 N A1 N A2 N A2 N, 6 s each.
    let order: Vec<&PathBuf> = vec![
        &normal, &a1, &normal, &a1, &normal, &a2, &normal, &a2, &normal,
    ];
    let wav = dir.path().join("stream.wav");
    let (t, _) = stream(dir.path(), &order, 6.0, &wav);
    let (config, bank, model, enrolled) = fan_source(&data, dir.path(), &wav, port, 1.5);
    let sub = Collector::connect(port, "hark/ops/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let cmd = |c: &str| sub.publish("hark/ops/fan/cmd", c);
    // Learning while armed: the first normal stretch is added to the bank.
    sub.wait_for(Duration::from_secs(10), |m| m.topic == "hark/ops/fan/state")
        .expect("state");
    cmd(r#"{"cmd": "learn_start"}"#);
    assert_eq!(reply(&sub, "learn_start")["ok"], true);
    std::thread::sleep(Duration::from_secs(2));
    cmd(r#"{"cmd": "learn_stop"}"#);
    let learned = reply(&sub, "learn_stop");
    assert_eq!(learned["ok"], true, "{learned}");
    let size0 = learned["bank_size"].as_u64().unwrap();
    // A few seconds more of a condition the bank knows barely move its threshold: the
    // rebuild keeps overlapping windows out of each other's calibration score, as
    // enrolment did. (Measured: 1.911 → 1.877; before that fix it fell to 1.756.)
    let relearned = learned["threshold"].as_f64().unwrap() as f32;
    assert!(
        relearned > 0.95 * enrolled,
        "threshold {enrolled} after enrol, {relearned} after learn_stop"
    );
    // The first A1 raises an event; once it ends, call it a false alarm.
    let end = sub.wait_for(Duration::from_secs(30), |m| {
        m.topic == "hark/ops/fan/event" && m.json()["type"] == "end"
    });
    if end.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("no event end: {}\n{:?}", proc.stderr(), sub.all());
    }
    cmd(r#"{"cmd": "false_alarm"}"#);
    let fa = reply(&sub, "false_alarm");
    assert_eq!(fa["ok"], true, "{fa}");
    assert!(fa["bank_size"].as_u64().unwrap() > size0, "{fa}");
    // Mute now: the first A2 must raise no event, though the state still says anomaly.
    cmd(r#"{"cmd": "mute", "minutes": 10}"#);
    assert_eq!(reply(&sub, "mute")["ok"], true);
    let a2_state = sub.wait_for(Duration::from_secs(40), |m| {
        m.topic == "hark/ops/fan/state"
            && m.json()["state"] == "anomaly"
            && m.json()["t"].as_f64().unwrap_or(0.0) > t[5]
    });
    assert!(a2_state.is_some(), "A2 scored as anomaly: {:?}", sub.all());
    sub.wait_for(Duration::from_secs(20), |m| {
        m.topic == "hark/ops/fan/state"
            && m.json()["state"] == "normal"
            && m.json()["t"].as_f64().unwrap_or(0.0) > t[6]
    })
    .expect("back to normal after the first A2");
    cmd(r#"{"cmd": "mute", "minutes": 0}"#);
    sub.wait_for(Duration::from_secs(20), |m| {
        m.topic == "hark/ops/fan/cmd/result" && m.json()["minutes"] == 0.0
    })
    .expect("unmuted");
    let msgs = after_the_replay(&sub, &mut proc, Duration::from_secs(30));
    // An event's t_start is the start of its first window over threshold: up to one
    // window (`shipped_window_s`) before the clip that caused it.
    assert!(
        starts_between(&msgs, t[1] - 2.5, t[2]) >= 1,
        "A1 raises an event"
    );
    assert_eq!(
        starts_between(&msgs, t[3] - 2.5, t[4]),
        0,
        "A1 again, after false_alarm: no event"
    );
    assert_eq!(
        starts_between(&msgs, t[5] - 2.5, t[6]),
        0,
        "A2 while muted: no event"
    );
    assert!(
        starts_between(&msgs, t[7] - 2.5, t[8]) >= 1,
        "A2 after the mute: an event"
    );
    // The bank on disk has the additions.
    let saved = hark::bank::NormalBank::load(
        &bank,
        hark::model::Embedder::load(&model).unwrap().hash(),
        &model,
    )
    .unwrap();
    assert_eq!(saved.len() as u64, fa["bank_size"].as_u64().unwrap());
}
