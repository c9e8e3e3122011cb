//! `hark status`: what a running node last told its broker, read back from the
//! retained topics: availability, and per source its state, health and last event.
//!
//! It connects to the broker of the config (`[mqtt] url`, or the embedded broker on
//! `127.0.0.1:embedded_port`) with the same TLS and credentials as `hark run`
//! ([`connect_options`]). Its client id is the node's `client_id` plus
//! `-status-<pid>`, so it never takes over the daemon's session.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde_json::{Value, json};

use crate::config::{Broker, Config, MqttConfig};

/// Retained messages stop arriving when none came for this long.
const QUIET: Duration = Duration::from_millis(300);

/// What the broker holds for one source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceStatus {
    /// The `state` payload.
    pub state: Option<Value>,
    /// The `health` payload.
    pub health: Option<Value>,
    /// The `last_event` payload (the latest event, retained).
    pub last_event: Option<Value>,
    /// Named in the config (false: only seen on the broker, e.g. a removed source).
    pub configured: bool,
}

/// What the broker holds for a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// `online`, `offline`, or `None` when nothing is retained.
    pub availability: Option<String>,
    /// Per source, configured ones first in config order, then others by name.
    pub sources: Vec<(String, SourceStatus)>,
}

/// `host:port` of the config's broker.
pub fn broker_address(cfg: &MqttConfig) -> (String, u16) {
    match &cfg.broker {
        Broker::External { host, port } => (host.clone(), *port),
        Broker::Embedded { port } => ("127.0.0.1".to_string(), *port),
    }
}

/// The connection `status` opens: the same broker, TLS and credentials as `run`.
pub fn connect_options(cfg: &MqttConfig) -> anyhow::Result<MqttOptions> {
    let (host, port) = broker_address(cfg);
    let id = format!("{}-status-{}", cfg.client_id, std::process::id());
    let mut opts = MqttOptions::new(id, host.clone(), port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(5)));
    opts.set_clean_session(true);
    crate::mqtt::options::secure(&mut opts, cfg, &host, port)?;
    Ok(opts)
}

/// Sorts retained messages into a node's status. Topics outside the node, or of
/// another kind, are ignored.
pub fn collect(
    prefix: &str,
    node: &str,
    configured: &[String],
    messages: &[(String, Vec<u8>)],
) -> NodeStatus {
    let base = format!("{prefix}/{node}/");
    let mut status = NodeStatus::default();
    let mut seen: BTreeMap<String, SourceStatus> = BTreeMap::new();
    for (topic, payload) in messages {
        let Some(rest) = topic.strip_prefix(&base) else {
            continue;
        };
        let text = String::from_utf8_lossy(payload);
        if rest == "availability" {
            status.availability = Some(text.trim().to_string());
            continue;
        }
        let Some((source, kind)) = rest.split_once('/') else {
            continue;
        };
        // An empty retained payload clears a topic: nothing to show.
        let value = match serde_json::from_str::<Value>(&text) {
            Ok(v) => v,
            Err(_) if text.is_empty() => continue,
            Err(_) => Value::String(text.into_owned()),
        };
        let entry = seen.entry(source.to_string()).or_default();
        match kind {
            "state" => entry.state = Some(value),
            "health" => entry.health = Some(value),
            "last_event" => entry.last_event = Some(value),
            _ => {}
        }
    }
    for name in configured {
        let mut s = seen.remove(name).unwrap_or_default();
        s.configured = true;
        status.sources.push((name.clone(), s));
    }
    status.sources.extend(seen);
    status
}

