//! Stage 4, alarm: turns reports into MQTT messages on the topics of DESIGN.md.
//!
//! Never blocks the stages before it: publishing goes through rumqttc's bounded queue
//! with `try_publish`, and a full queue (broker away for long) drops and counts. State
//! changes are published at once; steady state at most every `state_interval_s`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rumqttc::QoS;

use crate::config::MqttConfig;
use crate::health::SourceHealth;
use crate::mqtt::Mqtt;
use crate::report::{Report, SourceState, event_json, state_json, verdict_json};

/// Topics and counters of one source, as the alarm stage sees it.
#[derive(Debug)]
pub struct SourceTopics {
    /// `<prefix>/<node>/<source>`.
    pub base: String,
    /// Its live counters.
    pub health: Arc<SourceHealth>,
}

struct Last {
    state: Option<SourceState>,
    at: Instant,
}

/// The alarm thread body: runs until every report sender is gone, then publishes the
/// last health, `offline`, and disconnects.
pub fn run(mqtt: Mqtt, cfg: MqttConfig, sources: Vec<SourceTopics>, reports: Receiver<Report>) {
    let state_every = Duration::from_secs_f64(cfg.state_interval_s);
    let health_every = Duration::from_secs_f64(cfg.health_interval_s);
    let mut last: Vec<Last> = sources
        .iter()
        .map(|_| Last {
            state: None,
            at: Instant::now(),
        })
        .collect();
    let mut next_health = Instant::now();
    let mut dropped = 0u64;
    let mut publish = |topic: String, retain: bool, payload: String| {
        if mqtt
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_err()
        {
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "mqtt queue full: messages dropped");
            }
        }
    };
    loop {
        // A capture error (cpal's error callback) turns the source's state to fault.
        for (i, s) in sources.iter().enumerate() {
            if !s.health.capture_ok.load(Ordering::Relaxed)
                && last[i].state != Some(SourceState::Fault)
            {
                tracing::error!(source = %s.base, "capture failed: state fault");
                let payload = state_json(SourceState::Fault, None, None, 0.0, SystemTime::now());
                publish(format!("{}/state", s.base), true, payload.to_string());
                last[i] = Last {
                    state: Some(SourceState::Fault),
                    at: Instant::now(),
                };
            }
        }
        if Instant::now() >= next_health {
            for s in &sources {
                publish(
                    format!("{}/health", s.base),
                    true,
                    s.health.snapshot_json().to_string(),
                );
            }
            next_health = Instant::now() + health_every;
        }
        let report = match reports.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match report {
            Report::State {
                source,
                state,
                score,
                threshold,
                t,
            } => {
                let l = &mut last[source];
                let changed = l.state != Some(state);
                if changed || l.at.elapsed() >= state_every {
                    if changed {
                        tracing::info!(source = %sources[source].base, state = state.as_str(), "state");
                    }
                    let payload = state_json(state, score, threshold, t, SystemTime::now());
                    publish(
                        format!("{}/state", sources[source].base),
                        true,
                        payload.to_string(),
                    );
                    *l = Last {
                        state: Some(state),
                        at: Instant::now(),
                    };
                }
            }
            Report::Verdict { source, verdict } => {
                publish(
                    format!("{}/verdict", sources[source].base),
                    false,
                    verdict_json(&verdict).to_string(),
                );
            }
            Report::CmdResult { source, payload } => {
                publish(
                    format!("{}/cmd/result", sources[source].base),
                    false,
                    payload.to_string(),
                );
            }
            Report::Event { source, event } => {
                publish(
                    format!("{}/event", sources[source].base),
                    false,
                    event_json(&event).to_string(),
                );
            }
        }
    }
    for s in &sources {
        publish(
            format!("{}/health", s.base),
            true,
            s.health.snapshot_json().to_string(),
        );
    }
    mqtt.shutdown();
}
