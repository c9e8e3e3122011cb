//! Field faults survived without a restart: a source whose input fails mid-stream goes
//! to `fault`, is reopened by its id with backoff, and comes back to `normal` by
//! itself, while the other source keeps running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{
    Collector, Msg, Proc, SERIAL, concat_wav, hark, mosquitto, shared_data, shipped_model,
};

/// A fan stream: the enrolment clips, then a normal clip.
fn fan_stream(data: &Path, out: &Path) -> (f64, f64) {
    let mut files = crate::util::sorted_files(&data.join("fan/train"));
    let n_train = files.len();
    files.push(data.join("fan/test/normal_id_00_20210210T012029.wav"));
    let (starts, total) = concat_wav(&files, out);
    (starts[n_train], total)
}

fn states(msgs: &[Msg], topic: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.topic == topic)
        .map(|m| m.json()["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_failed_input_is_reopened_and_the_other_source_runs_on() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.wav");
    let (learn_s, total_s) = fan_stream(&data, &full);
    // The failing input: the same file cut short past the end of learning, as if the
    // device vanished there. Its header still promises the whole length, so reading on
    // fails (a truncated read), exactly like a recorder's file still being written.
    let bytes = std::fs::read(&full).unwrap();
    let cut_s = learn_s + 0.5 * (total_s - learn_s);
    let cut = 44 + 2 * (cut_s * 16000.0) as usize;
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, &bytes[..cut]).unwrap();
    let good = data.join("fan/test/normal_id_00_20210210T012029.wav");
    let cfg = format!(
        r#"node = "faults"
state_dir = "{dir}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
health_interval_s = 0.3
[[source]]
name = "bad"
device = "file:{bad}"
realtime = false
model = "{model}"
learn_seconds = {learn_s}
[[source]]
name = "good"
device = "file:{good}"
realtime = true
model = "{model}"
learn_seconds = 4
"#,
        dir = dir.path().display(),
        bad = bad.display(),
        good = good.display(),
        model = shipped_model("default.safetensors").display(),
    );
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    let sub = Collector::connect(port, "hark/faults/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let t = Duration::from_secs(60);
    let fault = sub.wait_for(t, |m| {
        m.topic == "hark/faults/bad/state" && m.json()["state"] == "fault"
    });
    if fault.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("no fault state; stderr: {}\n{:?}", proc.stderr(), sub.all());
    }
    sub.wait_for(t, |m| {
        m.topic == "hark/faults/bad/health" && m.json()["capture_ok"] == false
    })
    .expect("health says capture_ok = false");
    let faulted_at = sub.all().len();
    // The other source goes on while this one is down: its window count grows.
    let good_windows = |from: usize| -> Vec<u64> {
        sub.all()[from..]
            .iter()
            .filter(|m| m.topic == "hark/faults/good/health")
            .filter_map(|m| m.json()["windows"].as_u64())
            .collect()
    };
    let grew = |w: &[u64]| w.len() >= 2 && w.last() > w.first();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !grew(&good_windows(faulted_at)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let w = good_windows(faulted_at);
    assert!(
        grew(&w),
        "the good source stalled while the bad one was down: windows {w:?}"
    );
    // The device "comes back": the whole file is there again. No restart.
    std::fs::write(dir.path().join("whole.tmp"), &bytes).unwrap();
    std::fs::rename(dir.path().join("whole.tmp"), &bad).unwrap();
    let back = sub.wait_for(t, |m| {
        m.topic == "hark/faults/bad/health"
            && m.json()["capture_ok"] == true
            && m.json()["reopens"].as_u64() >= Some(1)
    });
    if back.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("never reopened; stderr: {}\n{:?}", proc.stderr(), sub.all());
    }
    sub.wait_for(t, |m| {
        m.topic == "hark/faults/bad/health" && m.json()["ended"] == true
    })
    .expect("the reopened file plays to its end");
    let msgs = sub.all();
    let bad_states = states(&msgs, "hark/faults/bad/state");
    let f = bad_states.iter().position(|s| s == "fault").unwrap();
    assert!(
        bad_states[f..].iter().any(|s| s == "normal"),
        "bad source back to normal after the fault: {bad_states:?}"
    );
    // (Inference may still be learning from queued windows when capture fails.)
    assert_eq!(bad_states[0], "learning", "{bad_states:?}");
    // Resumed where it failed: the whole stream was scored once, not replayed from 0.
    let last = msgs
        .iter()
        .rev()
        .find(|m| m.topic == "hark/faults/bad/health")
        .unwrap()
        .json();
    let windows = last["windows"].as_u64().unwrap() as f64;
    let expected = (total_s - crate::util::shipped_window_s()) / 0.256;
    assert!(
        (windows - expected).abs() < 0.05 * expected,
        "windows {windows}, expected about {expected:.0} (resume, not restart): {last}"
    );
    assert!(!states(&msgs, "hark/faults/good/state").contains(&"fault".into()));
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    let stderr = proc.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains("reopening in") && stderr.contains("bad.wav"),
        "the log says what failed and that it retries: {stderr}"
    );
}

