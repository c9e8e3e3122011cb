//! hark listens to machines through microphones and raises alarms over MQTT when they
//! start to sound wrong. It learns "normal" from normal sound only.
//!
//! ```text
//! USB mic --cpal callback--> SPSC ring --> dsp thread --> inference thread --> alarm thread --> MQTT
//!           no alloc/lock    (ringbuf)     log-mel        candle embedding     rumqttc
//!                                          windows        + nearest normal     state, events,
//!                                          (realfft)      distance             health, LWT
//! ```
//!
//! | Thread (name) | Owns | Reads | Writes | Stops when |
//! |---|---|---|---|---|
//! | cpal callback / `capture` (file) | scratch buffers, ring producer | device or WAV | ring | the supervisor drops the [`capture::Capture`] |
//! | `dsp` | ring consumer, [`frontend::Front`] (sliding windows, or one per knock) | ring | window queue | producer gone and ring drained |
//! | `inference` | [`model::Embedder`], [`detector::Detector`], a tap station's state | window queue, station commands | report queue, bank file | window queue disconnected |
//! | `alarm` | MQTT client | report queue, [`health::SourceHealth`] | MQTT | report queue disconnected: publishes `offline` |
//! | `mqtt` | rumqttc connection | broker (incl. `cmd` topics) | broker, command queues | client disconnects |
//! | main (supervisor, [`daemon`]) | join handles, captures | SIGTERM/SIGINT flag | logs | all joined |
//!
//! Stage modules (`capture`, `dsp`, `inference`, `alarm`) hold only their thread
//! bodies; the algorithms (`spectrogram`, `frontend`, `tap`, `model`, `bank`,
//! `detector`, `explain`, `metrics`, `station`, `train`) are pure and tested on their own;
//! `daemon` wires everything in one place; `commands` holds one file per CLI command.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alarm;
pub mod bank;
pub mod broker;
pub mod capture;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod detector;
pub mod devices;
pub mod discovery;
pub mod dsp;
pub mod evidence;
pub mod explain;
pub mod frontend;
pub mod fsutil;
pub mod health;
pub mod inference;
pub mod journal;
pub mod metrics;
pub mod metrics_http;
pub mod model;
pub mod mqtt;
pub mod report;
pub mod retry;
pub mod spectrogram;
pub mod station;
pub mod tap;
pub mod train;
pub mod twin;
pub mod watchdog;
pub mod wav;