/// Subscribes to a node's retained topics and gathers what arrives until it has been
/// quiet for 300 ms (at most `timeout`). An unreachable broker is an error that names it.
pub fn fetch(cfg: &Config, timeout: Duration) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let (host, port) = broker_address(&cfg.mqtt);
    let broker = format!("{host}:{port}");
    let (client, mut connection) = Client::new(connect_options(&cfg.mqtt)?, 16);
    let base = format!("{}/{}", cfg.mqtt.prefix, cfg.node);
    let filters = ["availability", "+/state", "+/health", "+/last_event"]
        .map(|t| SubscribeFilter::new(format!("{base}/{t}"), QoS::AtLeastOnce));
    client
        .subscribe_many(filters)
        .context("cannot queue the subscription")?;
    // rumqttc makes progress only while polled: a thread polls and hands events over,
    // so the wait below can keep its own clock.
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for event in connection.iter() {
            let failed = event.is_err();
            if tx.send(event).is_err() || failed {
                break;
            }
        }
    });
    let started = Instant::now();
    let deadline = started + timeout;
    let mut messages = Vec::new();
    let (mut connected, mut subscribed) = (false, false);
    let mut last_retained = Instant::now();
    loop {
        let now = Instant::now();
        let wait = if subscribed {
            (last_retained + QUIET).min(deadline)
        } else {
            deadline
        };
        if now >= wait {
            break;
        }
        match rx.recv_timeout(wait - now) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                if ack.code != rumqttc::ConnectReturnCode::Success {
                    bail!(
                        "MQTT broker {broker} refused the connection: {:?}",
                        ack.code
                    );
                }
                connected = true;
            }
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    bail!("MQTT broker {broker} refused the subscription to {base}/... (an ACL?)");
                }
                subscribed = true;
                last_retained = Instant::now();
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                // Retained copies come right after the subscription; live messages
                // update the picture but do not keep the wait going.
                if p.retain {
                    last_retained = Instant::now();
                }
                messages.push((p.topic.clone(), p.payload.to_vec()));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("cannot reach MQTT broker {broker}: {}", one_line(&e)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                bail!("MQTT broker {broker} closed the connection")
            }
        }
    }
    if !connected {
        bail!(
            "no answer from MQTT broker {broker} within {:.1} s",
            timeout.as_secs_f64()
        );
    }
    if !subscribed {
        bail!(
            "MQTT broker {broker} did not confirm the subscription within {:.1} s",
            timeout.as_secs_f64()
        );
    }
    let _ = client.disconnect();
    Ok(messages)
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().collect::<Vec<_>>().join(" ")
}

/// One source as `status --json` prints it.
pub fn source_json(node: &str, availability: Option<&str>, name: &str, s: &SourceStatus) -> Value {
    json!({
        "node": node,
        "source": name,
        "availability": availability,
        "configured": s.configured,
        "state": s.state,
        "health": s.health,
        "last_event": s.last_event,
    })
}