/// Writes the first `seconds` of each clip as a clip of its own; returns their paths.
fn trimmed(files: &[PathBuf], seconds: f64, dir: &Path) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let clip = hark::wav::Clip::read(f).unwrap();
            let n = (seconds * clip.sample_rate_hz as f64) as usize;
            let x = clip.mono(Some(0));
            let out = dir.join(format!("part{i:02}.wav"));
            hark::wav::write_mono_i16(&out, clip.sample_rate_hz, &x[..n.min(x.len())]).unwrap();
            out
        })
        .collect()
}

#[test]
fn a_broker_outage_loses_no_event() {
    let Some(data) = shared_data() else { return };
    let Some(_) = crate::util::system_binary("mosquitto") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let test = data.join("fan/test");
    let normals = [
        "normal_id_00_20210210T012029.wav",
        "normal_id_00_20210210T012217.wav",
    ];
    let anomalies = [
        "anomaly_id_00_bladefault_20200318T205628.wav",
        "anomaly_id_00_bladefault_20200318T205711.wav",
        "anomaly_id_00_bladefault_20200318T205806.wav",
        "anomaly_id_00_tapping_20200318T205340.wav",
    ];
    // normal, anomaly, normal, ... normal: four anomalies 8 s long, 8 s apart.
    let mut parts = vec![test.join(normals[0])];
    for (i, a) in anomalies.iter().enumerate() {
        parts.push(test.join(a));
        parts.push(test.join(normals[(i + 1) % 2]));
    }
    let parts = trimmed(&parts, 8.0, dir.path());
    let wav = dir.path().join("stream.wav");
    let (starts, total_s) = concat_wav(&parts, &wav);
    let bank = dir.path().join("fan.bank.safetensors");
    let model = shipped_model("default.safetensors");
    crate::util::run_ok(
        hark()
            .arg("enroll")
            .arg(data.join("fan/train"))
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&bank),
    );
    let port = crate::util::free_port();
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir(&broker_dir).unwrap();
    let mut broker = crate::util::persistent_mosquitto(port, &broker_dir).unwrap();
    let cfg = format!(
        r#"node = "outage"
state_dir = "{dir}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_max_s = 2.0
[[source]]
name = "fan"
device = "file:{wav}"
realtime = true
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
    let sub = Collector::connect_persistent(port, "hark/outage/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let is_event = |m: &Msg| m.topic == "hark/outage/fan/event";
    // The first anomaly arrives live; then the broker goes away for 30 s.
    let first = sub.wait_for(Duration::from_secs(30), |m| {
        is_event(m) && m.json()["type"] == "start"
    });
    if first.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("no live event; stderr: {}\n{:?}", proc.stderr(), sub.all());
    }
    assert!(broker.terminate(Duration::from_secs(5)).is_some());
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    let mut broker = crate::util::persistent_mosquitto(port, &broker_dir).unwrap();
    let up_at = down_at.elapsed().as_secs_f64();
    // The replay has ended once health says so; give delivery a moment more.
    let ended = sub.wait_for(Duration::from_secs(60), |m| {
        m.topic == "hark/outage/fan/health" && m.json()["ended"] == true
    });
    if ended.is_none() {
        let _ = proc.terminate(Duration::from_secs(5));
        let tail: Vec<_> = sub.all().into_iter().rev().take(8).collect();
        panic!(
            "replay never ended; stderr: {}\nlast: {tail:?}",
            proc.stderr()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    let stderr = proc.stderr();
    assert!(status.success(), "{status:?}: {stderr}");
    let events: Vec<serde_json::Value> = sub
        .all()
        .iter()
        .filter(|m| is_event(m))
        .map(|m| m.json())
        .collect();
    // Every anomaly has its start and its end, each at least once, by the same id.
    let mut ids: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "start")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        anomalies.len(),
        "one event per anomaly (at {:?} s of {total_s:.0} s; broker down from about {:.0} s for {up_at:.0} s): {events:#?}\n{stderr}",
        &starts[1..],
        first.unwrap().json()["t_start"],
    );
    for id in &ids {
        assert!(
            events.iter().any(|e| e["id"] == *id && e["type"] == "end"),
            "event {id} has no end: {events:#?}"
        );
    }
    // What happened while the broker was away came later, marked replayed, in order.
    let replayed: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["replayed"] == true).collect();
    assert!(
        replayed.iter().filter(|e| e["type"] == "start").count() >= 1,
        "at least one anomaly fell in the outage and was replayed: {events:#?}"
    );
    let t: Vec<f64> = replayed
        .iter()
        .filter(|e| e["type"] == "start")
        .map(|e| e["t_start"].as_f64().unwrap())
        .collect();
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "replayed in order: {t:?}"
    );
    assert!(broker.terminate(Duration::from_secs(5)).is_some());
}

