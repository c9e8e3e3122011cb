//! Home Assistant MQTT discovery: the retained config messages that make each source
//! appear in Home Assistant by itself, built from the topics hark publishes anyway.
//!
//! Per source: a `binary_sensor` (device class `problem`, on while the state is
//! `anomaly`, or for a tap source while the last knock was defective), a `sensor` for the score (state class `measurement`, no unit, the state
//! JSON as attributes) and, for tap sources, an `event` entity with the event types
//! `good` and `defective` fed by the verdicts. All share one `device` per node and the
//! node's availability topic. Unique ids derive from node and source names only, so
//! they survive restarts. Pure: the alarm stage publishes what this returns.

use serde_json::{Value, json};

/// One source, as discovery needs it.
#[derive(Debug, Clone)]
pub struct DiscoveredSource {
    /// Source name (topic segment).
    pub name: String,
    /// `<prefix>/<node>/<source>`.
    pub base: String,
    /// Tap station (verdicts) rather than continuous.
    pub tap: bool,
}

/// The retained discovery messages (topic, JSON payload) of a node.
pub fn messages(
    discovery_prefix: &str,
    prefix: &str,
    node: &str,
    sources: &[DiscoveredSource],
) -> Vec<(String, String)> {
    let availability = crate::mqtt::availability_topic(prefix, node);
    let device = json!({
        "identifiers": [format!("hark_{node}")],
        "name": format!("hark {node}"),
        "manufacturer": "hark",
        "model": "acoustic anomaly detector",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let origin = json!({"name": "hark", "sw_version": env!("CARGO_PKG_VERSION")});
    let common = |id: &str, name: &str| {
        json!({
            "unique_id": id,
            "object_id": id,
            "name": name,
            "availability_topic": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "origin": origin,
        })
    };
    let mut out = Vec::new();
    for s in sources {
        let id = |what: &str| format!("hark_{node}_{}_{what}", s.name);
        let state = format!("{}/state", s.base);
        let mut problem = common(&id("anomaly"), &format!("{} anomaly", s.name));
        // Continuous: on while the state is anomaly, the last event as attributes.
        // Tap: on while the last knock was defective, that verdict as attributes.
        let (topic, template, attributes) = if s.tap {
            let verdict = format!("{}/verdict", s.base);
            (
                verdict.clone(),
                "{{ 'ON' if value_json.verdict == 'defective' else 'OFF' }}",
                verdict,
            )
        } else {
            (
                state.clone(),
                "{{ 'ON' if value_json.state == 'anomaly' else 'OFF' }}",
                format!("{}/last_event", s.base),
            )
        };
        merge(
            &mut problem,
            json!({
                "device_class": "problem",
                "state_topic": topic,
                "value_template": template,
                "json_attributes_topic": attributes,
            }),
        );
        out.push((
            format!("{discovery_prefix}/binary_sensor/{}/config", id("anomaly")),
            problem.to_string(),
        ));
        let mut score = common(&id("score"), &format!("{} score", s.name));
        merge(
            &mut score,
            json!({
                "state_topic": state,
                "state_class": "measurement",
                "value_template": "{{ value_json.score }}",
                "json_attributes_topic": state,
                "icon": "mdi:waveform",
            }),
        );
        out.push((
            format!("{discovery_prefix}/sensor/{}/config", id("score")),
            score.to_string(),
        ));
        if s.tap {
            let mut knock = common(&id("knock"), &format!("{} knock", s.name));
            merge(
                &mut knock,
                json!({
                    "state_topic": format!("{}/verdict", s.base),
                    "event_types": ["good", "defective"],
                    "value_template": "{\"event_type\": \"{{ value_json.verdict }}\", \"score\": {{ value_json.score }}, \"threshold\": {{ value_json.threshold }}}",
                }),
            );
            out.push((
                format!("{discovery_prefix}/event/{}/config", id("knock")),
                knock.to_string(),
            ));
        }
    }
    out
}

fn merge(into: &mut Value, more: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, more) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_stable_ids_and_an_event_entity_for_tap_sources() {
        let sources = [
            DiscoveredSource {
                name: "pump".into(),
                base: "hark/n1/pump".into(),
                tap: false,
            },
            DiscoveredSource {
                name: "station".into(),
                base: "hark/n1/station".into(),
                tap: true,
            },
        ];
        let msgs = messages("homeassistant", "hark", "n1", &sources);
        assert_eq!(msgs.len(), 5);
        let again = messages("homeassistant", "hark", "n1", &sources);
        assert_eq!(msgs, again, "the same ids every time");
        let v: Vec<Value> = msgs
            .iter()
            .map(|(_, p)| serde_json::from_str(p).unwrap())
            .collect();
        assert!(v.iter().all(|c| c["device"]["identifiers"][0] == "hark_n1"));
        assert_eq!(v[0]["device_class"], "problem");
        assert_eq!(v[1]["state_class"], "measurement");
        assert!(v[1].get("unit_of_measurement").is_none());
        assert_eq!(
            msgs[4].0,
            "homeassistant/event/hark_n1_station_knock/config"
        );
        assert_eq!(v[4]["event_types"], json!(["good", "defective"]));
    }
}