/// An RFC 3339 time with how long ago it was: `2026-11-21T13:18:49.906Z (12 s ago)`.
fn when(ts: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(ts) else {
        return ts.to_string();
    };
    match std::time::SystemTime::now().duration_since(t) {
        Ok(d) => {
            let s = d.as_secs();
            let ago = match s {
                0..120 => format!("{s} s"),
                120..7200 => format!("{} min", s / 60),
                7200..172_800 => format!("{} h", s / 3600),
                _ => format!("{} days", s / 86_400),
            };
            format!("{ts} ({ago} ago)")
        }
        Err(_) => ts.to_string(),
    }
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// One source as the human summary shows it.
pub fn source_text(name: &str, s: &SourceStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let state = s.state.as_ref();
    let word = state.and_then(|v| text(v, "state")).unwrap_or("unknown");
    let _ = write!(out, "{name}: {}", word.to_uppercase());
    if !s.configured {
        out.push_str("  (not in this config)");
    }
    out.push('\n');
    match state {
        None => out.push_str("  state      nothing retained (has this node run?)\n"),
        Some(v) => {
            let since = text(v, "ts").map_or("?".to_string(), when);
            match (num(v, "score"), num(v, "threshold")) {
                (Some(score), Some(th)) if th > 0.0 => {
                    let _ = writeln!(
                        out,
                        "  score      {score:.5} / threshold {th:.5} ({:.0} % of threshold), at {since}",
                        100.0 * score / th
                    );
                }
                (None, Some(th)) => {
                    let _ = writeln!(out, "  score      none yet / threshold {th:.5}, at {since}");
                }
                _ => {
                    let _ = writeln!(out, "  score      none yet, at {since}");
                }
            }
        }
    }
    match &s.last_event {
        None => out.push_str("  last event none retained\n"),
        Some(e) => {
            let kind = text(e, "type").unwrap_or("?");
            let start = text(e, "ts_start").map_or("?".to_string(), when);
            let _ = write!(out, "  last event {kind}, started {start}");
            if let Some(end) = text(e, "ts_end") {
                let _ = write!(out, ", ended {}", when(end));
            }
            if let Some(m) = num(e, "score_max") {
                let _ = write!(out, ", score_max {m:.5}");
            }
            if let Some(th) = num(e, "threshold") {
                let _ = write!(out, " (threshold {th:.5})");
            }
            out.push('\n');
            if let Some(why) = e.get("explain").and_then(|x| text(x, "text")) {
                let nearest = e["explain"]["nearest"]["clip"].as_str().unwrap_or("?");
                let _ = writeln!(out, "  why        {why} (nearest normal: {nearest})");
            }
        }
    }
    match &s.health {
        None => out.push_str("  capture    no health retained\n"),
        Some(h) => {
            let ok = h.get("capture_ok").and_then(Value::as_bool);
            let _ = write!(
                out,
                "  capture    {}",
                match ok {
                    Some(true) => "ok",
                    Some(false) => "FAILED",
                    None => "?",
                }
            );
            if let Some(rate) = num(h, "sample_rate") {
                let _ = write!(out, ", {rate:.0} Hz");
            }
            if let Some(db) = num(h, "level_dbfs") {
                let _ = write!(out, ", level {db:.1} dBFS");
            }
            if h.get("clipping").and_then(Value::as_bool) == Some(true) {
                out.push_str(", CLIPPING");
            }
            out.push('\n');
            let count = |k: &str| num(h, k).map_or("?".to_string(), |v| format!("{v:.0}"));
            let _ = writeln!(
                out,
                "  dropped    {} samples, {} windows; reopens {}",
                count("dropped_samples"),
                count("dropped_windows"),
                count("reopens")
            );
            let storage = match h.get("storage_ok").and_then(Value::as_bool) {
                Some(true) => "ok",
                Some(false) => "FAILING (banks or journal cannot be written)",
                None => "?",
            };
            let _ = write!(out, "  storage    {storage}");
            if let Some(p) = num(h, "journal_pending") {
                let _ = write!(out, "; journal pending {p:.0}");
            }
            out.push('\n');
        }
    }
    out
}

/// `hark status`: prints the summary (or one JSON object per source).
pub fn run(config: &Path, json: bool, timeout: Duration) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let messages = fetch(&cfg, timeout)?;
    let names: Vec<String> = cfg.sources.iter().map(|s| s.name.clone()).collect();
    let status = collect(&cfg.mqtt.prefix, &cfg.node, &names, &messages);
    let availability = status.availability.as_deref();
    if json {
        for (name, s) in &status.sources {
            outln!("{}", source_json(&cfg.node, availability, name, s))?;
        }
        return Ok(());
    }
    let (host, port) = broker_address(&cfg.mqtt);
    outln!(
        "node {} on {host}:{port} (prefix {}): {}",
        cfg.node,
        cfg.mqtt.prefix,
        match availability {
            Some(a) => a.to_string(),
            None => "availability unknown (nothing retained)".to_string(),
        }
    )?;
    if status.sources.is_empty() {
        outln!("no sources configured or retained")?;
    }
    for (name, s) in &status.sources {
        out!("\n{}", source_text(name, s))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &str) -> (String, Vec<u8>) {
        (topic.to_string(), payload.as_bytes().to_vec())
    }

    #[test]
    fn retained_topics_sort_into_sources() {
        let msgs = [
            msg("hark/n1/availability", "online"),
            msg(
                "hark/n1/pump/state",
                r#"{"state":"normal","score":0.004,"threshold":0.01,"ts":"T"}"#,
            ),
            msg(
                "hark/n1/pump/health",
                r#"{"capture_ok":true,"storage_ok":true}"#,
            ),
            msg(
                "hark/n1/pump/last_event",
                r#"{"type":"end","ts_start":"A","ts_end":"B","score_max":0.2,"threshold":0.01}"#,
            ),
            msg("hark/n1/old/state", r#"{"state":"fault"}"#),
            msg("hark/n1/gone/state", ""),
            msg("hark/n2/pump/state", r#"{"state":"anomaly"}"#),
        ];
        let names = ["pump".to_string(), "fan".to_string()];
        let s = collect("hark", "n1", &names, &msgs);
        assert_eq!(s.availability.as_deref(), Some("online"));
        let order: Vec<&str> = s.sources.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["pump", "fan", "old"]);
        let pump = &s.sources[0].1;
        assert!(pump.configured);
        assert_eq!(pump.state.as_ref().unwrap()["state"], "normal");
        assert_eq!(pump.last_event.as_ref().unwrap()["type"], "end");
        assert_eq!(
            s.sources[1].1,
            SourceStatus {
                configured: true,
                ..Default::default()
            }
        );
        assert!(
            !s.sources[2].1.configured,
            "seen on the broker, not configured"
        );
        let text = source_text("pump", pump);
        assert!(
            text.contains("NORMAL") && text.contains("40 % of threshold"),
            "{text}"
        );
        assert!(
            text.contains("last event end") && text.contains("score_max 0.20000"),
            "{text}"
        );
        assert!(source_text("fan", &s.sources[1].1).contains("nothing retained"));
        let j = source_json("n1", Some("online"), "pump", pump);
        assert_eq!(j["health"]["capture_ok"], true);
        assert_eq!(j["source"], "pump");
    }
}
