//! Supervision: is every stage still turning? Tells systemd (`Type=notify`): READY once
//! every source has delivered its first window, WATCHDOG pings only while every stage's
//! loop advances, and a STATUS line with the counters. A stage that stops turning
//! stops the pings, and systemd restarts the hung daemon after `WatchdogSec`.
//!
//! Each stage bumps its [`Beat`] on every turn of its loop, idle or busy (inference and
//! alarm wait with a timeout, dsp polls, the capture supervisor watches its stream), so
//! a beat that stands still for `stall_after` means a stuck thread, not a quiet
//! microphone. A stage that ended on purpose (its file ended) is not watched.
//!
//! Without systemd (no `NOTIFY_SOCKET`) the same check runs and logs stalls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::health::{Beat, SourceHealth};

/// Stall threshold when systemd has set no watchdog.
const STALL_DEFAULT: Duration = Duration::from_secs(15);

/// One watched stage.
struct Watched {
    name: String,
    beat: Arc<dyn AsBeat>,
    turns: u64,
    moved: Instant,
    reported: bool,
}

/// Something holding a [`Beat`]: a source's stage, or the alarm stage.
trait AsBeat: Send + Sync {
    fn beat(&self) -> &Beat;
}

impl AsBeat for Beat {
    fn beat(&self) -> &Beat {
        self
    }
}

/// Picks one stage's beat out of a source's health record.
type Pick = fn(&SourceHealth) -> &Beat;

/// A source's stage, reached through its health record.
struct StageOf(Arc<SourceHealth>, Pick);

impl AsBeat for StageOf {
    fn beat(&self) -> &Beat {
        (self.1)(&self.0)
    }
}

/// A source as the watchdog sees it.
pub struct WatchedSource {
    /// Its name (for STATUS and logs).
    pub name: String,
    /// Its counters.
    pub health: Arc<SourceHealth>,
    /// Tap sources are ready once audio flows (a knock may be long in coming).
    pub tap: bool,
}

/// The watchdog of one daemon.
pub struct Watchdog {
    stages: Vec<Watched>,
    sources: Vec<WatchedSource>,
    stall_after: Duration,
    ping_every: Option<Duration>,
    next_ping: Instant,
    ready: bool,
}

impl Watchdog {
    /// Watches the three stages of every source and the alarm stage. Reads
    /// `WATCHDOG_USEC` (set by systemd's `WatchdogSec=`): pings go every quarter of it,
    /// and a stage still for half of it counts as stalled.
    pub fn new(sources: Vec<WatchedSource>, alarm: Arc<Beat>) -> Watchdog {
        let now = Instant::now();
        let watchdog = sd_notify::watchdog_enabled();
        let mut stages = Vec::new();
        let mut watch = |name: String, beat: Arc<dyn AsBeat>| {
            stages.push(Watched {
                turns: beat.beat().turns(),
                name,
                beat,
                moved: now,
                reported: false,
            })
        };
        for s in &sources {
            let stages: [(&str, Pick); 3] = [
                ("capture", |h| &h.capture_beat),
                ("dsp", |h| &h.dsp_beat),
                ("inference", |h| &h.inference_beat),
            ];
            for (stage, get) in stages {
                watch(
                    format!("{}/{stage}", s.name),
                    Arc::new(StageOf(s.health.clone(), get)),
                );
            }
        }
        watch("alarm".into(), alarm);
        Watchdog {
            stages,
            sources,
            stall_after: watchdog.map_or(STALL_DEFAULT, |d| d / 2),
            ping_every: watchdog.map(|d| d / 4),
            next_ping: now,
            ready: false,
        }
    }

    /// How often [`Watchdog::check`] wants to run.
    pub fn period(&self) -> Duration {
        self.ping_every
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1))
    }

    /// Looks at every stage; sends READY, WATCHDOG and STATUS as due. Returns the
    /// stalled stages.
    pub fn check(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut stalled = Vec::new();
        for w in &mut self.stages {
            let beat = w.beat.beat();
            let turns = beat.turns();
            if turns != w.turns || beat.is_done() {
                w.turns = turns;
                w.moved = now;
                if w.reported {
                    tracing::warn!(stage = %w.name, "stage moves again");
                    w.reported = false;
                }
            } else if now.duration_since(w.moved) >= self.stall_after {
                if !w.reported {
                    tracing::error!(stage = %w.name, still_s = now.duration_since(w.moved).as_secs_f64(), "stage stalled: watchdog pings stop");
                    w.reported = true;
                }
                stalled.push(w.name.clone());
            }
        }
        if !self.ready && self.sources.iter().all(first_window) {
            self.ready = true;
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&self.status(&stalled)),
            ]);
            tracing::info!("ready: every source has delivered its first window");
        }
        if now >= self.next_ping {
            self.next_ping = now + self.ping_every.unwrap_or(Duration::from_secs(10));
            let status = self.status(&stalled);
            if stalled.is_empty() {
                notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
            } else {
                notify(&[NotifyState::Status(&status)]);
            }
        }
        stalled
    }

    /// One line for `systemctl status`: per source its windows and drops.
    fn status(&self, stalled: &[String]) -> String {
        let mut parts: Vec<String> = self
            .sources
            .iter()
            .map(|s| {
                let h = &s.health;
                format!(
                    "{}: {} windows, {} dropped samples, {} dropped windows{}",
                    s.name,
                    h.windows.load(Ordering::Relaxed),
                    h.dropped_samples.load(Ordering::Relaxed),
                    h.dropped_windows.load(Ordering::Relaxed),
                    if h.capture_ok.load(Ordering::Relaxed) {
                        ""
                    } else {
                        ", capture FAULT"
                    }
                )
            })
            .collect();
        if !stalled.is_empty() {
            parts.insert(0, format!("STALLED: {}", stalled.join(", ")));
        }
        parts.join("; ")
    }

    /// Tells systemd the daemon is stopping.
    pub fn stopping(&self) {
        notify(&[NotifyState::Stopping]);
    }
}

fn first_window(s: &WatchedSource) -> bool {
    let h = &s.health;
    h.windows.load(Ordering::Relaxed) > 0
        || (s.tap && h.samples_in.load(Ordering::Relaxed) > 0)
        || h.ended.load(Ordering::Relaxed)
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// Fault injection for the supervision tests: with `HARK_TEST_STALL=<stage>` in the
/// environment, that stage hangs here for good the first time it gets here.
pub fn injected_stall(stage: &str) {
    static WANTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("HARK_TEST_STALL").ok());
    if wanted.as_deref() == Some(stage) {
        tracing::warn!(stage, "HARK_TEST_STALL: this stage now hangs");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
