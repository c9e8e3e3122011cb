//! Configuration: the raw TOML shape, and the validated [`Config`] the stages run on.
//!
//! Parsing happens in two steps (ripgrep's low/high args): [`RawConfig`] mirrors the file
//! with `deny_unknown_fields`, then [`RawConfig::validate`] checks ranges and produces a
//! [`Config`]. Every error names the file, the key and the offending value.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A configuration error: always names the file, and the key where one is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse, or a key is unknown or of the wrong type.
    #[error("{file}: {message}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// The parser's message, flattened to one line (it names line and key).
        message: String,
    },
    /// A key has a value outside its allowed range.
    #[error("{file}: key `{key}` = {value}: {why}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The dotted key, e.g. `source[0].mode`.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

mod mqtt;
mod raw;
pub use mqtt::{CREDENTIALS_DIRECTORY, expand_credentials};
pub use raw::{RawConfig, RawMetrics, RawMqtt, RawSource};

/// Validated configuration: what the daemon and the commands run on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: PathBuf,
    /// MQTT node id.
    pub node: String,
    /// Directory for banks; relative bank paths resolve here.
    pub state_dir: PathBuf,
    /// Size cap of the outage journal in bytes.
    pub journal_max_bytes: u64,
    /// Where the Prometheus endpoint listens (loopback only), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log level filter.
    pub log_level: String,
    /// The alarm stage's settings.
    pub mqtt: MqttConfig,
    /// One entry per source, in file order.
    pub sources: Vec<SourceConfig>,
}

/// Where to find the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// An external broker.
    External {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Start rumqttd inside the process, bound to 127.0.0.1 on this port.
    Embedded {
        /// TCP port on loopback.
        port: u16,
    },
}

/// TLS to an external broker (`mqtts://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of the CA(s) trusted to sign the broker's certificate; `None`: the
    /// system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_auth: Option<ClientAuth>,
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// Certificate (chain), leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// User name and where the password comes from. Holds no secret itself: the password
/// is read when the connection starts ([`crate::mqtt::Mqtt::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// User name sent in CONNECT.
    pub username: String,
    /// Where to read the password, if there is one.
    pub password: Option<PasswordSource>,
}

/// Where the MQTT password is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of this file.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

/// The alarm stage's settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// The config file (named in messages about the keys below).
    pub file: PathBuf,
    /// Which broker.
    pub broker: Broker,
    /// TLS settings; `Some` exactly when the url is `mqtts://`.
    pub tls: Option<TlsConfig>,
    /// Credentials, when `username` is set.
    pub auth: Option<Auth>,
    /// Topic prefix.
    pub prefix: String,
    /// Client id.
    pub client_id: String,
    /// Keep-alive in seconds.
    pub keep_alive_s: u64,
    /// Reconnect backoff cap.
    pub reconnect_max_s: f64,
    /// Health publish period.
    pub health_interval_s: f64,
    /// State publish period between changes.
    pub state_interval_s: f64,
    /// Event update period during an anomaly.
    pub event_update_s: f64,
    /// Home Assistant discovery prefix, or `None` when discovery is off.
    pub discovery_prefix: Option<String>,
}

/// What a source listens to.
#[derive(Debug, Clone, PartialEq)]
pub enum Device {
    /// A cpal input device: stable id, name substring or `default`.
    Cpal(String),
    /// A WAV file replayed as if it were a microphone.
    File {
        /// The WAV file.
        path: PathBuf,
        /// Pace it in real time (true) or as fast as the pipeline takes it.
        realtime: bool,
        /// With `realtime`: this many times real time.
        speed: f64,
    },
}

/// Continuous listening or one verdict per knock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sliding windows over continuous sound.
    Continuous,
    /// One window per detected knock.
    Tap,
}

/// One validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Topic segment.
    pub name: String,
    /// What to listen to.
    pub device: Device,
    /// Listening mode.
    pub mode: Mode,
    /// Model path.
    pub model: PathBuf,
    /// Bank path (resolved against `state_dir`).
    pub bank: PathBuf,
    /// Seconds of sound to learn from when the bank is missing.
    pub learn_seconds: f64,
    /// Channel to pick, or `None` to mix all.
    pub channel: Option<usize>,
    /// Requested capture rate.
    pub sample_rate_hz: Option<u32>,
    /// Requested channel count.
    pub channels: Option<u16>,
    /// Requested native sample format.
    pub sample_format: Option<cpal::SampleFormat>,
    /// Override of the model's window hop, in frames.
    pub window_hop_frames: Option<usize>,
    /// k of k-of-n raise.
    pub raise_k: usize,
    /// n of k-of-n raise.
    pub raise_n: usize,
    /// Clean windows to clear.
    pub clear_m: usize,
    /// Threshold multiplier.
    pub threshold_scale: f64,
    /// Ring capacity in seconds.
    pub ring_seconds: f64,
    /// Evidence clips of events (continuous sources), or `None` when off.
    pub evidence: Option<crate::evidence::EvidenceConfig>,
    /// Knock detection (tap mode); `post_ms` follows from the model's window.
    pub tap: crate::tap::TapParams,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// Parses and validates config text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        raw.validate(file)
    }

    /// The config path `hark run` uses when none is given.
    pub fn default_path() -> PathBuf {
        let system = PathBuf::from("/etc/hark/hark.toml");
        if system.exists() {
            system
        } else {
            PathBuf::from("config/hark.toml")
        }
    }
}

