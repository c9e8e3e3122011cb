//! The MQTT connection: a rumqttc client handle plus a driver thread that polls the
//! connection, announces `online` on every (re)connect, and backs off between attempts.
//!
//! rumqttc reconnects only while it is polled, and with no delay of its own; the driver
//! sleeps a capped exponential backoff after each failure so an absent broker costs a
//! few wake-ups a minute, not a busy loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crossbeam_channel::Sender;
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};

use crate::station::StationCommand;

use crate::config::{Broker, ConfigError, MqttConfig};

pub mod options;

/// Requests rumqttc may queue while the broker is away before `try_publish` fails.
const REQUEST_CAPACITY: usize = 1024;

/// One of our own events or verdicts heard back from the broker: topic and payload.
pub type Echo = (String, Vec<u8>);

/// A connected (or connecting) client. Dropping it does not disconnect: call
/// [`Mqtt::shutdown`] for the orderly `offline` + disconnect.
pub struct Mqtt {
    /// Publishing handle.
    pub client: Client,
    /// True between a ConnAck and the next connection error.
    pub connected: Arc<AtomicBool>,
    /// False when the broker refused our subscription to our own topics (an ACL): then
    /// handing a message to the client has to count as delivering it.
    pub echo_ok: Arc<AtomicBool>,
    /// Set when Home Assistant announces itself (`<discovery_prefix>/status` =
    /// `online`): discovery must be sent again. The alarm stage clears it.
    pub ha_online: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<()>>,
    availability: String,
    /// Set when our own `offline` came back from the broker during shutdown.
    offline_seen: Arc<AtomicBool>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt")
            .field("availability", &self.availability)
            .field("connected", &self.connected)
            .finish()
    }
}

/// The availability topic of a node.
pub fn availability_topic(prefix: &str, node: &str) -> String {
    format!("{prefix}/{node}/availability")
}

pub use crate::retry::backoff;

