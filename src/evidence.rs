//! Evidence clips: the sound of every event, written as a WAV beside the bank.
//!
//! One thread per source. The dsp stage hands it a copy of each chunk it takes from the
//! ring (at the capture rate); it keeps the last seconds in memory as pre-roll, so a
//! clip never reads anything back from disk. Inference tells it when an event starts
//! and ends (in stream seconds); the clip spans `pre_s` before the start to `post_s`
//! after the end (at most [`MAX_CLIP_S`]). It streams to a temp file through a 256 KiB
//! buffer (a few large writes per event, which is what an SD card wants; memory holds
//! the pre-roll only) and is renamed to its name once complete. Then retention runs:
//! the oldest clips go while there are more than `max_files`, more than `max_mb`, or
//! older than `max_days`. The clip's path is in the event payload (`"clip"`). No clip
//! is started while its filesystem has less than `min_free_mb` free: the journal and
//! the banks need that space more.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, select};

/// Longest clip, in seconds (a long event is cut; memory stays bounded).
pub const MAX_CLIP_S: f64 = 120.0;
/// Most clips written at once (knocks close together overlap); a further start
/// finishes the oldest as it is.
const MAX_OPEN_CLIPS: usize = 8;

/// Where and how much evidence a source keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceConfig {
    /// Directory of the clips.
    pub dir: PathBuf,
    /// Seconds before the event's start.
    pub pre_s: f64,
    /// Seconds after its end.
    pub post_s: f64,
    /// Most clips kept.
    pub max_files: usize,
    /// Most megabytes kept.
    pub max_mb: f64,
    /// Oldest clip kept, in days.
    pub max_days: f64,
    /// No clip is started while less than this many megabytes are free there.
    pub min_free_mb: f64,
}

impl EvidenceConfig {
    /// The clip path of event `id`.
    pub fn clip_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.wav"))
    }
}

/// What inference tells the evidence thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// An event began; its sound starts at `t_start` (stream seconds).
    Start {
        /// Event id (the clip's file name).
        id: String,
        /// Stream seconds.
        t_start: f64,
    },
    /// The event ended at `t_end`.
    End {
        /// Event id.
        id: String,
        /// Stream seconds.
        t_end: f64,
    },
}

/// Bytes gathered before each write to the card: a clip goes out in a few large writes.
const WRITE_BATCH: usize = 256 * 1024;

type Writer = hound::WavWriter<std::io::BufWriter<std::fs::File>>;

/// A clip being written: streamed to a temp file through a large buffer, so memory
/// holds only the pre-roll, never the clip.
struct Clip {
    id: String,
    tmp: PathBuf,
    writer: Result<Writer, String>,
    samples: u64,
    /// Stream seconds at which the clip is complete.
    until: f64,
    /// The next stream sample the clip takes. It catches up from the in-memory buffer,
    /// and until its end is known it stays `lag` behind the audio (decisions trail the
    /// audio by at most that much), so an end that arrives late still cuts it exactly.
    next: u64,
    /// The end note arrived (or nothing more will come): catch up to the audio.
    ended: bool,
}

