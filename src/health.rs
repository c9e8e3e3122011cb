//! Per-source counters shared between stages: written with atomics by the stage that
//! knows, read by the alarm stage for the `health` topic. Nothing here blocks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// A stage's sign of life: bumped on every turn of its loop, busy or idle, so a
/// counter that stops moving means a stage that is stuck, not one that is waiting.
#[derive(Debug, Default)]
pub struct Beat {
    turns: AtomicU64,
    done: AtomicBool,
}

impl Beat {
    /// One more turn of the stage's loop.
    pub fn tick(&self) {
        self.turns.fetch_add(1, Ordering::Relaxed);
    }

    /// The stage has ended on purpose (its input ended, or shutdown): not a stall.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }

    /// Turns so far.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }

    /// True once [`Beat::finish`] was called.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the per-stage latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
];

/// A latency histogram any thread can add to without locking.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Counts per bucket of [`LATENCY_BUCKETS`], plus one for larger values.
    buckets: [AtomicU64; 12],
    /// Sum of all observations in nanoseconds.
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is the total), and the sum in seconds.
    pub fn snapshot(&self) -> ([u64; 12], f64) {
        let mut out = [0u64; 12];
        let mut acc = 0;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc += b.load(Ordering::Relaxed);
            *o = acc;
        }
        (out, self.sum_ns.load(Ordering::Relaxed) as f64 * 1e-9)
    }
}

/// Live counters of one source.
#[derive(Debug, Default)]
pub struct SourceHealth {
    /// False after a capture error, until the stream works again.
    pub capture_ok: AtomicBool,
    /// Capture rate in Hz (what the device delivers).
    pub sample_rate_hz: AtomicU32,
    /// Samples the capture callback could not fit into the ring.
    pub dropped_samples: AtomicU64,
    /// Windows the dsp stage could not hand to inference (queue full).
    pub dropped_windows: AtomicU64,
    /// Windows embedded and scored so far.
    pub windows: AtomicU64,
    /// Windows inference has finished with (decided, evidence told), failed ones
    /// included: what a lossless tap replay's dsp waits for.
    pub windows_done: AtomicU64,
    /// Samples at or beyond full scale since the last health report.
    pub clipped_samples: AtomicU64,
    /// Level of the latest window in dBFS, as f32 bits.
    level_dbfs_bits: AtomicU32,
    /// Samples the dsp stage consumed so far (progress, for the watchdog).
    pub samples_in: AtomicU64,
    /// Times the input failed and was reopened.
    pub reopens: AtomicU64,
    /// Overruns the audio driver reported and recovered from by itself (the callback
    /// ran late and the device's own buffer overflowed: samples lost there).
    pub xruns: AtomicU64,
    /// False while the source's bank cannot be saved (disk full, read-only directory).
    pub storage_ok: AtomicBool,
    /// Latest score and threshold (f32 bits; NaN until armed).
    score_bits: AtomicU32,
    threshold_bits: AtomicU32,
    /// Time the dsp stage spends per chunk taken from the ring.
    pub dsp_latency: Histogram,
    /// Time the inference stage spends per window (embedding and scoring).
    pub inference_latency: Histogram,
    /// The capture supervisor's sign of life.
    pub capture_beat: Beat,
    /// The dsp stage's sign of life.
    pub dsp_beat: Beat,
    /// The inference stage's sign of life.
    pub inference_beat: Beat,
    /// Set once the source's input has ended (a `file:` device reached its end).
    pub ended: AtomicBool,
}

impl SourceHealth {
    /// A fresh record for a source about to open its device.
    pub fn new() -> SourceHealth {
        let h = SourceHealth::default();
        h.set_level_dbfs(-100.0);
        h.storage_ok.store(true, Ordering::Relaxed);
        h.set_score(f32::NAN, f32::NAN);
        h
    }

    /// Records the latest window's level.
    pub fn set_level_dbfs(&self, db: f32) {
        self.level_dbfs_bits.store(db.to_bits(), Ordering::Relaxed);
    }

    /// Records the latest score and the threshold it was held to.
    pub fn set_score(&self, score: f32, threshold: f32) {
        self.score_bits.store(score.to_bits(), Ordering::Relaxed);
        self.threshold_bits
            .store(threshold.to_bits(), Ordering::Relaxed);
    }

    /// The latest score and threshold (NaN before the first scored window).
    pub fn score(&self) -> (f32, f32) {
        (
            f32::from_bits(self.score_bits.load(Ordering::Relaxed)),
            f32::from_bits(self.threshold_bits.load(Ordering::Relaxed)),
        )
    }

    /// The latest window's level.
    pub fn level_dbfs(&self) -> f32 {
        f32::from_bits(self.level_dbfs_bits.load(Ordering::Relaxed))
    }

    /// The `health` payload; resets the clipping counter it reports.
    pub fn snapshot_json(&self) -> serde_json::Value {
        let clipped = self.clipped_samples.swap(0, Ordering::Relaxed);
        serde_json::json!({
            "capture_ok": self.capture_ok.load(Ordering::Relaxed),
            "sample_rate": self.sample_rate_hz.load(Ordering::Relaxed),
            "dropped_samples": self.dropped_samples.load(Ordering::Relaxed),
            "dropped_windows": self.dropped_windows.load(Ordering::Relaxed),
            "level_dbfs": (self.level_dbfs() * 10.0).round() / 10.0,
            "clipping": clipped > 0,
            "clipped_samples": clipped,
            "windows": self.windows.load(Ordering::Relaxed),
            "reopens": self.reopens.load(Ordering::Relaxed),
            "xruns": self.xruns.load(Ordering::Relaxed),
            "storage_ok": self.storage_ok.load(Ordering::Relaxed),
            "ended": self.ended.load(Ordering::Relaxed),
        })
    }
}