/// What a fake systemd heard on its notify socket, with arrival times.
fn notify_listener(path: &Path) -> std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>> {
    let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h2 = heard.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            h2.lock().unwrap().push((Instant::now(), msg));
        }
    });
    heard
}

/// Runs hark for `seconds` under a fake systemd watchdog of 4 s; returns what it sent
/// and its stderr.
fn under_watchdog(
    data: &Path,
    stall: Option<&str>,
    seconds: u64,
) -> (Vec<(Instant, String)>, String, Instant) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let heard = notify_listener(&socket);
    let wav = data.join("fan/test/normal_id_00_20210210T012029.wav");
    let cfg = format!(
        r#"node = "dog"
state_dir = "{dir}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[[source]]
name = "fan"
device = "file:{wav}"
realtime = true
model = "{model}"
learn_seconds = 60
"#,
        dir = dir.path().display(),
        port = crate::util::free_port(),
        wav = wav.display(),
        model = shipped_model("default.safetensors").display(),
    );
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut cmd = hark();
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "4000000")
        .stderr(Stdio::piped());
    if let Some(stage) = stall {
        cmd.env("HARK_TEST_STALL", stage);
    }
    let started = Instant::now();
    let mut proc = Proc(cmd.spawn().unwrap());
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = proc.0.kill();
    let _ = proc.0.wait();
    let stderr = proc.stderr();
    let heard = heard.lock().unwrap().clone();
    (heard, stderr, started)
}

#[test]
fn systemd_hears_ready_then_watchdog_pings_while_every_stage_turns() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (heard, stderr, started) = under_watchdog(&data, None, 8);
    let ready = heard
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {heard:?}\n{stderr}"));
    // READY only once the first window (its length of audio, paced in real time) is in.
    let window_s = crate::util::shipped_window_s();
    let ready_after = heard[ready].0.duration_since(started).as_secs_f64();
    assert!(
        ready_after > window_s,
        "READY after {ready_after:.2} s, before the first window ({window_s:.2} s)"
    );
    let pings: Vec<f64> = heard
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| t.duration_since(started).as_secs_f64())
        .collect();
    // Every quarter of WATCHDOG_USEC: about 8 in 8 s.
    assert!(pings.len() >= 6, "pings at {pings:?}");
    assert!(
        pings.windows(2).all(|w| w[1] - w[0] < 2.0),
        "no gap of half the watchdog: {pings:?}"
    );
    let status = heard
        .iter()
        .rev()
        .find_map(|(_, m)| m.lines().find_map(|l| l.strip_prefix("STATUS=")))
        .unwrap();
    assert!(
        status.contains("fan:") && status.contains("windows"),
        "{status}"
    );
}

#[test]
fn a_stalled_stage_stops_the_watchdog_pings() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (heard, stderr, started) = under_watchdog(&data, Some("inference"), 10);
    assert!(
        heard.iter().any(|(_, m)| m.contains("READY=1")),
        "ready before the stall: {heard:?}"
    );
    let pings: Vec<f64> = heard
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| t.duration_since(started).as_secs_f64())
        .collect();
    let last = pings.last().copied().unwrap_or(0.0);
    // The stall begins after the first window (~2.1 s); half the watchdog (2 s) later
    // the pings stop for good, so systemd's 4 s timer runs out.
    assert!(
        last < 6.5,
        "pings went on after the stall: {pings:?}\n{stderr}"
    );
    assert!(
        heard
            .iter()
            .any(|(_, m)| m.contains("STATUS=STALLED: fan/inference")),
        "{heard:?}"
    );
    assert!(stderr.contains("stage stalled"), "{stderr}");
}