impl Clip {
    fn open(cfg: &EvidenceConfig, rate_hz: u32, id: String, first: u64, until: f64) -> Clip {
        let tmp = cfg.dir.join(format!(".{id}.wav.tmp"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate_hz,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = std::fs::create_dir_all(&cfg.dir)
            .and_then(|()| std::fs::File::create(&tmp))
            .map_err(|e| format!("{}: {e}", tmp.display()))
            .and_then(|f| {
                hound::WavWriter::new(std::io::BufWriter::with_capacity(WRITE_BATCH, f), spec)
                    .map_err(|e| format!("{}: {e}", tmp.display()))
            });
        Clip {
            id,
            tmp,
            writer,
            samples: 0,
            until,
            next: first,
            ended: false,
        }
    }

    /// Appends what `recent` (the stream's samples up to `seen`) holds of the clip
    /// that is not written yet, staying `lag` samples behind `seen` until the end is
    /// known; returns true once the clip is complete.
    fn catch_up(&mut self, recent: &VecDeque<f32>, seen: u64, rate: f64, lag: u64) -> bool {
        let end = (self.until * rate).round() as u64;
        let oldest = seen - recent.len() as u64;
        let settled = if self.ended {
            seen
        } else {
            seen.saturating_sub(lag)
        };
        let from = self.next.max(oldest);
        let to = end.min(settled);
        if from < to {
            self.append(
                recent
                    .range((from - oldest) as usize..(to - oldest) as usize)
                    .copied(),
            );
        }
        self.next = self.next.max(to);
        self.next >= end
    }

    fn append(&mut self, samples: impl IntoIterator<Item = f32>) {
        let Ok(w) = self.writer.as_mut() else { return };
        for x in samples {
            let v = (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            if let Err(e) = w.write_sample(v) {
                self.writer = Err(format!("{}: {e}", self.tmp.display()));
                return;
            }
            self.samples += 1;
        }
    }
}

/// The evidence thread body: runs until both the audio (dsp) and the notes (inference)
/// have hung up, so a decision that trails the end of the audio still gets its clip; a
/// clip still open then is written as it is. `lag_s`: how far, at most, the audio runs
/// ahead of the event decisions (a window, the queues between the stages); that much
/// more than `pre_s` is kept in memory.
pub fn run(
    cfg: EvidenceConfig,
    rate_hz: u32,
    lag_s: f64,
    mut audio: Receiver<(u64, Vec<f32>)>,
    mut notes: Receiver<Note>,
) {
    let rate = rate_hz as f64;
    let keep = ((cfg.pre_s + lag_s) * rate) as usize;
    let mut pre: VecDeque<f32> = VecDeque::with_capacity(keep);
    let mut seen = 0u64; // samples so far: the stream clock
    // Clips being written; knocks close together have overlapping clips.
    let mut clips: Vec<Clip> = Vec::new();
    // A channel that hung up is swapped for one that never delivers.
    let (mut audio_open, mut notes_open) = (true, true);
    while audio_open || notes_open {
        // Once the audio has ended, everything a clip can take is here: no lag.
        let lag = if audio_open { (lag_s * rate) as u64 } else { 0 };
        select! {
            recv(audio) -> a => match a {
                Ok((at, chunk)) => {
                    let n = take_chunk(&mut pre, &mut seen, at, chunk, keep);
                    for c in std::mem::take(&mut clips) {
                        advance(&cfg, rate_hz, c, &pre, seen, lag, &mut clips);
                    }
                    // The lagging catch-up reads up to `lag` + one chunk back: keep that too.
                    let excess = pre.len().saturating_sub(keep + n);
                    pre.drain(..excess);
                }
                Err(_) => {
                    audio_open = false;
                    audio = crossbeam_channel::never();
                }
            },
            recv(notes) -> n => match n {
                Ok(Note::Start { id, t_start }) => {
                    if clips.len() >= MAX_OPEN_CLIPS {
                        // Bounded work and files: the oldest is written as it is.
                        let mut c = clips.remove(0);
                        c.ended = true;
                        c.catch_up(&pre, seen, rate, lag);
                        finish(&cfg, rate_hz, c);
                    }
                    if let Some(free) = free_mb(&cfg.dir).filter(|&f| f < cfg.min_free_mb) {
                        tracing::warn!(
                            dir = %cfg.dir.display(), free_mb = free.round(), min_free_mb = cfg.min_free_mb,
                            "evidence clip {id} not written: the disk is nearly full"
                        );
                        continue;
                    }
                    // Pre-roll from memory: everything since t_start - pre_s.
                    let first = ((t_start - cfg.pre_s).max(0.0) * rate).round() as u64;
                    clips.push(Clip::open(&cfg, rate_hz, id, first, t_start + MAX_CLIP_S));
                }
                Ok(Note::End { id, t_end }) => {
                    if let Some(i) = clips.iter().position(|c| c.id == id) {
                        let mut c = clips.remove(i);
                        c.until = c.until.min(t_end + cfg.post_s);
                        c.ended = true;
                        // The audio may already be past the end (a knock's post-roll
                        // is shorter than the lag): then it is finished now.
                        advance(&cfg, rate_hz, c, &pre, seen, lag, &mut clips);
                    }
                }
                Err(_) => {
                    notes_open = false;
                    notes = crossbeam_channel::never();
                }
            },
        }
    }
    // Nothing more will come: each clip takes what is left of the audio.
    for mut c in clips {
        c.ended = true;
        c.catch_up(&pre, seen, rate, 0);
        finish(&cfg, rate_hz, c);
    }
}

/// Catches `clip` up with the audio; finishes it when complete, else puts it back.
fn advance(
    cfg: &EvidenceConfig,
    rate_hz: u32,
    mut clip: Clip,
    pre: &VecDeque<f32>,
    seen: u64,
    lag: u64,
    open: &mut Vec<Clip>,
) {
    if clip.catch_up(pre, seen, rate_hz as f64, lag) {
        finish(cfg, rate_hz, clip);
    } else {
        open.push(clip);
    }
}

/// Megabytes free to this user on the filesystem of `dir` (or of its nearest existing
/// parent, before the first clip makes it); `None` when that cannot be told.
fn free_mb(dir: &Path) -> Option<f64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    Some(s.f_bavail as f64 * s.f_frsize as f64 / 1e6)
}

/// Appends a chunk that starts at stream sample `at` to the in-memory audio; a gap
/// (chunks dropped because the queue was full) is filled with silence so the clock
/// stays right. Returns how many samples were added.
fn take_chunk(
    pre: &mut VecDeque<f32>,
    seen: &mut u64,
    at: u64,
    chunk: Vec<f32>,
    keep: usize,
) -> usize {
    let mut n = 0;
    if at > *seen {
        let gap = ((at - *seen) as usize).min(keep);
        *seen = at - gap as u64;
        pre.extend(std::iter::repeat_n(0.0, gap));
        n += gap;
    }
    *seen += chunk.len() as u64;
    n += chunk.len();
    pre.extend(chunk);
    n
}

/// Completes a clip (header, flush, rename over the final name) and applies retention.
fn finish(cfg: &EvidenceConfig, rate_hz: u32, clip: Clip) {
    let path = cfg.clip_path(&clip.id);
    let written = clip.writer.and_then(|w| {
        w.finalize()
            .map_err(|e| format!("{}: {e}", clip.tmp.display()))
            .and_then(|()| {
                std::fs::rename(&clip.tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
            })
    });
    match written {
        Ok(()) => tracing::info!(
            clip = %path.display(),
            seconds = clip.samples as f64 / rate_hz as f64,
            "evidence clip written"
        ),
        Err(e) => {
            let _ = std::fs::remove_file(&clip.tmp);
            tracing::error!(clip = %path.display(), "evidence clip not written: {e}");
        }
    }
    prune(cfg, SystemTime::now());
}

/// Deletes the oldest clips in `cfg.dir` until count, size and age are within bounds.
/// Returns how many it removed.
pub fn prune(cfg: &EvidenceConfig, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(&cfg.dir) else {
        return 0;
    };
    let mut clips: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    clips.sort();
    let max_age = Duration::from_secs_f64(cfg.max_days * 86_400.0);
    let mut total: u64 = clips.iter().map(|c| c.1).sum();
    let max_bytes = (cfg.max_mb * 1e6) as u64;
    let mut removed = 0;
    for (i, (modified, size, path)) in clips.iter().enumerate() {
        let left = clips.len() - i;
        let too_old = now.duration_since(*modified).unwrap_or_default() > max_age;
        if left > cfg.max_files || total > max_bytes || too_old {
            if std::fs::remove_file(path).is_ok() {
                removed += 1;
                total -= size;
            }
        } else {
            break;
        }
    }
    removed
}

/// True when `path` is inside `dir` (for tests and messages).
pub fn is_in(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn cfg(dir: &Path) -> EvidenceConfig {
        EvidenceConfig {
            dir: dir.to_path_buf(),
            pre_s: 1.0,
            post_s: 0.5,
            max_files: 3,
            max_mb: 100.0,
            max_days: 30.0,
            min_free_mb: 0.0,
        }
    }

    /// Sample `i` of the test audio: a ramp, so a clip's samples say where they were.
    fn ramp(i: usize) -> f32 {
        i as f32 / 10_000.0
    }

    /// An evidence thread at 1000 Hz with a 2 s decision lag ([`cfg`]: 1 s pre-roll,
    /// 0.5 s post-roll), fed by hand in the order a test wants.
    struct Rig {
        dir: tempfile::TempDir,
        cfg: EvidenceConfig,
        audio: Option<crossbeam_channel::Sender<(u64, Vec<f32>)>>,
        notes: Option<crossbeam_channel::Sender<Note>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Rig {
        fn new(min_free_mb: f64) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let cfg = EvidenceConfig {
                min_free_mb,
                ..cfg(dir.path())
            };
            let (audio, arx) = bounded(1024);
            let (notes, nrx) = bounded(8);
            let c = cfg.clone();
            let thread = std::thread::spawn(move || run(c, 1000, 2.0, arx, nrx));
            Rig {
                dir,
                cfg,
                audio: Some(audio),
                notes: Some(notes),
                thread: Some(thread),
            }
        }

        /// Ramp samples `from..to`, then a pause so the thread takes them first.
        fn audio(&self, from: usize, to: usize) {
            let chunk = (from..to).map(ramp).collect();
            self.audio
                .as_ref()
                .unwrap()
                .send((from as u64, chunk))
                .unwrap();
            pause();
        }

        /// The dsp stage hangs up.
        fn audio_ends(&mut self) {
            self.audio = None;
            pause();
        }

        fn start(&self, id: &str, t_start: f64) {
            let id = id.into();
            let notes = self.notes.as_ref().unwrap();
            notes.send(Note::Start { id, t_start }).unwrap();
        }

        fn end(&self, id: &str, t_end: f64) {
            let id = id.into();
            let notes = self.notes.as_ref().unwrap();
            notes.send(Note::End { id, t_end }).unwrap();
        }

        /// Hangs up both channels, waits for the thread; the clip's samples, if any.
        fn clip(&mut self, id: &str) -> Option<Vec<f32>> {
            (self.audio, self.notes) = (None, None);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
            let path = self.cfg.clip_path(id);
            path.exists()
                .then(|| crate::wav::Clip::read(&path).unwrap().mono(None))
        }
    }

    fn pause() {
        std::thread::sleep(Duration::from_millis(50));
    }

    /// `x` is `len` samples of the ramp from sample `first` on (both ends checked).
    fn assert_ramp(x: &[f32], first: usize, len: usize) {
        assert_eq!(x.len(), len);
        for i in [0, len - 1] {
            assert!(
                (x[i] - ramp(first + i)).abs() < 1e-4,
                "sample {i}: {}",
                x[i]
            );
        }
    }

    #[test]
    fn a_clip_spans_pre_roll_event_and_post_roll_exactly() {
        let mut rig = Rig::new(0.0);
        rig.audio(0, 3000); // 3 s
        rig.start("e1", 2.5);
        pause();
        rig.audio(3000, 4000);
        rig.end("e1", 4.0);
        pause();
        rig.audio(4000, 6000); // the clip is complete at 4.5 s
        // 1.5 s .. 4.5 s: 3000 samples, from sample 1500 on.
        assert_ramp(&rig.clip("e1").unwrap(), 1500, 3000);
    }

    #[test]
    fn knocks_close_together_get_whole_overlapping_clips() {
        // The second knock is decided before the audio reaches the first one's end.
        let mut rig = Rig::new(0.0);
        rig.audio(0, 3000);
        rig.start("k1", 2.5);
        rig.end("k1", 2.6);
        rig.start("k2", 2.8);
        rig.end("k2", 2.9);
        pause();
        rig.audio(3000, 5000);
        // Pre 1 s, post 0.5 s: 1.5 s .. 3.1 s and 1.8 s .. 3.4 s.
        assert_ramp(&rig.clip("k1").unwrap(), 1500, 1600);
        assert_ramp(&rig.clip("k2").unwrap(), 1800, 1600);
    }

    #[test]
    fn an_end_known_after_the_audio_passed_it_still_cuts_the_clip_exactly() {
        // A knock: its decision comes after the audio has run past its post-roll.
        let mut rig = Rig::new(0.0);
        rig.audio(0, 4000);
        rig.start("k1", 2.5);
        rig.end("k1", 3.0);
        pause();
        rig.audio(4000, 5000);
        // 1.5 s .. 3.5 s (pre 1 s, post 0.5 s): 2000 samples, nothing after.
        assert_ramp(&rig.clip("k1").unwrap(), 1500, 2000);
    }

    #[test]
    fn audio_that_runs_past_the_end_before_the_end_note_is_left_out() {
        // The race the daemon has under load: the audio of the post-roll and beyond
        // reaches the evidence thread before the end of the event does.
        let mut rig = Rig::new(0.0);
        rig.audio(0, 3000);
        rig.start("k2", 2.5);
        pause();
        rig.audio(3000, 4000);
        rig.end("k2", 2.8);
        pause();
        let x = rig.clip("k2").unwrap();
        // 1.5 s .. 3.3 s: 1800 samples, although the audio had reached 4 s.
        assert_eq!(x.len(), 1800);
        assert!((x[1799] - ramp(3299)).abs() < 1e-4, "{}", x[1799]);
    }

    #[test]
    fn a_decision_that_trails_the_end_of_the_audio_still_gets_its_clip() {
        // The last knock of a replay: inference decides after dsp has hung up.
        let mut rig = Rig::new(0.0);
        rig.audio(0, 4000);
        rig.audio_ends();
        rig.start("k3", 2.5);
        rig.end("k3", 2.8);
        let x = rig.clip("k3").unwrap();
        assert_eq!(x.len(), 1800);
        assert!((x[0] - ramp(1500)).abs() < 1e-4, "{}", x[0]);
    }

    #[test]
    fn no_clip_is_started_on_a_nearly_full_disk() {
        // More free space than any disk has: every clip is refused, nothing breaks.
        let mut rig = Rig::new(1e12);
        rig.audio(0, 3000);
        rig.start("full", 1.0);
        rig.end("full", 2.0);
        rig.audio(3000, 6000);
        assert!(rig.clip("full").is_none());
        let dir = rig.dir.path();
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "no temp file either"
        );
        // Free space can be told here, so the refusal was the floor's doing (the other
        // tests, with a floor of 0, write their clips in the same kind of directory).
        assert!(free_mb(dir).is_some_and(|f| f > 0.0));
    }

    #[test]
    fn retention_drops_the_oldest_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path());
        for i in 0..5 {
            let p = dir.path().join(format!("e{i}.wav"));
            crate::wav::write_mono_i16(&p, 1000, &[0.0; 10]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(100 - i * 10))
                .unwrap();
        }
        assert_eq!(prune(&c, SystemTime::now()), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["e2.wav", "e3.wav", "e4.wav"]);
        let old = EvidenceConfig { max_days: 1.0, ..c };
        assert_eq!(
            prune(&old, SystemTime::now() + Duration::from_secs(2 * 86_400)),
            3
        );
    }
}
