//! Operator commands on a continuous source, against a real broker during a real-time
//! replay: `false_alarm` teaches the bank the last event's sound, `mute` holds events
//! back (and `mute 0` ends it), `learn_start`/`learn_stop` add what was heard between.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{
    Collector, Msg, SERIAL, concat_wav, hark, mosquitto, run_ok, shared_data, shipped_model,
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
    let parts: Vec<PathBuf> = order
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let clip = hark::wav::Clip::read(f).unwrap();
            let x = clip.mono(Some(0));
            let out = dir.path().join(format!("p{i}.wav"));
            hark::wav::write_mono_i16(&out, clip.sample_rate_hz, &x[..6 * 16000]).unwrap();
            out
        })
        .collect();
    let wav = dir.path().join("stream.wav");
    let (t, _) = concat_wav(&parts, &wav);
    let bank = dir.path().join("fan.bank.safetensors");
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
replay_speed = 1.5
model = "{model}"
bank = "{bank}"
"#,
        dir = dir.path().display(),
        wav = wav.display(),
        model = model.display(),
        bank = bank.display(),
    );
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
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
    sub.wait_for(Duration::from_secs(30), |m| {
        m.topic == "hark/ops/fan/health" && m.json()["ended"] == true
    })
    .expect("replay ends");
    std::thread::sleep(Duration::from_millis(500));
    let msgs = sub.all();
    // An event's t_start is the start of its first window over threshold: up to one
    // window (`shipped_window_s`) before the clip that caused it.
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", proc.stderr());
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
