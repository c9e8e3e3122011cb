//! `hark eval --holdout`: choosing a model or front end without test clips. A set's
//! own `train/` clips are split; one part is enrolled, the other scored as it is and
//! with each anomaly twin (a synthetic fault) applied.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::eval::{MAX_FPR, Outputs, Scoring, WindowLog, audio_windows, bank_of, judge};
use super::machines::{Group, groups};
use super::progress::{self, Bar, Unit};
use crate::metrics::{auc, pauc};
use crate::model::Embedder;
use crate::wav::Clip;

/// One anomaly twin on a set's held-out train clips (`eval --holdout`).
#[derive(Debug, Clone)]
pub struct TwinResult {
    /// Set name.
    pub name: String,
    /// The twin ([`crate::twin::Twin::name`]).
    pub twin: &'static str,
    /// AUC of held-out pieces against their twins.
    pub auc: f64,
    /// pAUC at `MAX_FPR`.
    pub pauc: f64,
    /// Held-out normal pieces (whole clips unless long), and as many twins.
    pub n: usize,
    /// At the bank's threshold (times `--threshold-scale`), how many held-out normal
    /// pieces and how many of their twins the daemon would raise an event in.
    pub events: [usize; 2],
}

/// Default seed of the twins' random parameters (`--holdout-seed`), so a rerun gives
/// the same numbers.
pub const HOLDOUT_SEED: u64 = 11;

/// How `eval --holdout` splits and which twins it draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdout {
    /// Which pieces are enrolled.
    pub split: Split,
    /// Seed of the twins' random parameters: other seeds show how much a ranking
    /// depends on one draw of twins.
    pub seed: u64,
}

/// Which `train/` clips `eval --holdout` enrols and which it holds out (sorted by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Even places enrolled, odd places held out: every held-out clip has a neighbour
    /// in the bank (the same session, often the same item).
    Interleaved,
    /// The first half enrolled, the second held out: later recordings, or other items
    /// (other stones, another day's fan), as a deployment meets them after enrolment.
    Halves,
}

impl Split {
    /// Whether the clip at `place` of `n` (sorted by name) is enrolled.
    pub fn enrols(self, place: usize, n: usize) -> bool {
        match self {
            Split::Interleaved => place % 2 == 0,
            Split::Halves => place < n.div_ceil(2),
        }
    }

    /// The name `--holdout-split` takes and `--json` prints.
    pub fn name(self) -> &'static str {
        match self {
            Split::Interleaved => "interleaved",
            Split::Halves => "halves",
        }
    }
}

/// Longest piece of a recording that `--holdout` scores as one clip. A long recording
/// (a pump recorded for an hour) is cut into pieces of 10-20 s, so that a set of one
/// or a few long files can still be split into enrolled and held-out parts.
pub const PIECE_S: f64 = 10.0;

/// Pieces a recording of `frames` frames at `rate` Hz is cut into: one per whole
/// [`PIECE_S`], at least one.
pub fn piece_count(frames: u64, rate: u32) -> usize {
    ((frames as f64 / f64::from(rate) / PIECE_S).floor() as usize).max(1)
}

/// Samples `[start, end)` of piece `k` of `n` of a recording `len` samples long: equal
/// pieces, the last one taking the remainder.
fn piece_range(k: usize, n: usize, len: usize) -> std::ops::Range<usize> {
    let size = len / n;
    let end = if k + 1 == n { len } else { (k + 1) * size };
    k * size..end
}

