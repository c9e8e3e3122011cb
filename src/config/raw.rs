//! The config file as written: serde structs that deny unknown keys, and the
//! defaults of every key. `RawConfig::validate` (in the parent module) turns them
//! into a `Config`.

use std::path::PathBuf;

use serde::Deserialize;

/// The file as written. Every struct denies unknown keys, so a typo is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// MQTT node id.
    #[serde(default = "default_node")]
    pub node: String,
    /// Where banks (and later journals) are written; relative bank paths resolve here.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Size cap of the outage journal (`state_dir/outbox.journal`) in KiB.
    #[serde(default = "default_journal_max_kb")]
    pub journal_max_kb: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// The `[mqtt]` table.
    #[serde(default)]
    pub mqtt: RawMqtt,
    /// The `[metrics]` table.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// One `[[source]]` table per microphone (or file).
    #[serde(default)]
    pub source: Vec<RawSource>,
}

/// The `[metrics]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Loopback address of the Prometheus endpoint; absent: no endpoint.
    pub listen: Option<String>,
}

/// The `[mqtt]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS); absent means an embedded
    /// broker on 127.0.0.1.
    pub url: Option<String>,
    /// Topic prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Port of the embedded broker (only when `url` is absent).
    #[serde(default = "default_embedded_port")]
    pub embedded_port: u16,
    /// MQTT client id; defaults to `hark-<node>`.
    pub client_id: Option<String>,
    /// User name sent to the broker.
    pub username: Option<String>,
    /// File whose first line is the password (never the password itself).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// PEM file of the CA certificate(s) that sign the broker's certificate
    /// (`mqtts://` only); absent: the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) hark presents to the broker (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Keep-alive interval in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Upper bound of the reconnect backoff in seconds.
    #[serde(default = "default_backoff_max")]
    pub reconnect_max_s: f64,
    /// How often `health` is published, in seconds.
    #[serde(default = "default_health_interval")]
    pub health_interval_s: f64,
    /// At most one `state` message per this many seconds between state changes.
    #[serde(default = "default_state_interval")]
    pub state_interval_s: f64,
    /// While an anomaly lasts, an `update` event every this many seconds.
    #[serde(default = "default_update_interval")]
    pub event_update_s: f64,
    /// Publish Home Assistant MQTT discovery configs.
    #[serde(default = "default_true")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
}

impl Default for RawMqtt {
    fn default() -> Self {
        toml::from_str("").expect("an empty [mqtt] table is valid: every key has a default")
    }
}

