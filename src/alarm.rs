//! Stage 4, alarm: turns reports into MQTT messages on the topics of DESIGN.md.
//!
//! Never blocks the stages before it: publishing goes through rumqttc's bounded queue
//! with `try_publish`. State changes are published at once; steady state at most every
//! `state_interval_s`.
//!
//! Events and verdicts must arrive, so each is written to the on-disk [`Journal`] first
//! and leaves it only when the broker echoes it back (hark subscribes to its own event
//! and verdict topics): a message lost with a dropped connection is sent again, and
//! while the broker is away they wait on disk. Once it is back they are delivered in
//! order, marked `"replayed": true`. Retained state and health are only snapshots:
//! skipped while offline, the latest re-published on reconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rumqttc::QoS;

use crate::config::MqttConfig;
use crate::health::SourceHealth;
use crate::journal::{Entry, Journal};
use crate::mqtt::{Echo, Mqtt};
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
    /// The latest retained state payload, re-published after a reconnect.
    payload: Option<String>,
    /// The latest event payload (retained on `last_event`), likewise.
    last_event: Option<String>,
}

/// An unconfirmed message is sent again after this long.
const RESEND_AFTER: Duration = Duration::from_secs(10);

/// The publishing side: the client, the journal, and what to re-send on reconnect.
struct Outbox {
    mqtt: Mqtt,
    journal: Journal,
    /// Our own events and verdicts, heard back from the broker: proof of delivery.
    echoes: Receiver<Echo>,
    online: bool,
    dropped: u64,
}

impl Outbox {
    fn try_publish(&self, topic: &str, retain: bool, payload: String) -> bool {
        self.mqtt
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
    }

    /// Retained snapshots (state, health): sent when connected, else skipped (the
    /// latest is sent again on reconnect).
    fn snapshot(&mut self, topic: &str, payload: String) {
        if self.online && !self.try_publish(topic, true, payload) {
            self.count_drop();
        }
    }

    /// Messages that must arrive (events, verdicts): journaled first, then sent.
    fn message(&mut self, topic: &str, payload: String) {
        let entry = Entry {
            topic: topic.to_string(),
            payload,
        };
        self.journal.push(entry, self.online);
        self.flush();
    }

    /// Answers that only matter now (command results): sent or dropped.
    fn transient(&mut self, topic: &str, payload: String) {
        if !(self.online && self.try_publish(topic, false, payload)) {
            self.count_drop();
        }
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        if self.dropped.is_power_of_two() {
            tracing::warn!(dropped = self.dropped, "mqtt unavailable: messages dropped");
        }
    }

    /// Sends, oldest first, what waits in the journal: what was never sent, and what
    /// the broker has not confirmed for [`RESEND_AFTER`]. Stops when the client's queue
    /// is full (the rest goes next time).
    fn flush(&mut self) {
        if !self.online {
            return;
        }
        let Outbox { mqtt, journal, .. } = self;
        let now = Instant::now();
        for p in journal.pending_mut() {
            if p.sent.is_some_and(|t| now.duration_since(t) < RESEND_AFTER) {
                continue;
            }
            let sent = mqtt
                .client
                .try_publish(&p.entry.topic, QoS::AtLeastOnce, false, p.payload())
                .is_ok();
            if !sent {
                break;
            }
            p.sent = Some(now);
        }
        if !mqtt.echo_ok.load(Ordering::Relaxed) {
            // Cannot hear our own messages back (an ACL?): handing them over must do.
            let mut handed = false;
            while journal
                .pending_mut()
                .next()
                .is_some_and(|p| p.sent.is_some())
            {
                journal.pop_front();
                handed = true;
            }
            if handed {
                journal.sync();
            }
        }
    }

    /// Removes from the journal what the broker has echoed back.
    fn confirm(&mut self) {
        let mut confirmed = 0;
        while let Ok((topic, payload)) = self.echoes.try_recv() {
            if self.journal.confirm(&topic, &payload) {
                confirmed += 1;
            }
        }
        if confirmed > 0 {
            self.journal.sync();
        }
    }

    /// After a reconnect every unconfirmed message goes again, marked replayed.
    fn reconnected(&mut self) {
        let waiting = self.journal.len();
        for p in self.journal.pending_mut() {
            p.sent = None;
            p.live = false;
        }
        if waiting > 0 {
            tracing::info!(waiting, "broker back: delivering the journal");
        }
        self.flush();
    }