impl Mqtt {
    /// Starts the client and its driver thread. Never blocks on the broker.
    /// `commands` maps sources to their inference threads; their `cmd` topics are
    /// subscribed, parsed here, and malformed ones answered on `cmd/result`.
    /// Our own events and verdicts are subscribed to as well and handed to `echoes`.
    /// Fails only on the files and variables TLS and credentials are read from
    /// (the error names the key and its value).
    pub fn start(
        cfg: &MqttConfig,
        node: &str,
        commands: HashMap<String, Sender<StationCommand>>,
        echoes: Sender<Echo>,
    ) -> Result<Mqtt, ConfigError> {
        let (host, port) = match &cfg.broker {
            Broker::External { host, port } => (host.clone(), *port),
            Broker::Embedded { port } => ("127.0.0.1".to_string(), *port),
        };
        let availability = availability_topic(&cfg.prefix, node);
        let mut opts = MqttOptions::new(cfg.client_id.clone(), host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
        opts.set_last_will(LastWill::new(
            &availability,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let peer = options::secure(&mut opts, cfg, &host, port)?;
        let (client, mut connection) = Client::new(opts, REQUEST_CAPACITY);
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let offline_seen = Arc::new(AtomicBool::new(false));
        let echo_ok = Arc::new(AtomicBool::new(true));
        let ha_online = Arc::new(AtomicBool::new(false));
        let ha_online2 = ha_online.clone();
        let ha_status = cfg.discovery_prefix.as_ref().map(|p| format!("{p}/status"));
        let (c2, connected2, stop2, topic2, seen2, echo_ok2) = (
            client.clone(),
            connected.clone(),
            stop.clone(),
            availability.clone(),
            offline_seen.clone(),
            echo_ok.clone(),
        );
        let max_s = cfg.reconnect_max_s;
        let cmd_base = format!("{}/{node}/", cfg.prefix);
        let driver = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                let mut attempt = 0u32;
                let mut last_warn: Option<(Instant, String)> = None;
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            attempt = 0;
                            connected2.store(true, Ordering::Relaxed);
                            tracing::info!(broker = %peer.addr(), "mqtt connected");
                            let _ = c2.try_publish(&topic2, QoS::AtLeastOnce, true, "online");
                            // Hearing our own `offline` come back at shutdown proves the
                            // broker has passed it on to every subscriber.
                            // ...and hearing our events and verdicts back proves delivery.
                            let _ = c2.try_subscribe_many(
                                [topic2.clone(), format!("{cmd_base}+/event"), format!("{cmd_base}+/verdict")]
                                    .map(|path| rumqttc::SubscribeFilter::new(path, QoS::AtLeastOnce)),
                            );
                            if let Some(t) = &ha_status {
                                let _ = c2.try_subscribe(t, QoS::AtLeastOnce);
                            }
                            if !commands.is_empty() {
                                let _ =
                                    c2.try_subscribe(format!("{cmd_base}+/cmd"), QoS::AtLeastOnce);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p)))
                            if p.topic.starts_with(&cmd_base) && p.topic.ends_with("/cmd") =>
                        {
                            route_command(&c2, &commands, &cmd_base, &p.topic, &p.payload);
                        }
                        Ok(Event::Incoming(Packet::Publish(p)))
                            if p.topic.starts_with(&cmd_base)
                                && (p.topic.ends_with("/event") || p.topic.ends_with("/verdict")) =>
                        {
                            let _ = echoes.try_send((p.topic.clone(), p.payload.to_vec()));
                        }
                        Ok(Event::Incoming(Packet::Publish(p)))
                            if ha_status.as_deref() == Some(p.topic.as_str()) =>
                        {
                            if &p.payload[..] == b"online" {
                                tracing::info!("Home Assistant is online: sending discovery again");
                                ha_online2.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(a)))
                            if a.return_codes.contains(&rumqttc::SubscribeReasonCode::Failure) =>
                        {
                            if echo_ok2.swap(false, Ordering::Relaxed) {
                                tracing::warn!("the broker refused a subscription to our own topics (ACL?): messages count as delivered once handed over");
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p)))
                            if p.topic == topic2
                                && &p.payload[..] == b"offline"
                                && stop2.load(Ordering::Relaxed) =>
                        {
                            seen2.store(true, Ordering::Relaxed);
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                            connected2.store(false, Ordering::Relaxed);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            connected2.store(false, Ordering::Relaxed);
                            if stop2.load(Ordering::Relaxed) {
                                break;
                            }
                            let wait = backoff(attempt, max_s);
                            attempt += 1;
                            let why = peer.describe(&e);
                            // Rate-limited: one line per minute while the broker stays away
                            // for the same reason; a new reason is logged at once.
                            if last_warn.as_ref().is_none_or(|(t, last)| {
                                t.elapsed() > Duration::from_secs(60) || *last != why
                            }) {
                                tracing::warn!(
                                    "mqtt down: {why}; retrying in {:.1} s",
                                    wait.as_secs_f64()
                                );
                                last_warn = Some((Instant::now(), why));
                            } else {
                                tracing::debug!(
                                    attempt,
                                    "mqtt still down: {why}; retrying in {:.1} s",
                                    wait.as_secs_f64()
                                );
                            }
                            if crate::retry::sleep_unless(&stop2, wait) {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Ok(Mqtt {
            client,
            connected,
            echo_ok,
            ha_online,
            stop,
            driver: Some(driver),
            availability,
            offline_seen,
        })
    }

    /// Publishes retained `offline`, waits until the broker has delivered it (at most
    /// 2 s; this matters for the embedded broker, which dies with the process),
    /// disconnects, and joins the driver (at most 2 s more).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.connected.load(Ordering::Relaxed) {
            let _ = self
                .client
                .try_publish(&self.availability, QoS::AtLeastOnce, true, "offline");
            let deadline = Instant::now() + Duration::from_secs(2);
            while !self.offline_seen.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.client.try_disconnect();
        if let Some(d) = self.driver.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !d.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if d.is_finished() {
                let _ = d.join();
            } else {
                // The broker is unreachable; the Last Will says offline for us.
                tracing::warn!("mqtt driver did not stop within 2 s; leaving it");
            }
        }
    }
}

/// Hands a `cmd` message to its source, or answers on `cmd/result` why not.
fn route_command(
    client: &Client,
    commands: &HashMap<String, Sender<StationCommand>>,
    base: &str,
    topic: &str,
    payload: &[u8],
) {
    let source = &topic[base.len()..topic.len() - "/cmd".len()];
    let error = match (commands.get(source), StationCommand::parse(payload)) {
        (None, _) => format!("no source {source:?} on this node"),
        (Some(_), Err(e)) => e,
        (Some(tx), Ok(cmd)) => match tx.try_send(cmd) {
            Ok(()) => return,
            Err(crossbeam_channel::TrySendError::Full(_)) => "busy: try again".to_string(),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                format!("source {source:?} has stopped (its input ended)")
            }
        },
    };
    tracing::warn!(source, "rejected command: {error}");
    let reply = serde_json::json!({"ok": false, "error": error});
    let _ = client.try_publish(
        format!("{topic}/result"),
        QoS::AtLeastOnce,
        false,
        reply.to_string(),
    );
}
