//! Stage 3, inference: embeds windows, learns a bank or scores against it, and turns
//! scores into state and event reports for the alarm stage.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::bank::{NormalBank, Origin, RowNote};
use crate::detector::{Detector, Transition};
use crate::explain::Explanation;
use crate::frontend::Window;
use crate::health::SourceHealth;
use crate::model::Embedder;
use crate::report::{Event, EventKind, Report, SourceState};
use crate::station::StationCommand;

mod operator;
use operator::{Station, Update};

/// Most embeddings a bank keeps (k-center coreset); scoring stays ~100 µs per window.
pub const MAX_BANK: usize = 2048;
/// Windows scored in one network call when several are waiting.
const MAX_BATCH: usize = 16;
/// Longest wait for a window before the loop turns anyway (a sign of life).
const IDLE_BEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything one source's inference thread owns.
#[derive(Debug)]
pub struct Inference {
    /// Index of the source (for reports).
    pub source: usize,
    /// Source name (for event ids and logs).
    pub name: String,
    /// The network.
    pub embedder: Embedder,
    /// The bank, if one was loaded; otherwise the thread learns one.
    pub bank: Option<NormalBank>,
    /// Where a learned bank is saved.
    pub bank_path: PathBuf,
    /// Seconds of sound to learn from.
    pub learn_seconds: f64,
    /// Hysteresis and threshold settings: (raise_k, raise_n, clear_m, threshold_scale).
    pub decision: (usize, usize, usize, f64),
    /// Stream seconds between `update` events.
    pub event_update_s: f64,
    /// Block instead of dropping when the alarm queue is full.
    pub lossless: bool,
    /// Tap mode: one verdict per window (knock), no hysteresis, no events.
    pub tap: bool,
    /// Station commands from MQTT (tap sources only).
    pub commands: Option<Receiver<StationCommand>>,
    /// Shared counters.
    pub health: Arc<SourceHealth>,
    /// Evidence clips: where they go, and the evidence thread to tell.
    pub evidence: Option<(
        crate::evidence::EvidenceConfig,
        Sender<crate::evidence::Note>,
    )>,
}

enum Phase {
    Learning {
        embeddings: Vec<Vec<f32>>,
        origins: Vec<Origin>,
        notes: Vec<Option<RowNote>>,
    },
    Armed(Detector),
}

struct Running {
    event: Event,
    last_update_t: f64,
}

/// A window's score, the threshold it was held to, and when the anomalous sound
/// began if this window raises an event.
struct Scored {
    score: f32,
    threshold: f32,
    onset_t: f64,
    /// Why the window scored as it did: only for a window that raises an event or
    /// beats the running event's highest score.
    explain: Option<Explanation>,
}

/// Start times of the last `raise_n` windows that were over threshold, so an event
/// says when the anomalous sound began, not when the k-of-n rule was satisfied.
#[derive(Default)]
struct Recent {
    over: std::collections::VecDeque<Option<f64>>,
}

impl Recent {
    fn push(&mut self, over_start: Option<f64>, n: usize) {
        self.over.push_back(over_start);
        while self.over.len() > n {
            self.over.pop_front();
        }
    }

    fn earliest_over(&self) -> Option<f64> {
        self.over.iter().flatten().copied().reduce(f64::min)
    }
}