    /// The `health` payload of a source, with the node's journal counters.
    fn health(&self, h: &SourceHealth) -> String {
        let mut v = h.snapshot_json();
        v["journal_pending"] = self.journal.len().into();
        v["journal_dropped"] = self.journal.dropped.into();
        let storage_ok = v["storage_ok"].as_bool().unwrap_or(true) && self.journal.error.is_none();
        v["storage_ok"] = storage_ok.into();
        v.to_string()
    }
}

/// The alarm thread body: runs until every report sender is gone, then publishes the
/// last health, `offline`, and disconnects.
pub fn run(
    mqtt: Mqtt,
    cfg: MqttConfig,
    sources: Vec<SourceTopics>,
    reports: Receiver<Report>,
    (journal, echoes): (Journal, Receiver<Echo>),
    beat: Arc<crate::health::Beat>,
    discovery: Vec<(String, String)>,
) {
    let state_every = Duration::from_secs_f64(cfg.state_interval_s);
    let health_every = Duration::from_secs_f64(cfg.health_interval_s);
    let mut last: Vec<Last> = sources
        .iter()
        .map(|_| Last {
            state: None,
            at: Instant::now(),
            payload: None,
            last_event: None,
        })
        .collect();
    let mut next_health = Instant::now();
    let mut out = Outbox {
        mqtt,
        journal,
        echoes,
        online: false,
        dropped: 0,
    };
    loop {
        beat.tick();
        out.confirm();
        let connected = out.mqtt.connected.load(Ordering::Relaxed);
        if connected && !out.online {
            out.online = true;
            // Back (or up for the first time): what waited, then the current picture.
            out.reconnected();
            for (topic, payload) in &discovery {
                out.snapshot(topic, payload.clone());
            }
            for (s, l) in sources.iter().zip(&last) {
                if let Some(p) = &l.payload {
                    out.snapshot(&format!("{}/state", s.base), p.clone());
                }
                if let Some(p) = &l.last_event {
                    out.snapshot(&format!("{}/last_event", s.base), p.clone());
                }
            }
            next_health = Instant::now();
        } else if out.online && out.mqtt.ha_online.swap(false, Ordering::Relaxed) {
            for (topic, payload) in &discovery {
                out.snapshot(topic, payload.clone());
            }
        } else if !connected && out.online {
            out.online = false;
        } else {
            out.flush();
        }
        // A capture error turns the source's state to fault until it is reopened.
        for (i, s) in sources.iter().enumerate() {
            if !s.health.capture_ok.load(Ordering::Relaxed)
                && last[i].state != Some(SourceState::Fault)
            {
                tracing::error!(source = %s.base, "capture failed: state fault");
                let payload =
                    state_json(SourceState::Fault, None, None, 0.0, SystemTime::now()).to_string();
                out.snapshot(&format!("{}/state", s.base), payload.clone());
                last[i].state = Some(SourceState::Fault);
                last[i].at = Instant::now();
                last[i].payload = Some(payload);
            }
        }
        if Instant::now() >= next_health {
            for s in &sources {
                let payload = out.health(&s.health);
                out.snapshot(&format!("{}/health", s.base), payload);
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
                    let payload =
                        state_json(state, score, threshold, t, SystemTime::now()).to_string();
                    out.snapshot(&format!("{}/state", sources[source].base), payload.clone());
                    l.state = Some(state);
                    l.at = Instant::now();
                    l.payload = Some(payload);
                }
            }
            Report::Verdict { source, verdict } => out.message(
                &format!("{}/verdict", sources[source].base),
                verdict_json(&verdict).to_string(),
            ),
            Report::Event { source, event } => {
                let payload = event_json(&event).to_string();
                let base = &sources[source].base;
                out.snapshot(&format!("{base}/last_event"), payload.clone());
                last[source].last_event = Some(payload.clone());
                out.message(&format!("{base}/event"), payload);
            }
            Report::CmdResult { source, payload } => out.transient(
                &format!("{}/cmd/result", sources[source].base),
                payload.to_string(),
            ),
        }
    }
    // Give the broker a moment to confirm what is in flight; the rest stays journaled
    // and goes out at the next start.
    let deadline = Instant::now() + Duration::from_secs(1);
    while out.online && !out.journal.is_empty() && Instant::now() < deadline {
        out.flush();
        std::thread::sleep(Duration::from_millis(20));
        out.confirm();
    }
    for s in &sources {
        let payload = out.health(&s.health);
        out.snapshot(&format!("{}/health", s.base), payload);
    }
    beat.finish();
    out.mqtt.shutdown();
}
