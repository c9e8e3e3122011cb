//! One integration-test binary: real parts (cpal over ALSA, mosquitto, rumqttd, real
//! recordings), no sound card.

// Helpers: shared data, free ports, brokers, the hark process, an MQTT collector.
mod util;
// cpal through an ALSA `file` PCM: what capture delivers equals the file.
mod capture;
// The dsp front end fed random chunk sizes equals one whole-file pass.
mod streaming;
// `hark run` end to end: file source → MQTT, against mosquitto and the embedded broker.
mod daemon;
// MQTT over TLS against mosquitto: mutual TLS, passwords, wrong CA or password.
mod tls;
// Bad config, model, WAV, bank or device: one line, non-zero exit, no panic.
mod bad_input;
// `enroll`, `score` and `train` on real recordings; the shipped models' commands.
mod offline;
// `eval`: the DCASE protocol, `--holdout`, several machines or domains in one set.
mod eval;
// The shipped model against its stored output for a fixed window.
mod golden;
// Tap mode: one verdict per knock on a real knocking station.
mod tap;
// Faults survived without a restart: a lost input, a broker outage, a stalled stage.
mod faults;
// Nothing listens but the loopback embedded broker.
mod sockets;
// Operator commands on a continuous source: false_alarm, mute, learn_start/stop.
mod commands;
// Home Assistant MQTT discovery.
mod homeassistant;
// Explanations: the band that changed, against the nearest normal clip.
mod explain;
// Operator experience: progress bars, `score --plot`, `hark status`.
mod operator;