#[test]
fn kill_9_during_enrolment_leaves_a_whole_bank() {
    let Some(data) = shared_data() else { return };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let model = shipped_model("default.safetensors");
    let hash = hark::model::Embedder::load(&model)
        .unwrap()
        .hash()
        .to_string();
    let enroll = |clips: &Path, out: &Path| {
        let mut c = hark();
        c.arg("enroll")
            .arg(clips)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(out);
        c
    };
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mut train: Vec<PathBuf> = std::fs::read_dir(data.join("fan/train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    train.sort();
    for f in &train[..2] {
        std::fs::copy(f, small.join(f.file_name().unwrap())).unwrap();
    }
    let bank = dir.path().join("pump.bank.safetensors");
    crate::util::run_ok(&mut enroll(&small, &bank));
    let old = std::fs::read(&bank).unwrap();
    // The bank an uninterrupted enrolment writes, and how long it takes.
    let other = dir.path().join("other.bank.safetensors");
    let t0 = Instant::now();
    crate::util::run_ok(&mut enroll(&data.join("fan/train"), &other));
    let full = t0.elapsed();
    let new = std::fs::read(&other).unwrap();
    assert_ne!(old, new);
    let mut outcomes = (0, 0);
    // Kills spread over the whole run and past its end (the write comes last).
    for i in 0..12 {
        let at = full.mul_f64(0.2 + 1.2 * i as f64 / 12.0);
        let mut child = enroll(&data.join("fan/train"), &bank)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL: no destructor, no cleanup, like a power cut
        let _ = child.wait();
        let now = std::fs::read(&bank).unwrap();
        assert!(
            now == old || now == new,
            "kill at {at:?}: the bank is neither the old one nor the new one"
        );
        hark::bank::NormalBank::load(&bank, &hash, &model)
            .unwrap_or_else(|e| panic!("kill at {at:?}: bank does not load: {e}"));
        if now == new {
            outcomes.1 += 1;
            std::fs::write(&bank, &old).unwrap();
        } else {
            outcomes.0 += 1;
        }
    }
    eprintln!(
        "kills: {} left the old bank, {} the new one",
        outcomes.0, outcomes.1
    );
    // The next successful write also clears any temp file a killed writer left.
    crate::util::run_ok(&mut enroll(&small, &bank));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(names.is_empty(), "temp files left: {names:?}");
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` at `dir` with `options`; None when not permitted.
    fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Learns into a state directory that cannot be written, then meets an anomaly:
/// detection and publishing go on, and `health` says storage is not ok.
fn detects_with_unwritable_state_dir(state: &Path, data: &Path, port: u16, work: &Path) {
    let mut files = crate::util::sorted_files(&data.join("fan/train"));
    let n_train = files.len();
    files.push(data.join("fan/test/anomaly_id_00_bladefault_20200318T205628.wav"));
    let wav = work.join("stream.wav");
    let (starts, _) = concat_wav(&files, &wav);
    let cfg = format!(
        r#"node = "disk"
state_dir = "{state}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
health_interval_s = 0.3
[[source]]
name = "fan"
device = "file:{wav}"
realtime = false
model = "{model}"
learn_seconds = {learn}
"#,
        state = state.display(),
        wav = wav.display(),
        model = shipped_model("default.safetensors").display(),
        learn = starts[n_train],
    );
    let config = work.join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    let sub = Collector::connect(port, "hark/disk/#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let t = Duration::from_secs(60);
    let event = sub.wait_for(t, |m| {
        m.topic == "hark/disk/fan/event" && m.json()["type"] == "start"
    });
    let unhealthy = sub.wait_for(t, |m| {
        m.topic == "hark/disk/fan/health" && m.json()["storage_ok"] == false
    });
    let status = proc.terminate(Duration::from_secs(10));
    let stderr = proc.stderr();
    assert!(event.is_some(), "no event: {stderr}\n{:?}", sub.all());
    assert!(
        unhealthy.is_some(),
        "health never said storage_ok = false: {:?}",
        sub.all()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {stderr}");
    assert!(
        stderr.contains("not saved"),
        "the log says the bank was not saved: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_full_or_read_only_state_dir_does_not_stop_detection() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let full = work.path().join("full");
    let ro = work.path().join("ro");
    match (
        Mount::tmpfs(&full, "size=64k"),
        Mount::tmpfs(&ro, "size=64k,ro"),
    ) {
        (Some(_full_mount), Some(_ro_mount)) => {
            // Fill the small disk to the last byte.
            let filler = std::fs::File::create(full.join("filler")).unwrap();
            let mut w = std::io::BufWriter::new(filler);
            let block = [0u8; 4096];
            while std::io::Write::write_all(&mut w, &block).is_ok() {}
            drop(w);
            detects_with_unwritable_state_dir(&full, &data, port, work.path());
            detects_with_unwritable_state_dir(&ro, &data, port, work.path());
        }
        _ => {
            // No permission to mount (not root): a directory that cannot be created
            // stands in for both.
            eprintln!("note: cannot mount a tmpfs here; using an unwritable path instead");
            let missing = Path::new("/proc/hark-no-such-dir");
            detects_with_unwritable_state_dir(missing, &data, port, work.path());
        }
    }
}
