//! Wiring and supervision: every ring, queue and thread of `hark run` is made here.
//!
//! Start-up loads and checks everything that can be wrong (models, banks, devices)
//! before it touches MQTT, so bad input fails fast with one line. Shutdown is ordered:
//! stop capture → dsp drains and exits → inference exits → alarm publishes `offline`
//! and disconnects → joins.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use crossbeam_channel::bounded;
use ringbuf::HeapRb;
use ringbuf::traits::Split;

use crate::alarm::SourceTopics;
use crate::bank::NormalBank;
use crate::capture::{Capture, Input};
use crate::config::{Broker, Config, Mode, SourceConfig};
use crate::frontend::{Front, FrontEnd};
use crate::health::SourceHealth;
use crate::inference::Inference;
use crate::model::Embedder;
use crate::mqtt::Mqtt;
use crate::spectrogram::FrontEndParams;
use crate::watchdog::{Watchdog, WatchedSource};

/// Windows queued between dsp and inference (~16 s at the default hop).
const WINDOW_QUEUE: usize = 64;
/// Audio chunks queued for the evidence thread (~16 s at 16 kHz, 4096 samples a chunk).
const EVIDENCE_QUEUE: usize = 64;
/// Reports queued between inference and alarm.
const REPORT_QUEUE: usize = 1024;

/// A source's model, bank and front-end geometry, checked against each other.
#[derive(Debug)]
pub struct Loaded {
    /// The network.
    pub embedder: Embedder,
    /// The bank, or `None` when the file does not exist yet (learn first).
    pub bank: Option<NormalBank>,
    /// Geometry with the config's window hop applied.
    pub front: FrontEndParams,
}

/// Loads a source's model and bank and checks they fit the config and each other.
pub fn load_source(s: &SourceConfig, cfg_file: &Path) -> anyhow::Result<Loaded> {
    let embedder = Embedder::load(&s.model)?;
    let meta = embedder.meta();
    let mode = match s.mode {
        Mode::Continuous => "continuous",
        Mode::Tap => "tap",
    };
    if meta.mode != mode {
        bail!(
            "{}: source {:?} has mode = {mode:?}, but model {} is a {:?} model",
            cfg_file.display(),
            s.name,
            s.model.display(),
            meta.mode
        );
    }
    let mut front = meta.front;
    if let Some(h) = s.window_hop_frames {
        if h > front.frames {
            bail!(
                "{}: source {:?}: window_hop_frames = {h} exceeds the model's frames = {}",
                cfg_file.display(),
                s.name,
                front.frames
            );
        }
        front.window_hop_frames = h;
    }
    let bank = if s.bank.exists() {
        let bank = NormalBank::load(&s.bank, embedder.hash(), &s.model)?;
        if bank.dim() != meta.output_dim() {
            bail!(
                "{}: embeddings have {} values, model {} makes {}",
                s.bank.display(),
                bank.dim(),
                s.model.display(),
                meta.output_dim()
            );
        }
        Some(bank)
    } else {
        None
    };
    Ok(Loaded {
        embedder,
        bank,
        front,
    })
}

struct Running {
    /// The evidence thread; it ends once dsp and inference have.
    evidence: Option<JoinHandle<()>>,
    name: String,
    capture: Option<Capture>,
    dsp: JoinHandle<()>,
    inference: JoinHandle<()>,
}