/// One `[[source]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Topic segment; unique per node.
    pub name: String,
    /// Stable cpal id, name substring, `default`, or `file:PATH.wav`.
    #[serde(default = "default_device")]
    pub device: String,
    /// `file:` devices only: replay at real-time pace (true) or as fast as possible.
    #[serde(default = "default_true")]
    pub realtime: bool,
    /// `file:` devices with `realtime` only: pace at this many times real time (for
    /// accelerated soak tests; samples that do not fit the ring are dropped and counted).
    #[serde(default = "default_replay_speed")]
    pub replay_speed: f64,
    /// `continuous` or `tap`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Path of the embedding network (safetensors); absent: `models/default.safetensors`,
    /// or `models/tap.safetensors` in tap mode.
    pub model: Option<PathBuf>,
    /// Path of the normal bank; missing file: learn, then save here.
    pub bank: Option<PathBuf>,
    /// Seconds of sound to learn from when there is no bank.
    #[serde(default = "default_learn_seconds")]
    pub learn_seconds: f64,
    /// Channel to use (0-based), or absent to mix all channels.
    pub channel: Option<usize>,
    /// Requested capture rate in Hz; absent: the device's default.
    pub sample_rate_hz: Option<u32>,
    /// Requested channel count; absent: the device's default.
    pub channels: Option<u16>,
    /// Requested native sample format (`i16`, `i32`, `f32`, ...); absent: the default.
    pub sample_format: Option<String>,
    /// Windows per second of audio are one every `window_hop_frames` spectrogram frames.
    pub window_hop_frames: Option<usize>,
    /// Raise an anomaly when `raise_k` of the last `raise_n` windows are over threshold.
    #[serde(default = "default_raise_k")]
    pub raise_k: usize,
    /// See `raise_k`.
    #[serde(default = "default_raise_n")]
    pub raise_n: usize,
    /// Clear it after this many consecutive windows under threshold.
    #[serde(default = "default_clear_m")]
    pub clear_m: usize,
    /// Multiplies the bank's calibrated threshold (>1: fewer alarms).
    #[serde(default = "default_one")]
    pub threshold_scale: f64,
    /// Capacity of the capture ring in seconds of audio.
    #[serde(default = "default_ring_seconds")]
    pub ring_seconds: f64,
    /// Continuous sources: write the sound of every event to `state_dir/evidence/<name>/`.
    #[serde(default = "default_true")]
    pub evidence: bool,
    /// Tap sources: write the sound of every defective knock (off by default; set
    /// `evidence_pre_s` and `evidence_post_s` to fractions of a second for knocks).
    #[serde(default)]
    pub evidence_defective: bool,
    /// Seconds of sound kept before an event's start.
    #[serde(default = "default_evidence_roll")]
    pub evidence_pre_s: f64,
    /// Seconds of sound kept after its end.
    #[serde(default = "default_evidence_roll")]
    pub evidence_post_s: f64,
    /// Most evidence clips kept (the oldest go first).
    #[serde(default = "default_evidence_files")]
    pub evidence_max_files: usize,
    /// Most megabytes of evidence kept.
    #[serde(default = "default_evidence_mb")]
    pub evidence_max_mb: f64,
    /// Oldest evidence kept, in days.
    #[serde(default = "default_evidence_days")]
    pub evidence_max_days: f64,
    /// No evidence clip is started while less than this many megabytes are free.
    #[serde(default = "default_evidence_min_free")]
    pub evidence_min_free_mb: f64,
    /// Tap mode: a knock is a frame this many dB over the noise floor.
    #[serde(default = "default_tap_threshold")]
    pub tap_threshold_db: f32,
    /// Tap mode: and the frame must be at least this loud (dBFS).
    #[serde(default = "default_tap_min_level")]
    pub tap_min_level_dbfs: f32,
    /// Tap mode: no second knock within this many milliseconds of one.
    #[serde(default = "default_tap_refractory")]
    pub tap_refractory_ms: f32,
    /// Tap mode: milliseconds of sound kept before each onset.
    #[serde(default = "default_tap_pre")]
    pub tap_pre_ms: f32,
}

fn default_evidence_min_free() -> f64 {
    100.0
}
fn default_node() -> String {
    "hark".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_prefix() -> String {
    "hark".into()
}
fn default_embedded_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    15
}
fn default_backoff_max() -> f64 {
    30.0
}
fn default_health_interval() -> f64 {
    10.0
}
fn default_state_interval() -> f64 {
    1.0
}
fn default_update_interval() -> f64 {
    10.0
}
fn default_device() -> String {
    "default".into()
}
fn default_true() -> bool {
    true
}
fn default_mode() -> String {
    "continuous".into()
}
fn default_learn_seconds() -> f64 {
    600.0
}
fn default_raise_k() -> usize {
    crate::detector::RAISE_K
}
fn default_raise_n() -> usize {
    crate::detector::RAISE_N
}
fn default_clear_m() -> usize {
    crate::detector::CLEAR_M
}
fn default_one() -> f64 {
    1.0
}
fn default_ring_seconds() -> f64 {
    4.0
}
fn default_tap_threshold() -> f32 {
    crate::tap::TapParams::default().threshold_db
}
fn default_tap_min_level() -> f32 {
    crate::tap::TapParams::default().min_level_dbfs
}
fn default_tap_refractory() -> f32 {
    crate::tap::TapParams::default().refractory_ms
}
fn default_tap_pre() -> f32 {
    crate::tap::TapParams::default().pre_ms
}

fn default_journal_max_kb() -> u64 {
    1024
}

fn default_replay_speed() -> f64 {
    1.0
}

fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

fn default_evidence_roll() -> f64 {
    5.0
}

fn default_evidence_files() -> usize {
    200
}

fn default_evidence_mb() -> f64 {
    100.0
}

fn default_evidence_days() -> f64 {
    30.0
}