impl Inference {
    /// The inference thread body; returns when the dsp stage hangs up.
    pub fn run(self, windows: Receiver<Window>, reports: Sender<Report>) {
        let send = |r: Report| {
            if self.lossless {
                let _ = reports.send(r);
            } else if let Err(TrySendError::Full(_)) = reports.try_send(r) {
                tracing::warn!(source = %self.name, "alarm queue full: report dropped");
            }
        };
        let mut phase = match self.bank.clone() {
            Some(bank) => Phase::Armed(self.detector(bank)),
            None => {
                tracing::info!(source = %self.name, seconds = self.learn_seconds, "no bank: learning");
                Phase::Learning {
                    embeddings: Vec::new(),
                    origins: Vec::new(),
                    notes: Vec::new(),
                }
            }
        };
        // Bank rows learned while running name this run as their clip.
        let live_clip = format!("live:{}", crate::report::rfc3339(SystemTime::now()));
        let n_mels = self.embedder.meta().front.n_mels;
        let bounds = crate::explain::band_bounds_hz(&self.embedder.meta().front);
        let note_of = |w: &Window| RowNote {
            profile: crate::explain::profile(&w.mels, n_mels),
            clip: live_clip.clone(),
            t: w.t_start_s as f32,
            item: None,
        };
        let initial = match phase {
            Phase::Learning { .. } => SourceState::Learning,
            Phase::Armed(_) => SourceState::Normal,
        };
        send(Report::State {
            source: self.source,
            state: initial,
            score: None,
            threshold: None,
            t: 0.0,
        });
        let mut running: Option<Running> = None;
        let mut recent = Recent::default();
        let mut last_t = 0.0;
        let mut batch: Vec<Window> = Vec::with_capacity(MAX_BATCH);
        let mut station = Station::default();
        let mut commands = self
            .commands
            .clone()
            .unwrap_or_else(crossbeam_channel::never);
        // A new bank being built for an operator command.
        let mut update: Option<Update> = None;
        loop {
            self.health.inference_beat.tick();
            if self.health.windows.load(Ordering::Relaxed) > 0 {
                crate::watchdog::injected_stall("inference");
            }
            let built = update
                .as_ref()
                .map_or_else(crossbeam_channel::never, |u| u.done().clone());
            let first = crossbeam_channel::select! {
                recv(windows) -> w => match w {
                    Ok(w) => w,
                    Err(_) => break,
                },
                recv(commands) -> c => {
                    match c {
                        Ok(c) => {
                            let mut payload = self.command(c, &mut phase, &mut station, &mut update);
                            // A lossless replay waits, so every window after the
                            // command is scored with the new bank.
                            if self.lossless && payload.is_none() {
                                if let Some(u) = update.take() {
                                    payload = Some(self.wait_update(u, &mut phase));
                                }
                            }
                            if let Some(payload) = payload {
                                send(Report::CmdResult { source: self.source, payload });
                            }
                        }
                        // The MQTT side is gone: stop listening rather than spin.
                        Err(_) => commands = crossbeam_channel::never(),
                    }
                    continue;
                }
                recv(built) -> b => {
                    if let Some(u) = update.take() {
                        let payload = self.finish_update(u, b, &mut phase);
                        send(Report::CmdResult { source: self.source, payload });
                    }
                    continue;
                }
                // Idle is fine; the tick above shows the loop still turns.
                default(IDLE_BEAT) => continue,
            };
            batch.clear();
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match windows.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let began = Instant::now();
            let slices: Vec<&[f32]> = batch.iter().map(|w| w.mels.as_slice()).collect();
            let embeddings = match self.embedder.embed(&slices) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(source = %self.name, "embedding failed: {e}");
                    self.health
                        .windows_done
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    continue;
                }
            };
            self.health
                .windows
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (w, emb) in batch.iter().zip(embeddings) {
                last_t = w.t_end_s;
                match &mut phase {
                    Phase::Learning {
                        embeddings,
                        origins,
                        notes,
                    } => {
                        embeddings.push(emb);
                        notes.push(Some(note_of(w)));
                        // One stretch of sound: a window's (or knock's) neighbours
                        // are those next to it in the stream.
                        origins.push(Origin {
                            segment: 0,
                            index: w.index as u32,
                        });
                        if w.t_end_s >= self.learn_seconds {
                            if let Some(det) = self.finish_learning(embeddings, origins, notes) {
                                send(Report::State {
                                    source: self.source,
                                    state: SourceState::Normal,
                                    score: None,
                                    threshold: Some(det.threshold()),
                                    t: w.t_end_s,
                                });
                                phase = Phase::Armed(det);
                            }
                        }
                    }
                    Phase::Armed(det) if self.tap => {
                        let (score, nearest) = det.nearest(&emb);
                        self.health.set_score(score, det.threshold());
                        let note = note_of(w);
                        let defective = score > det.threshold();
                        let explain = defective
                            .then(|| {
                                crate::explain::against(det.bank(), nearest, &note.profile, &bounds)
                            })
                            .flatten();
                        if let Some(collected) = station.enrolling.as_mut() {
                            collected.push((emb.clone(), note.clone()));
                        }
                        station.last = Some((emb.clone(), note));
                        let millis = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_millis())
                            .unwrap_or(0);
                        let id = format!("{}-{}-{millis}", self.name, w.index);
                        // Evidence of a defective knock: its window plus the pre/post roll.
                        let clip = match &self.evidence {
                            Some((cfg, notes)) if defective => {
                                let _ = notes.try_send(crate::evidence::Note::Start {
                                    id: id.clone(),
                                    t_start: w.t_start_s,
                                });
                                let _ = notes.try_send(crate::evidence::Note::End {
                                    id: id.clone(),
                                    t_end: w.t_end_s,
                                });
                                Some(cfg.clip_path(&id).display().to_string())
                            }
                            _ => None,
                        };
                        let verdict = crate::report::Verdict {
                            id,
                            ts: SystemTime::now(),
                            defective,
                            score,
                            threshold: det.threshold(),
                            t: w.t_start_s,
                            explain,
                            clip,
                        };
                        send(Report::Verdict {
                            source: self.source,
                            verdict,
                        });
                        send(Report::State {
                            source: self.source,
                            state: SourceState::Normal,
                            score: Some(score),
                            threshold: Some(det.threshold()),
                            t: w.t_end_s,
                        });
                    }
                    Phase::Armed(det) => {
                        let (score, nearest) = det.nearest(&emb);
                        self.health.set_score(score, det.threshold());
                        let transition = det.update(score);
                        let over = score > det.threshold();
                        recent.push(over.then_some(w.t_start_s), self.decision.1);
                        let explains = transition == Transition::Raise
                            || running.as_ref().is_some_and(|r| score > r.event.score_max);
                        let scored = Scored {
                            score,
                            threshold: det.threshold(),
                            onset_t: recent.earliest_over().unwrap_or(w.t_start_s),
                            explain: explains
                                .then(|| {
                                    let profile = crate::explain::profile(&w.mels, n_mels);
                                    crate::explain::against(det.bank(), nearest, &profile, &bounds)
                                })
                                .flatten(),
                        };
                        station.note(|| (emb.clone(), note_of(w)), over, transition);
                        let muted = station.event_muted;
                        let gated = |r: Report| {
                            if !(muted && matches!(r, Report::Event { .. })) {
                                send(r)
                            }
                        };
                        self.on_score(w, scored, transition, &mut running, &gated);
                        let state = if det.active() {
                            SourceState::Anomaly
                        } else {
                            SourceState::Normal
                        };
                        send(Report::State {
                            source: self.source,
                            state,
                            score: Some(score),
                            threshold: Some(det.threshold()),
                            t: w.t_end_s,
                        });
                    }
                }
            }
            let per_window = began.elapsed().as_secs_f64() / batch.len() as f64;
            for _ in 0..batch.len() {
                self.health.inference_latency.observe(per_window);
            }
            // Decided, evidence notes sent: a lossless replay's dsp may run on.
            self.health
                .windows_done
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        // What an operator asked to learn is kept, though the input ended.
        if let Some(u) = update.take() {
            let payload = self.wait_update(u, &mut phase);
            send(Report::CmdResult {
                source: self.source,
                payload,
            });
        }
        // Input ended during an anomaly: close the event so subscribers are not left hanging.
        if let Some(mut r) = running.take() {
            r.event.kind = EventKind::End;
            r.event.ts_end = Some(SystemTime::now());
            r.event.t_end = last_t;
            self.note_end(&r.event);
            send(Report::Event {
                source: self.source,
                event: r.event,
            });
        }
        self.health.inference_beat.finish();
    }

    /// Tells the evidence thread that an event is over.
    fn note_end(&self, event: &Event) {
        if let Some((_, notes)) = &self.evidence {
            let _ = notes.try_send(crate::evidence::Note::End {
                id: event.id.clone(),
                t_end: event.t_end,
            });
        }
    }

    /// Runs `build` (the first bank: seconds for a long enrolment, more on a Pi) on a
    /// helper thread while this one keeps its watchdog beat: the stage is busy, not
    /// hung, and systemd must not restart it and lose what it learned. Windows that
    /// arrive meanwhile wait in the bounded queue, or are dropped and counted.
    fn beating<T: Send>(&self, build: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let worker = scope.spawn(build);
            while !worker.is_finished() {
                self.health.inference_beat.tick();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            match worker.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    fn detector(&self, bank: NormalBank) -> Detector {
        let (k, n, m, scale) = self.decision;
        Detector::new(bank, scale, k, n, m)
    }

    fn finish_learning(
        &self,
        embeddings: &mut Vec<Vec<f32>>,
        origins: &mut Vec<Origin>,
        notes: &mut Vec<Option<RowNote>>,
    ) -> Option<Detector> {
        let guard = self.embedder.meta().calibration_guard();
        let target = crate::bank::Target::for_model(self.embedder.meta());
        let hash = self.embedder.hash();
        let build = || NormalBank::build(embeddings, origins, notes, guard, MAX_BANK, target, hash);
        let bank = match self.beating(build) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(source = %self.name, "cannot enrol yet: {e:#}");
                return None;
            }
        };
        embeddings.clear();
        origins.clear();
        notes.clear();
        match bank.save(&self.bank_path) {
            Ok(()) => {
                tracing::info!(source = %self.name, bank = %self.bank_path.display(), size = bank.len(), threshold = bank.calibration.threshold, "learned normal bank")
            }
            // Detection goes on with the bank in memory; the next start learns again.
            Err(e) => {
                self.health.storage_ok.store(false, Ordering::Relaxed);
                tracing::error!(source = %self.name, "learned bank not saved (detection goes on from memory): {e:#}")
            }
        }
        Some(self.detector(bank))
    }

    fn on_score(
        &self,
        w: &Window,
        scored: Scored,
        transition: Transition,
        running: &mut Option<Running>,
        send: &dyn Fn(Report),
    ) {
        let Scored {
            score,
            threshold,
            onset_t,
            explain,
        } = scored;
        let now = SystemTime::now();
        match transition {
            Transition::Raise => {
                let millis = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let mut event = Event {
                    id: format!("{}-{millis}", self.name),
                    kind: EventKind::Start,
                    ts_start: now,
                    ts_end: None,
                    t_start: onset_t,
                    t_end: w.t_end_s,
                    score_max: score,
                    threshold,
                    model: file_name(self.embedder.path()),
                    bank: file_name(&self.bank_path),
                    clip: None,
                    explain,
                };
                if let Some((cfg, notes)) = &self.evidence {
                    event.clip = Some(cfg.clip_path(&event.id).display().to_string());
                    let _ = notes.try_send(crate::evidence::Note::Start {
                        id: event.id.clone(),
                        t_start: onset_t,
                    });
                }
                tracing::warn!(source = %self.name, id = %event.id, score, threshold, "anomaly raised");
                send(Report::Event {
                    source: self.source,
                    event: event.clone(),
                });
                *running = Some(Running {
                    event,
                    last_update_t: w.t_end_s,
                });
            }
            Transition::Clear => {
                if let Some(mut r) = running.take() {
                    r.event.kind = EventKind::End;
                    r.event.ts_end = Some(now);
                    r.event.t_end = w.t_end_s;
                    self.note_end(&r.event);
                    if score > r.event.score_max {
                        r.event.score_max = score;
                        r.event.explain = explain.or(r.event.explain);
                    }
                    tracing::info!(source = %self.name, id = %r.event.id, score_max = r.event.score_max, "anomaly cleared");
                    send(Report::Event {
                        source: self.source,
                        event: r.event,
                    });
                }
            }
            Transition::None => {
                if let Some(r) = running.as_mut() {
                    if score > r.event.score_max {
                        r.event.score_max = score;
                        r.event.explain = explain.or(r.event.explain.take());
                    }
                    r.event.t_end = w.t_end_s;
                    if w.t_end_s - r.last_update_t >= self.event_update_s {
                        r.last_update_t = w.t_end_s;
                        r.event.kind = EventKind::Update;
                        send(Report::Event {
                            source: self.source,
                            event: r.event.clone(),
                        });
                    }
                }
            }
        }
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
