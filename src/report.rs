//! What inference tells the alarm stage, and the JSON payloads of DESIGN.md.
//!
//! Payload building is pure so tests can check the contract without a broker.

use std::time::SystemTime;

use serde_json::{Value, json};

/// A source's state as the `state` topic reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Enrolling from the first `learn_seconds` of sound.
    Learning,
    /// Armed, nothing wrong.
    Normal,
    /// An anomaly is running.
    Anomaly,
    /// The input is broken.
    Fault,
}

impl SourceState {
    /// The word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Learning => "learning",
            SourceState::Normal => "normal",
            SourceState::Anomaly => "anomaly",
            SourceState::Fault => "fault",
        }
    }
}

/// Start, update or end of an anomaly event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The detector raised.
    Start,
    /// Still running (periodic).
    Update,
    /// The detector cleared (or the input ended).
    End,
}

/// One anomaly event message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable across start, updates and end.
    pub id: String,
    /// Which message of the event this is.
    pub kind: EventKind,
    /// Wall time the event started.
    pub ts_start: SystemTime,
    /// Wall time it ended (end only).
    pub ts_end: Option<SystemTime>,
    /// Stream time, in seconds, of the start of the earliest over-threshold window
    /// among those that raised the event.
    pub t_start: f64,
    /// Stream time of the latest window's end, seconds.
    pub t_end: f64,
    /// Highest window score so far.
    pub score_max: f32,
    /// Threshold in force.
    pub threshold: f32,
    /// Model file name.
    pub model: String,
    /// Bank file name.
    pub bank: String,
    /// Where the evidence clip of this event is (written once the event is over).
    pub clip: Option<String>,
    /// Why: the bands of the highest-scoring window so far against its nearest normal
    /// window (absent when the bank has no notes, e.g. one made by an older hark).
    pub explain: Option<crate::explain::Explanation>,
}

/// A message from an inference thread to the alarm thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The source's state, with the latest score.
    State {
        /// Index of the source in the config.
        source: usize,
        /// The state.
        state: SourceState,
        /// Latest window score (absent while learning).
        score: Option<f32>,
        /// Threshold in force (absent while learning).
        threshold: Option<f32>,
        /// Stream time of the latest window's end.
        t: f64,
    },
    /// Tap mode: the verdict on one knock.
    Verdict {
        /// Index of the source in the config.
        source: usize,
        /// The verdict.
        verdict: Verdict,
    },
    /// The answer to a station command, for `cmd/result`.
    CmdResult {
        /// Index of the source in the config.
        source: usize,
        /// `{"cmd", "ok", ...}`.
        payload: Value,
    },
    /// An anomaly event.
    Event {
        /// Index of the source in the config.
        source: usize,
        /// The event.
        event: Event,
    },
}

/// The verdict on one knock (tap mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Unique per knock: `<source>-<knock index>-<unix ms>`.
    pub id: String,
    /// Wall time of the verdict.
    pub ts: SystemTime,
    /// Score over threshold.
    pub defective: bool,
    /// The knock's score.
    pub score: f32,
    /// Threshold in force.
    pub threshold: f32,
    /// Stream time of the knock's onset, seconds.
    pub t: f64,
    /// Defective knocks: the bands that differ from the nearest good knock.
    pub explain: Option<crate::explain::Explanation>,
    /// Defective knocks with `evidence_defective`: where the knock's sound is saved.
    pub clip: Option<String>,
}

/// `verdict` payload.
pub fn verdict_json(v: &Verdict) -> Value {
    let mut j = json!({
        "id": v.id,
        "ts": rfc3339(v.ts),
        "verdict": if v.defective { "defective" } else { "good" },
        "score": round(v.score),
        "threshold": round(v.threshold),
        "t": (v.t * 1000.0).round() / 1000.0,
    });
    if let Some(x) = &v.explain {
        j["explain"] = x.to_json();
    }
    if let Some(clip) = &v.clip {
        j["clip"] = clip.as_str().into();
    }
    j
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn round(x: f32) -> f64 {
    (x as f64 * 1e5).round() / 1e5
}

/// `state` payload.
pub fn state_json(
    state: SourceState,
    score: Option<f32>,
    threshold: Option<f32>,
    t: f64,
    ts: SystemTime,
) -> Value {
    json!({
        "state": state.as_str(),
        "score": score.map(round),
        "threshold": threshold.map(round),
        "ts": rfc3339(ts),
        "t": (t * 1000.0).round() / 1000.0,
    })
}

/// `event` payload.
pub fn event_json(e: &Event) -> Value {
    let mut v = json!({
        "id": e.id,
        "type": match e.kind { EventKind::Start => "start", EventKind::Update => "update", EventKind::End => "end" },
        "ts_start": rfc3339(e.ts_start),
        "ts_end": e.ts_end.map(rfc3339),
        "score_max": round(e.score_max),
        "threshold": round(e.threshold),
        "model": e.model,
        "bank": e.bank,
        "t_start": (e.t_start * 1000.0).round() / 1000.0,
        "t_end": (e.t_end * 1000.0).round() / 1000.0,
    });
    if let Some(clip) = &e.clip {
        v["clip"] = clip.as_str().into();
    }
    if let Some(x) = &e.explain {
        v["explain"] = x.to_json();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_follow_the_contract() {
        let ts = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let s = state_json(SourceState::Anomaly, Some(0.25), Some(0.1), 12.3456, ts);
        assert_eq!(s["state"], "anomaly");
        assert_eq!(s["ts"], "2023-11-14T22:13:20.123Z");
        assert_eq!(s["score"], 0.25);
        let l = state_json(SourceState::Learning, None, None, 0.0, ts);
        assert!(l["score"].is_null());
        let e = Event {
            id: "pump-1".into(),
            kind: EventKind::End,
            ts_start: ts,
            ts_end: Some(ts),
            t_start: 1.0,
            t_end: 2.0,
            score_max: 0.5,
            threshold: 0.2,
            model: "default.safetensors".into(),
            bank: "pump.bank.safetensors".into(),
            clip: None,
            explain: None,
        };
        let j = event_json(&e);
        for key in [
            "id",
            "type",
            "ts_start",
            "ts_end",
            "score_max",
            "threshold",
            "model",
            "bank",
        ] {
            assert!(j.get(key).is_some(), "missing {key}");
        }
        assert_eq!(j["type"], "end");
    }
}