/// Flattens toml's multi-line message (with its source excerpt) into one line. Control
/// characters left in the excerpt (a lone `\r`, say) are escaped, so it stays one line.
fn one_line(message: &str) -> String {
    let parts: Vec<String> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "|" && !l.starts_with("|") && !l.starts_with('^'))
        .map(|l| crate::model::single_line(&l))
        .collect();
    parts.join(": ")
}

impl RawConfig {
    /// Checks every value and derives the typed config.
    pub fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Debug, why: &str| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            value: format!("{value:?}"),
            why: why.to_string(),
        };
        if !is_topic_segment(&self.node) {
            return Err(invalid("node", &self.node, TOPIC_RULE));
        }
        let level = self.log_level.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(invalid(
                "log_level",
                &self.log_level,
                "expected error, warn, info, debug or trace",
            ));
        }
        let mqtt = self.mqtt.validate(&self.node, file, &invalid)?;
        if !(4..=1 << 30).contains(&self.journal_max_kb) {
            return Err(invalid(
                "journal_max_kb",
                &self.journal_max_kb,
                "must be between 4 and 1073741824",
            ));
        }
        let metrics_listen = match &self.metrics.listen {
            None => None,
            Some(text) => {
                let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                    invalid(
                        "metrics.listen",
                        text,
                        "expected IP:PORT, e.g. 127.0.0.1:9464",
                    )
                })?;
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        "metrics.listen",
                        text,
                        "must be a loopback address (127.0.0.1 or [::1]); put a reverse proxy in front to expose it",
                    ));
                }
                Some(addr)
            }
        };
        let state_dir = self
            .state_dir
            .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut names = HashSet::new();
        let mut sources = Vec::new();
        for (i, s) in self.source.into_iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if !is_topic_segment(&s.name) {
                return Err(invalid(&key("name"), &s.name, TOPIC_RULE));
            }
            if !names.insert(s.name.clone()) {
                return Err(invalid(
                    &key("name"),
                    &s.name,
                    "two sources share this name",
                ));
            }
            let device = match s.device.strip_prefix("file:") {
                Some("") => {
                    return Err(invalid(&key("device"), &s.device, "file: needs a path"));
                }
                Some(path) => {
                    if !(s.replay_speed.is_finite() && (0.01..=1000.0).contains(&s.replay_speed)) {
                        return Err(invalid(
                            &key("replay_speed"),
                            &s.replay_speed,
                            "must be between 0.01 and 1000",
                        ));
                    }
                    Device::File {
                        path: path.into(),
                        realtime: s.realtime,
                        speed: s.replay_speed,
                    }
                }
                None if s.device.trim().is_empty() => {
                    return Err(invalid(&key("device"), &s.device, "empty device"));
                }
                None => Device::Cpal(s.device.clone()),
            };
            let mode = match s.mode.as_str() {
                "continuous" => Mode::Continuous,
                "tap" => Mode::Tap,
                _ => return Err(invalid(&key("mode"), &s.mode, "expected continuous or tap")),
            };
            if !(s.learn_seconds > 0.0 && s.learn_seconds <= MAX_LEARN_SECONDS) {
                return Err(invalid(
                    &key("learn_seconds"),
                    &s.learn_seconds,
                    "must be > 0 and at most 7200 (2 hours; for longer, record clips and `hark enroll` them)",
                ));
            }
            if s.raise_n == 0 || s.raise_k == 0 || s.raise_k > s.raise_n || s.raise_n > 64 {
                return Err(invalid(
                    &key("raise_k"),
                    &(s.raise_k, s.raise_n),
                    "need 1 <= raise_k <= raise_n <= 64",
                ));
            }
            if s.clear_m == 0 {
                return Err(invalid(&key("clear_m"), &s.clear_m, "must be >= 1"));
            }
            if !(s.threshold_scale.is_finite() && s.threshold_scale > 0.0) {
                return Err(invalid(
                    &key("threshold_scale"),
                    &s.threshold_scale,
                    "must be > 0",
                ));
            }
            if !(s.ring_seconds.is_finite() && (0.1..=600.0).contains(&s.ring_seconds)) {
                return Err(invalid(
                    &key("ring_seconds"),
                    &s.ring_seconds,
                    "must be in 0.1..=600",
                ));
            }
            if let Some(rate) = s.sample_rate_hz
                && !(4000..=384_000).contains(&rate)
            {
                return Err(invalid(
                    &key("sample_rate_hz"),
                    &rate,
                    "must be in 4000..=384000",
                ));
            }
            for (k, v, lo, hi) in [
                ("evidence_pre_s", s.evidence_pre_s, 0.0, 60.0),
                ("evidence_post_s", s.evidence_post_s, 0.0, 60.0),
                ("evidence_max_mb", s.evidence_max_mb, 0.1, 1e6),
                ("evidence_max_days", s.evidence_max_days, 0.01, 3650.0),
                ("evidence_min_free_mb", s.evidence_min_free_mb, 0.0, 1e9),
            ] {
                if !(v.is_finite() && (lo..=hi).contains(&v)) {
                    return Err(invalid(&key(k), &v, &format!("must be in {lo}..={hi}")));
                }
            }
            if s.evidence_max_files == 0 {
                return Err(invalid(&key("evidence_max_files"), &0, "must be >= 1"));
            }
            let wanted = match mode {
                Mode::Continuous => s.evidence,
                Mode::Tap => s.evidence && s.evidence_defective,
            };
            let evidence = wanted.then(|| crate::evidence::EvidenceConfig {
                dir: state_dir.join("evidence").join(&s.name),
                pre_s: s.evidence_pre_s,
                post_s: s.evidence_post_s,
                max_files: s.evidence_max_files,
                max_mb: s.evidence_max_mb,
                max_days: s.evidence_max_days,
                min_free_mb: s.evidence_min_free_mb,
            });
            if !(s.tap_threshold_db.is_finite() && (3.0..=80.0).contains(&s.tap_threshold_db)) {
                return Err(invalid(
                    &key("tap_threshold_db"),
                    &s.tap_threshold_db,
                    "must be in 3..=80",
                ));
            }
            if !(s.tap_min_level_dbfs.is_finite() && (-120.0..=0.0).contains(&s.tap_min_level_dbfs))
            {
                return Err(invalid(
                    &key("tap_min_level_dbfs"),
                    &s.tap_min_level_dbfs,
                    "must be in -120..=0",
                ));
            }
            if !(s.tap_refractory_ms.is_finite()
                && (10.0..=10_000.0).contains(&s.tap_refractory_ms))
            {
                return Err(invalid(
                    &key("tap_refractory_ms"),
                    &s.tap_refractory_ms,
                    "must be in 10..=10000",
                ));
            }
            if !(s.tap_pre_ms.is_finite() && (0.0..=100.0).contains(&s.tap_pre_ms)) {
                return Err(invalid(
                    &key("tap_pre_ms"),
                    &s.tap_pre_ms,
                    "must be in 0..=100",
                ));
            }
            if s.channels == Some(0) {
                return Err(invalid(&key("channels"), &0, "must be >= 1"));
            }
            let sample_format = match &s.sample_format {
                None => None,
                Some(f) => Some(crate::devices::parse_format(f).ok_or_else(|| {
                    invalid(
                        &key("sample_format"),
                        f,
                        "expected i8, i16, i32, u8, u16, u32, f32 or f64",
                    )
                })?),
            };
            if s.window_hop_frames == Some(0) {
                return Err(invalid(&key("window_hop_frames"), &0, "must be >= 1"));
            }
            let bank = s
                .bank
                .unwrap_or_else(|| PathBuf::from(format!("{}.bank.safetensors", s.name)));
            let bank = if bank.is_relative() {
                state_dir.join(bank)
            } else {
                bank
            };
            sources.push(SourceConfig {
                name: s.name,
                device,
                mode,
                model: s.model.unwrap_or_else(|| match mode {
                    Mode::Continuous => "models/default.safetensors".into(),
                    Mode::Tap => "models/tap.safetensors".into(),
                }),
                bank,
                learn_seconds: s.learn_seconds,
                channel: s.channel,
                sample_rate_hz: s.sample_rate_hz,
                channels: s.channels,
                sample_format,
                window_hop_frames: s.window_hop_frames,
                raise_k: s.raise_k,
                raise_n: s.raise_n,
                clear_m: s.clear_m,
                threshold_scale: s.threshold_scale,
                ring_seconds: s.ring_seconds,
                evidence,
                tap: crate::tap::TapParams {
                    threshold_db: s.tap_threshold_db,
                    min_level_dbfs: s.tap_min_level_dbfs,
                    refractory_ms: s.tap_refractory_ms,
                    pre_ms: s.tap_pre_ms,
                    ..Default::default()
                },
            });
        }
        Ok(Config {
            file: file.to_path_buf(),
            node: self.node,
            state_dir,
            journal_max_bytes: self.journal_max_kb * 1024,
            metrics_listen,
            log_level: level,
            mqtt,
            sources,
        })
    }
}

type Invalid<'a> = dyn Fn(&str, &dyn std::fmt::Debug, &str) -> ConfigError + 'a;

/// Longest first learning (`learn_seconds`). Every window is held until the bank is
/// built: 2 hours is ~28,000 windows of the default model (~37 MB) and a build of
/// ~12 s here; a day would be 340,000 windows, over 400 MB, minutes of building.
pub const MAX_LEARN_SECONDS: f64 = 7200.0;

const TOPIC_RULE: &str = "must be non-empty and contain no '/', '#', '+' or spaces";

fn is_topic_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '#', '+', ' ', '\0'])
}

#[cfg(test)]
mod tests;
