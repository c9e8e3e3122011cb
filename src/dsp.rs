//! Stage 2, dsp: drains a source's ring into its [`Front`] and hands windows on.
//!
//! The ring offers no way to wait, so the thread polls it at a fraction of the window
//! hop. A full queue to inference drops the window and counts it, never blocking the
//! ring (a `lossless` file source waits instead: nothing is live to fall behind).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use ringbuf::HeapCons;
use ringbuf::traits::{Consumer, Observer};

use crate::frontend::{Front, Window};
use crate::health::SourceHealth;

/// Samples taken from the ring per step.
const CHUNK: usize = 4096;
/// Longest a lossless tap replay waits for one chunk's verdicts.
const MAX_VERDICT_WAIT: Duration = Duration::from_secs(10);

/// The dsp thread body. With `evidence`, a copy of every chunk goes to the source's
/// evidence thread. Returns when the producer is gone (or `stop` is set) and the
/// ring is drained, or when inference has hung up.
pub fn run(
    mut ring: HeapCons<f32>,
    mut front: Front,
    windows: Sender<Window>,
    lossless: bool,
    health: Arc<SourceHealth>,
    stop: Arc<AtomicBool>,
    evidence: Option<Sender<(u64, Vec<f32>)>>,
) {
    let mut position = 0u64;
    let idle = Duration::from_secs_f64(front.idle_seconds());
    let mut buf = vec![0.0f32; CHUNK];
    let mut open = true;
    // A lossless tap replay with evidence waits for each knock's verdict before it
    // reads on: knocks are sparse, so the audio could otherwise run seconds ahead of
    // the decisions and leave a defective knock's pre-roll behind in the evidence
    // thread's memory. (Continuous windows come at a steady hop; their lead is bounded
    // by the queue and provided for.)
    let wait_for_verdicts = lossless && evidence.is_some() && matches!(front, Front::Tap(_));
    let mut windows_sent = 0u64;
    while open {
        health.dsp_beat.tick();
        let n = ring.pop_slice(&mut buf);
        if n == 0 {
            if (!ring.write_is_held() || stop.load(Ordering::Relaxed)) && ring.is_empty() {
                break;
            }
            std::thread::sleep(idle);
            continue;
        }
        let clipped = buf[..n].iter().filter(|x| x.abs() >= 0.999).count();
        if clipped > 0 {
            health
                .clipped_samples
                .fetch_add(clipped as u64, Ordering::Relaxed);
        }
        health.samples_in.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(tx) = &evidence {
            // Live, a full queue loses evidence audio, never windows (the evidence
            // thread fills the gap with silence); a lossless replay waits.
            let chunk = (position, buf[..n].to_vec());
            let _ = if lossless {
                tx.send(chunk).map_err(|_| ())
            } else {
                tx.try_send(chunk).map_err(|_| ())
            };
        }
        position += n as u64;
        let began = std::time::Instant::now();
        front.push(&buf[..n], &mut |w| {
            health.set_level_dbfs(w.level_dbfs);
            let sent = if lossless {
                windows.send(w).map_err(|_| ())
            } else {
                match windows.try_send(w) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => {
                        health.dropped_windows.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(TrySendError::Disconnected(_)) => Err(()),
                }
            };
            match sent {
                Ok(()) => windows_sent += 1,
                Err(()) => open = false,
            }
        });
        health.dsp_latency.observe(began.elapsed().as_secs_f64());
        if wait_for_verdicts {
            await_decisions(&health, windows_sent, &stop, idle);
        }
    }
    health.dsp_beat.finish();
}

/// Waits, beating, until inference has finished with `sent` windows; gives up after
/// [`MAX_VERDICT_WAIT`] (a stuck inference stage is the watchdog's to report) or on stop.
fn await_decisions(health: &SourceHealth, sent: u64, stop: &AtomicBool, idle: Duration) {
    let began = std::time::Instant::now();
    while health.windows_done.load(Ordering::Relaxed) < sent
        && !stop.load(Ordering::Relaxed)
        && began.elapsed() < MAX_VERDICT_WAIT
    {
        health.dsp_beat.tick();
        std::thread::sleep(idle.min(Duration::from_millis(1)));
    }
}