/// Runs the daemon until `shutdown` is set (SIGTERM/SIGINT).
pub fn run(cfg: &Config, shutdown: &AtomicBool) -> anyhow::Result<()> {
    let started = Instant::now();
    if cfg.sources.is_empty() {
        bail!("{}: no [[source]] is configured", cfg.file.display());
    }
    let mut prepared = Vec::new();
    for s in &cfg.sources {
        let loaded = load_source(s, &cfg.file)?;
        let input = Input::open(s)?;
        prepared.push((s, loaded, input));
    }
    if let Broker::Embedded { port } = cfg.mqtt.broker {
        crate::broker::start_embedded(port)?;
    }
    // Every source takes operator commands over MQTT; the driver routes them here.
    let mut command_rx = Vec::new();
    let mut command_tx = std::collections::HashMap::new();
    for s in &cfg.sources {
        let (tx, rx) = bounded(8);
        command_tx.insert(s.name.clone(), tx);
        command_rx.push(Some(rx));
    }
    let (echo_tx, echo_rx) = bounded(REPORT_QUEUE);
    let mqtt = Mqtt::start(&cfg.mqtt, &cfg.node, command_tx, echo_tx)?;
    let (report_tx, report_rx) = bounded(REPORT_QUEUE);
    let mut topics = Vec::new();
    let mut running = Vec::new();
    for ((i, (s, loaded, input)), commands) in prepared.into_iter().enumerate().zip(command_rx) {
        let health = Arc::new(SourceHealth::new());
        topics.push(SourceTopics {
            base: format!("{}/{}/{}", cfg.mqtt.prefix, cfg.node, s.name),
            health: health.clone(),
        });
        running.push(start_source(
            i,
            s,
            loaded,
            input,
            health,
            (report_tx.clone(), commands),
            cfg,
        )?);
    }
    let alarm_cfg = cfg.mqtt.clone();
    let journal =
        crate::journal::Journal::open(&cfg.state_dir.join("outbox.journal"), cfg.journal_max_bytes);
    let alarm_beat = Arc::new(crate::health::Beat::default());
    let mut watchdog = Watchdog::new(
        cfg.sources
            .iter()
            .zip(&topics)
            .map(|(s, t)| WatchedSource {
                name: s.name.clone(),
                health: t.health.clone(),
                tap: s.mode == Mode::Tap,
            })
            .collect(),
        alarm_beat.clone(),
    );
    let beat = alarm_beat.clone();
    let discovery = match &cfg.mqtt.discovery_prefix {
        Some(dp) => crate::discovery::messages(
            dp,
            &cfg.mqtt.prefix,
            &cfg.node,
            &cfg.sources
                .iter()
                .map(|s| crate::discovery::DiscoveredSource {
                    name: s.name.clone(),
                    base: format!("{}/{}/{}", cfg.mqtt.prefix, cfg.node, s.name),
                    tap: s.mode == Mode::Tap,
                })
                .collect::<Vec<_>>(),
        ),
        None => Vec::new(),
    };
    let summaries: Vec<SourceTopics> = topics
        .iter()
        .map(|t| SourceTopics {
            base: t.base.clone(),
            health: t.health.clone(),
        })
        .collect();
    let alarm = std::thread::Builder::new()
        .name("alarm".into())
        .spawn(move || {
            crate::alarm::run(
                mqtt,
                alarm_cfg,
                topics,
                report_rx,
                (journal, echo_rx),
                beat,
                discovery,
            )
        })
        .context("cannot start the alarm thread")?;
    let _metrics = match cfg.metrics_listen {
        Some(addr) => Some(crate::metrics_http::MetricsServer::start(
            addr,
            cfg.sources
                .iter()
                .zip(&summaries)
                .map(|(s, t)| crate::metrics_http::MetricSource {
                    name: s.name.clone(),
                    health: t.health.clone(),
                })
                .collect(),
        )?),
        None => None,
    };
    tracing::info!(
        sources = running.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "capturing"
    );
    let mut next_check = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if Instant::now() >= next_check {
            watchdog.check();
            next_check = Instant::now() + watchdog.period();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    watchdog.stopping();
    tracing::info!("shutting down");
    for r in &mut running {
        drop(r.capture.take());
    }
    for (r, t) in running.into_iter().zip(&summaries) {
        let stages = [
            ("dsp", Some(r.dsp)),
            ("inference", Some(r.inference)),
            ("evidence", r.evidence),
        ];
        for (stage, h) in stages {
            let Some(h) = h else { continue };
            if h.join().is_err() {
                tracing::error!(source = %r.name, stage, "stage panicked");
            }
        }
        let h = &t.health;
        tracing::info!(
            source = %r.name,
            windows = h.windows.load(Ordering::Relaxed),
            dropped_samples = h.dropped_samples.load(Ordering::Relaxed),
            dropped_windows = h.dropped_windows.load(Ordering::Relaxed),
            reopens = h.reopens.load(Ordering::Relaxed),
            xruns = h.xruns.load(Ordering::Relaxed),
            "source totals"
        );
    }
    drop(report_tx);
    if alarm.join().is_err() {
        tracing::error!("alarm stage panicked");
    }
    Ok(())
}

fn start_source(
    index: usize,
    s: &SourceConfig,
    loaded: Loaded,
    input: Input,
    health: Arc<SourceHealth>,
    (reports, commands): (
        crossbeam_channel::Sender<crate::report::Report>,
        Option<crossbeam_channel::Receiver<crate::station::StationCommand>>,
    ),
    cfg: &Config,
) -> anyhow::Result<Running> {
    let rate = input.sample_rate_hz();
    let lossless = input.lossless();
    let capacity = ((rate as f64 * s.ring_seconds) as usize).max(8192);
    let (producer, consumer) = HeapRb::<f32>::new(capacity).split();
    let front = match s.mode {
        Mode::Continuous => Front::Continuous(Box::new(FrontEnd::new(loaded.front, rate)?)),
        Mode::Tap => Front::Tap(Box::new(crate::tap::TapFront::new(
            s.tap,
            loaded.front,
            rate,
        )?)),
    };
    let (window_tx, window_rx) = bounded(WINDOW_QUEUE);
    // Evidence: dsp copies the audio, inference marks the events, a thread writes clips.
    let (audio_tx, evidence) = match &s.evidence {
        Some(ev) => {
            // The audio runs ahead of the decisions by at most the ring, the window
            // queue and one window; live, it is about one window.
            let hop_s = (loaded.front.window_hop_frames * loaded.front.hop) as f64
                / loaded.front.sample_rate_hz as f64;
            let window_s = (loaded.front.frames * loaded.front.hop) as f64
                / loaded.front.sample_rate_hz as f64;
            let lag_s = if lossless {
                s.ring_seconds + WINDOW_QUEUE as f64 * hop_s + window_s + 2.0
            } else {
                window_s + 4.0
            };
            let (audio_tx, audio_rx) = bounded(EVIDENCE_QUEUE);
            let (note_tx, note_rx) = bounded(16);
            let ev2 = ev.clone();
            let thread = std::thread::Builder::new()
                .name("evidence".into())
                .spawn(move || crate::evidence::run(ev2, rate, lag_s, audio_rx, note_rx))
                .context("cannot start an evidence thread")?;
            (Some(audio_tx), Some((ev.clone(), note_tx, thread)))
        }
        None => (None, None),
    };
    let (evidence_for_inference, evidence_thread) = match evidence {
        Some((cfg, notes, thread)) => (Some((cfg, notes)), Some(thread)),
        None => (None, None),
    };
    let inference = Inference {
        source: index,
        name: s.name.clone(),
        embedder: loaded.embedder,
        bank: loaded.bank,
        bank_path: s.bank.clone(),
        learn_seconds: s.learn_seconds,
        decision: (s.raise_k, s.raise_n, s.clear_m, s.threshold_scale),
        event_update_s: cfg.mqtt.event_update_s,
        tap: s.mode == Mode::Tap,
        commands,
        lossless,
        health: health.clone(),
        evidence: evidence_for_inference,
    };
    let inference = std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || inference.run(window_rx, reports))
        .context("cannot start an inference thread")?;
    let capture = input
        .start(s, producer, health.clone())
        .with_context(|| format!("source {:?}", s.name))?;
    // The ring holds seconds of audio: the dsp thread starting a moment later is fine.
    let stop = capture.stop_flag();
    let dsp = std::thread::Builder::new()
        .name("dsp".into())
        .spawn(move || {
            crate::dsp::run(consumer, front, window_tx, lossless, health, stop, audio_tx)
        })
        .context("cannot start a dsp thread")?;
    tracing::info!(source = %s.name, rate_hz = rate, "capture started");
    Ok(Running {
        evidence: evidence_thread,
        name: s.name.clone(),
        capture: Some(capture),
        dsp,
        inference,
    })
}
