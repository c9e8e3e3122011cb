//! Home Assistant discovery against a real broker: the retained configs parse, name
//! topics hark really publishes, keep their ids, and come again when Home Assistant
//! announces itself.

use std::collections::HashSet;
use std::time::Duration;

use crate::util::{Collector, SERIAL, concat_wav, mosquitto, shared_data, shipped_model};

#[test]
fn discovery_configs_reference_topics_hark_publishes() {
    let Some(data) = shared_data() else { return };
    let Some((_broker, port)) = mosquitto() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // A continuous source that learns from three clips and then hears a blade fault...
    let mut files = crate::util::sorted_files(&data.join("fan/train"));
    files.truncate(3);
    files.push(data.join("fan/test/anomaly_id_00_bladefault_20200318T205628.wav"));
    let fan = dir.path().join("fan.wav");
    let (starts, _) = concat_wav(&files, &fan);
    // ...and a tap station with an enrolled bank hearing a few knocks.
    let knocks = dir.path().join("knocks.wav");
    crate::tap::knock_stream(&data, &knocks, 6);
    let (tap_model, tap_bank) = crate::tap::enrol_station(&data, dir.path());
    let cfg = format!(
        r#"node = "ha"
state_dir = "{dir}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
[[source]]
name = "fan"
device = "file:{fan}"
realtime = false
model = "{model}"
learn_seconds = {learn}
[[source]]
name = "station"
device = "file:{knocks}"
realtime = false
mode = "tap"
model = "{tap_model}"
bank = "{tap_bank}"
"#,
        dir = dir.path().display(),
        fan = fan.display(),
        model = shipped_model("default.safetensors").display(),
        learn = starts[3],
        knocks = knocks.display(),
        tap_model = tap_model.display(),
        tap_bank = tap_bank.display(),
    );
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, cfg).unwrap();
    let all = Collector::connect(port, "#", Duration::from_secs(5));
    let mut proc = crate::util::spawn_hark(&config);
    let t = Duration::from_secs(60);
    let heard = all
        .wait_for(t, |m| m.topic == "hark/ha/fan/last_event")
        .is_some()
        && all
            .wait_for(t, |m| m.topic == "hark/ha/station/verdict")
            .is_some();
    if !heard {
        let _ = proc.terminate(Duration::from_secs(5));
        panic!("no event or verdict: {}\n{:?}", proc.stderr(), all.all());
    }
    // A late subscriber (Home Assistant starting up) gets the configs, retained.
    let ha = Collector::connect(port, "homeassistant/#", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let configs: Vec<(String, serde_json::Value)> = ha
        .all()
        .iter()
        .filter(|m| m.retain && m.topic.ends_with("/config"))
        .map(|m| (m.topic.clone(), m.json()))
        .collect();
    let kinds: Vec<&str> = configs
        .iter()
        .map(|(t, _)| t.split('/').nth(1).unwrap())
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(
        (count("binary_sensor"), count("sensor"), count("event")),
        (2, 2, 1),
        "{configs:?}"
    );
    let published: HashSet<String> = all.all().into_iter().map(|m| m.topic).collect();
    let mut ids = HashSet::new();
    for (topic, c) in &configs {
        assert!(
            ids.insert(c["unique_id"].as_str().unwrap().to_string()),
            "{topic}"
        );
        assert_eq!(c["device"]["identifiers"][0], "hark_ha", "{topic}");
        assert_eq!(c["availability_topic"], "hark/ha/availability");
        for key in ["state_topic", "json_attributes_topic", "availability_topic"] {
            if let Some(t) = c[key].as_str() {
                assert!(
                    published.contains(t),
                    "{topic}: {key} = {t} is never published"
                );
            }
        }
    }
    let problem = &configs
        .iter()
        .find(|(t, _)| t == "homeassistant/binary_sensor/hark_ha_fan_anomaly/config")
        .unwrap()
        .1;
    assert_eq!(problem["device_class"], "problem");
    let score = &configs
        .iter()
        .find(|(t, _)| t == "homeassistant/sensor/hark_ha_fan_score/config")
        .unwrap()
        .1;
    assert_eq!(score["state_class"], "measurement");
    assert!(score.get("unit_of_measurement").is_none());
    let knock = &configs
        .iter()
        .find(|(t, _)| t.starts_with("homeassistant/event/"))
        .unwrap()
        .1;
    assert_eq!(
        knock["event_types"],
        serde_json::json!(["good", "defective"])
    );
    // Home Assistant restarts and says so: the configs come again.
    let before = all
        .all()
        .iter()
        .filter(|m| m.topic.ends_with("/config"))
        .count();
    all.publish("homeassistant/status", "online");
    std::thread::sleep(Duration::from_secs(1));
    let after = all
        .all()
        .iter()
        .filter(|m| m.topic.ends_with("/config"))
        .count();
    assert_eq!(
        after,
        before + 5,
        "discovery re-sent once on homeassistant/status"
    );
    let status = proc.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{}", proc.stderr());
}