/// `eval --holdout`: what a set's own `train/` clips say, without a test clip or a real
/// fault. Each clip is one piece, or several if it is long ([`PIECE_S`]); the pieces
/// `split` enrols are enrolled; each other piece is scored as it is (normal) and with
/// each anomaly twin of the model's mode applied (a synthetic fault:
/// [`crate::twin::Twin::check`], the training twins and, for a running machine, the
/// same sound 6 dB louder). Per twin, AUC and pAUC of the pieces against their twins.
/// This is how a front end or a model is chosen without looking at `test/`. `bar`
/// advances by one per clip.
pub(super) fn holdout(
    embedder: &Embedder,
    group: &Group,
    Holdout { split, seed }: Holdout,
    scoring: Scoring,
    bar: &Bar,
    log: &mut WindowLog,
) -> anyhow::Result<Vec<TwinResult>> {
    let (name, files) = (&group.name, &group.train);
    let mut counts = Vec::with_capacity(files.len());
    for file in files {
        let wav = crate::wav::WavStream::open(file)?;
        counts.push(piece_count(wav.frames(), wav.sample_rate_hz));
    }
    let total: usize = counts.iter().sum();
    let items = scoring.items;
    let (item_of, n_items) = super::items::numbering(items, files)?;
    // Per file, whether each of its pieces is enrolled. `split` sees all pieces in
    // order (by file name, then time), or with --item all items in order of first
    // appearance, each item's pieces going together.
    let mut enrolled = Vec::with_capacity(files.len());
    let mut place = 0;
    for (&n, &item) in counts.iter().zip(&item_of) {
        enrolled.push(
            (0..n)
                .map(|k| match items {
                    Some(_) => split.enrols(item as usize, n_items),
                    None => split.enrols(place + k, total),
                })
                .collect::<Vec<_>>(),
        );
        place += n;
    }
    let held_out = enrolled.iter().flatten().filter(|e| !**e).count();
    if held_out == 0 {
        bail!(
            "{name}: --holdout needs at least 2 train clips (or one of {} s or more), found {} clip(s), {total} piece(s)",
            2.0 * PIECE_S,
            files.len()
        );
    }
    // A file's pieces that `marks` gives as `keep`: each piece's index and mono
    // audio, and the file's rate.
    type Pieces = (Vec<(usize, Vec<f32>)>, u32);
    let pieces = |file: &Path, marks: &[bool], keep: bool| -> anyhow::Result<Pieces> {
        if !marks.contains(&keep) {
            return Ok((Vec::new(), 0));
        }
        let clip = Clip::read(file)?;
        let mono = clip.mono(Some(0));
        let chosen = (0..marks.len())
            .filter(|&k| marks[k] == keep)
            .map(|k| (k, mono[piece_range(k, marks.len(), mono.len())].to_vec()))
            .collect();
        Ok((chosen, clip.sample_rate_hz))
    };
    let (mut segments, mut segment_items) = (Vec::new(), Vec::new());
    for ((file, marks), &item) in files.iter().zip(&enrolled).zip(&item_of) {
        let (chosen, rate) = pieces(file, marks, true)?;
        for (k, piece) in chosen {
            let windows = audio_windows(embedder, &piece, rate, file)?;
            log.add("enrol", "normal", file, k, &windows)?;
            segments.push(windows.rows);
            segment_items.push(item);
        }
    }
    let whole = items.map(|_| segment_items.as_slice());
    let bank = bank_of(embedder, segments, whole)?;
    let twins = crate::twin::Twin::check(&embedder.meta().mode);
    let tap = embedder.meta().mode == "tap";
    let mut normal = Vec::new();
    let mut anomalies = vec![Vec::new(); twins.len()];
    // Held-out normal pieces with an event, then each twin's.
    let mut normal_events = 0;
    let mut twin_events = vec![0; twins.len()];
    let mut rng = crate::model::SplitMix64(seed);
    // The bar counts files here, where nearly all the time goes (each held-out piece is
    // embedded once as it is and once per twin).
    for (file, marks) in files.iter().zip(&enrolled) {
        let (chosen, rate) = pieces(file, marks, false)?;
        for (k, piece) in chosen {
            let windows = audio_windows(embedder, &piece, rate, file)?;
            log.add("held-out", "normal", file, k, &windows)?;
            let (score, event) = judge(&bank, scoring, tap, &windows.rows);
            normal.push(score);
            normal_events += usize::from(event);
            for ((twin, scores), events) in twins.iter().zip(&mut anomalies).zip(&mut twin_events) {
                let faulty = twin.apply(&piece, rate, &mut rng);
                let windows = audio_windows(embedder, &faulty, rate, file)?;
                log.add("held-out", twin.name(), file, k, &windows)?;
                let (score, event) = judge(&bank, scoring, tap, &windows.rows);
                scores.push(score);
                *events += usize::from(event);
            }
        }
        bar.inc(1);
    }
    twins
        .iter()
        .zip(anomalies)
        .zip(twin_events)
        .map(|((twin, anomaly), events)| {
            Ok(TwinResult {
                name: name.to_string(),
                twin: twin.name(),
                auc: auc(&normal, &anomaly)?,
                pauc: pauc(&normal, &anomaly, MAX_FPR)?,
                n: normal.len(),
                events: [normal_events, events],
            })
        })
        .collect()
}

/// `eval --holdout`: one line per set and twin, then the set's mean over its twins;
/// banks are calibrated and pieces and twins decided as `scoring` says.
pub(super) fn run(
    embedder: &Embedder,
    sets: &[(String, PathBuf)],
    clips: usize,
    h: Holdout,
    scoring: Scoring,
    out: &Outputs,
) -> anyhow::Result<()> {
    let bar = progress::bar(clips as u64, "held-out twins", Unit::Items("clips"));
    // Each machine of a set is held out against a bank of its own.
    let machines: Vec<Group> = sets
        .iter()
        .map(|(name, set)| groups(name, super::wav_files(&set.join("train"))?, Vec::new()))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    for group in &machines {
        let name = &group.name;
        bar.set_message(name.clone());
        let suffix = format!("_holdout-{}", h.split.name());
        let mut log = WindowLog::new(out.windows, name, &suffix)?;
        let results = holdout(embedder, group, h, scoring, &bar, &mut log)?;
        log.save()?;
        for r in &results {
            let line = if out.json {
                serde_json::json!({
                    "set": r.name, "twin": r.twin, "auc": r.auc, "pauc": r.pauc,
                    "n_normal": r.n, "n_anomaly": r.n, "split": h.split.name(),
                    "seed": h.seed, "false_alarms": r.events[0], "detected": r.events[1],
                })
                .to_string()
            } else {
                format!(
                    "{:<24} {:<8} AUC {:6.2}  pAUC {:6.2}  ({} held-out train pieces and their \
                     twins)  events in {}/{} held out, {}/{} twins",
                    r.name,
                    r.twin,
                    100.0 * r.auc,
                    100.0 * r.pauc,
                    r.n,
                    r.events[0],
                    r.n,
                    r.events[1],
                    r.n
                )
            };
            bar.stdout_line(&line)?;
        }
        if !out.json {
            let k = results.len().max(1) as f64;
            bar.stdout_line(&format!(
                "{:<24} {:<8} AUC {:6.2}  pAUC {:6.2}",
                name,
                "mean",
                100.0 * results.iter().map(|r| r.auc).sum::<f64>() / k,
                100.0 * results.iter().map(|r| r.pauc).sum::<f64>() / k
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_recordings_are_cut_into_pieces_of_whole_ten_seconds() {
        assert_eq!(piece_count(16_000 * 9, 16_000), 1);
        assert_eq!(piece_count(1, 16_000), 1);
        assert_eq!(piece_count(16_000 * 20, 16_000), 2);
        assert_eq!(piece_count(506_416, 16_000), 3); // a 31.65 s fan recording
        // The pieces tile the recording; the last takes the remainder.
        let ranges: Vec<_> = (0..3).map(|k| piece_range(k, 3, 100)).collect();
        assert_eq!(ranges, [0..33, 33..66, 66..100]);
        assert_eq!(piece_range(0, 1, 7), 0..7);
    }

    #[test]
    fn holdout_splits_enrol_every_other_clip_or_the_first_half() {
        let enrolled =
            |split: Split, n| -> Vec<usize> { (0..n).filter(|&i| split.enrols(i, n)).collect() };
        assert_eq!(enrolled(Split::Interleaved, 5), [0, 2, 4]);
        assert_eq!(enrolled(Split::Halves, 5), [0, 1, 2]);
        assert_eq!(enrolled(Split::Halves, 6), [0, 1, 2]);
        // Two clips: one enrolled, one held out, either way.
        assert_eq!(enrolled(Split::Interleaved, 2), [0]);
        assert_eq!(enrolled(Split::Halves, 2), [0]);
    }
}
