//! `hark eval`: the DCASE protocol. Enrol on a set's `train/` clips, score every
//! `test/` clip with the daemon's own dsp and inference code, and report AUC and pAUC
//! beside a loudness-only baseline on the same clips, and how many clips the daemon
//! would have raised an event in at the bank's own threshold. Unlabelled test clips (a
//! DCASE evaluation set) are scored and decided into `--scores` files without an AUC.
//! `--holdout` leaves `test/` alone and scores held-out `train/` clips against their
//! anomaly twins ([`super::holdout`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::progress::{self, Bar, Unit};
use crate::bank::{NormalBank, Origin};
use crate::detector::clip_alarms;
use crate::fsutil::AtomicFile;
use crate::inference::MAX_BANK;
use crate::metrics::{auc, pauc};
use crate::model::Embedder;
use crate::wav::Clip;

use super::eval_report::{Numbers, result_line, submission_name, write_scores};
use super::items::{self, Items};
use super::machines::{Group, domain, groups, label};

/// The false-positive rate up to which pAUC is taken (DCASE: 0.1).
pub const MAX_FPR: f64 = 0.1;

/// One evaluated set: the numbers `eval --json` prints, and the scores for plots.
#[derive(Debug, Clone)]
pub struct SetResult {
    /// Set name (folder name, or `parent/child` for nested sets).
    pub name: String,
    /// Model AUC.
    pub auc: f64,
    /// Model pAUC at `MAX_FPR`.
    pub pauc: f64,
    /// Loudness-only baseline AUC on the same clips.
    pub level_auc: f64,
    /// DCASE 2021+ sets (test clips named `…_source_test_…` / `…_target_test_…`): the
    /// AUC of each domain's normal clips against every anomalous clip of the group, as
    /// DCASE scores domain shift; `None` where the group has no such normal clip.
    pub domain_auc: [Option<f64>; 2],
    /// Clip scores of the normal test clips.
    pub normal: Vec<f64>,
    /// Clip scores of the anomalous test clips.
    pub anomaly: Vec<f64>,
    /// At the bank's calibrated threshold, how many normal and how many anomalous test
    /// clips the daemon would have raised an event in ([`ClipScore::event`]).
    pub events: [usize; 2],
}

/// One scored test clip: what `eval --scores` writes.
#[derive(Debug, Clone)]
pub struct ClipScore {
    /// The file name.
    pub name: String,
    /// The clip's score: its windows' scores pooled ([`Pooling`]; by default the mean).
    pub score: f64,
    /// The daemon's decision at the bank's calibrated threshold (times `eval
    /// --threshold-scale`, 1 unless given):
    /// a continuous model's windows raise an event by the default rule (3 of 4 over),
    /// a tap model's knock is called defective when its score is over the threshold
    /// ([`clip_alarms`]).
    pub event: bool,
}

/// Where `hark eval` writes what it found, besides the table.
#[derive(Debug)]
pub struct Outputs<'a> {
    /// One JSON object per set instead of the table.
    pub json: bool,
    /// ROC curves and score histograms (SVG).
    pub plot: Option<&'a Path>,
    /// Folder for one clip-score CSV and one decision CSV per machine
    /// ([`super::eval_report::submission_name`]).
    pub scores: Option<&'a Path>,
    /// Folder for one file per set of every scored window's vector ([`WindowLog`]).
    pub windows: Option<&'a Path>,
}

/// How `hark eval` calibrates, scores and decides.
#[derive(Debug, Clone, Copy)]
pub struct Scoring<'a> {
    /// Clips are decided at each bank's threshold times this (a source's
    /// `threshold_scale`).
    pub scale: f64,
    /// Which train/ clips record one object (`--item`): calibration, and
    /// `--holdout`'s split, keep each object's clips together.
    pub items: Option<&'a Items>,
    /// How a clip's window (or knock) scores make its score.
    pub pooling: Pooling,
}

/// How a clip's score is made from its windows' scores (`eval --clip-score`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// The mean (the default): DCASE's usual clip score, for a running machine whose
    /// whole clip sounds one way.
    Mean,
    /// The highest: a fault heard in part of a clip, or a piece knocked several
    /// times in one clip, which the station calls defective where any knock is.
    Max,
}

impl Pooling {
    /// The clip score of `scores` (not empty).
    pub fn pool(self, scores: &[f32]) -> f64 {
        let scores = scores.iter().map(|&s| f64::from(s));
        match self {
            Pooling::Mean => scores.clone().sum::<f64>() / scores.len() as f64,
            Pooling::Max => scores.fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// `eval --windows DIR`: every window a set's evaluation enrolled or scored, so that
/// scorers and features can be studied outside hark on exactly what hark scores.
///
/// `windows_SET.jsonl` has one JSON line per clip (or held-out piece): `part`
/// (`enrol`, `test` or `held-out`), `label` (`normal`, `anomaly` or the twin's name),
/// `file`, `piece` (index of a held-out piece within its file), `rows` (per window the
/// model's output: the embedding, then the band profile when the model has one).
/// `windows_SET.mels` holds, in the same window order, each window's log-mel values
/// (the network's input, dB, frame-major: `frames × n_mels` values) as little-endian
/// f32. Both appear once the set is done ([`AtomicFile`]).
pub(super) struct WindowLog {
    /// The `.jsonl` and the `.mels` file; `None`: not asked for, every call is a no-op.
    out: Option<(AtomicFile, AtomicFile)>,
}

impl WindowLog {
    /// A log for `set` in `dir` (`windows_SET{suffix}.jsonl` and `.mels`; `suffix`
    /// e.g. `_holdout-halves`); `None` logs nothing.
    pub(super) fn new(dir: Option<&Path>, set: &str, suffix: &str) -> anyhow::Result<WindowLog> {
        let Some(dir) = dir else {
            return Ok(WindowLog { out: None });
        };
        let stem = format!("windows_{}{suffix}", set_file_name(set));
        Ok(WindowLog {
            out: Some((
                AtomicFile::create(&dir.join(format!("{stem}.jsonl")))?,
                AtomicFile::create(&dir.join(format!("{stem}.mels")))?,
            )),
        })
    }

    /// Records one clip's (or piece's) windows.
    pub(super) fn add(
        &mut self,
        part: &str,
        label: &str,
        file: &Path,
        piece: usize,
        windows: &Embedded,
    ) -> anyhow::Result<()> {
        let Some((lines, mels_file)) = &mut self.out else {
            return Ok(());
        };
        let line = serde_json::json!({
            "part": part, "label": label, "file": file.display().to_string(),
            "piece": piece, "rows": windows.rows,
        });
        lines.write_all(format!("{line}\n").as_bytes())?;
        for mels in &windows.mels {
            let bytes: Vec<u8> = mels.iter().flat_map(|v| v.to_le_bytes()).collect();
            mels_file.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Puts the files in place, once complete.
    pub(super) fn save(self) -> anyhow::Result<()> {
        match self.out {
            Some((lines, mels)) => {
                mels.commit()?;
                lines.commit()
            }
            None => Ok(()),
        }
    }
}

/// The sets under a folder: the folder itself if it has `train/`, else each child
/// folder that has one (e.g. the machine types of a DCASE 2023 download).
pub fn sets(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dir.join("train").is_dir() {
        return Ok(vec![(name, dir.to_path_buf())]);
    }
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("train").is_dir())
        .map(|p| {
            (
                format!(
                    "{name}/{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
                p,
            )
        })
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: no train/ folder here or one level down (DCASE layout: SET/train, SET/test)",
            dir.display()
        );
    }
    Ok(out)
}

/// Embeddings and RMS level of a clip (channel 0), cut as the daemon would for the
/// model's mode: sliding windows (padded to one if short), or one window per knock.
fn clip_windows(embedder: &Embedder, path: &Path) -> anyhow::Result<(Embedded, f64)> {
    let clip = Clip::read(path)?;
    let mono = clip.mono(Some(0));
    let embedded = audio_windows(embedder, &mono, clip.sample_rate_hz, path)?;
    Ok((embedded, crate::frontend::rms(&mono)))
}

/// The windows of a clip or piece: what the model made of each (what is scored), and
/// the log-mel values it was made from.
pub(super) struct Embedded {
    /// Per window, the model's output ([`Embedder::embed`]).
    pub rows: Vec<Vec<f32>>,
    /// Per window, its `frames × n_mels` log-mel values, dB.
    pub mels: Vec<Vec<f32>>,
}

/// The windows of mono audio at `rate` Hz, cut as [`clip_windows`] cuts a file, and
/// what the model made of each; `path` names it in messages.
pub(super) fn audio_windows(
    embedder: &Embedder,
    mono: &[f32],
    rate: u32,
    path: &Path,
) -> anyhow::Result<Embedded> {
    let meta = embedder.meta();
    let cut = super::offline::Cut::for_sets(&meta.mode);
    let windows = super::offline::windows(meta.front, cut, mono, rate, path)?;
    if windows.is_empty() {
        bail!("{}: no knock found for the tap model", path.display());
    }
    let rows = super::offline::embed_windows(embedder, &windows)
        .with_context(|| format!("{}: embedding failed", path.display()))?;
    Ok(Embedded {
        rows,
        mels: windows.into_iter().map(|w| w.mels).collect(),
    })
}

/// A bank enrolled from `files`, as `hark enroll` would make it (with `items`, as
/// `hark enroll --item` would), and each file's log level.
pub(super) fn enrol(
    embedder: &Embedder,
    files: &[PathBuf],
    items: Option<&Items>,
    bar: &Bar,
    log: &mut WindowLog,
) -> anyhow::Result<(NormalBank, Vec<f64>)> {
    let (mut segments, mut levels) = (Vec::new(), Vec::new());
    for file in files {
        let (e, rms) = clip_windows(embedder, file)?;
        log.add("enrol", "normal", file, 0, &e)?;
        levels.push(log_level(rms));
        bar.inc(1);
        segments.push(e.rows);
    }
    let whole = match items {
        Some(_) => Some(items::numbering(items, files)?.0),
        None => None,
    };
    Ok((bank_of(embedder, segments, whole.as_deref())?, levels))
}

/// A bank of the windows of `segments` (each a clip, or a piece of one), as `hark
/// enroll` would make it. `items`, one per segment: the item each records (`--item`);
/// calibration then scores every window against other items only.
pub(super) fn bank_of(
    embedder: &Embedder,
    segments: Vec<Vec<Vec<f32>>>,
    items: Option<&[u32]>,
) -> anyhow::Result<NormalBank> {
    let (mut embeddings, mut origins) = (Vec::new(), Vec::new());
    for (segment, e) in segments.into_iter().enumerate() {
        for (index, v) in e.into_iter().enumerate() {
            embeddings.push(v);
            let segment = items.map_or(segment as u32, |items| items[segment]);
            origins.push(Origin::of(segment, index as u32, items.is_some()));
        }
    }
    NormalBank::build(
        &embeddings,
        &origins,
        &[],
        embedder.meta().calibration_guard(),
        MAX_BANK,
        crate::bank::Target::for_model(embedder.meta()),
        embedder.hash(),
    )
}

/// A clip's score (its windows' scores pooled as `scoring` says), and the daemon's
/// decision on it at `bank`'s calibrated threshold times `scoring.scale`: any of a tap
/// model's knocks over it, or an event by the continuous rule's defaults.
pub(super) fn judge(
    bank: &NormalBank,
    scoring: Scoring,
    tap: bool,
    embeddings: &[Vec<f32>],
) -> (f64, bool) {
    let scores: Vec<f32> = embeddings.iter().map(|v| bank.nearest(v).0).collect();
    let threshold = bank.calibration.threshold * scoring.scale as f32;
    let event = clip_alarms(threshold, tap, scores.iter().copied());
    (scoring.pooling.pool(&scores), event)
}

fn log_level(rms: f64) -> f64 {
    (rms + 1e-9).ln()
}

/// The test clips of a set (labelled or not), sorted by name.
fn test_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let test_dir = dir.join("test");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(&test_dir)
        .with_context(|| format!("{}: cannot list folder", test_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    tests.sort();
    Ok(tests)
}

/// Evaluates one group: every test clip's score and decision (at the bank's threshold
/// times `scoring.scale`), and the set's numbers (`None` when its test clips lack one of the
/// labels). `bar` advances by one per clip (train and test); `log` gets every clip's
/// windows.
pub(super) fn evaluate(
    embedder: &Embedder,
    group: &Group,
    scoring: Scoring,
    bar: &Bar,
    log: &mut WindowLog,
) -> anyhow::Result<(Vec<ClipScore>, Option<SetResult>)> {
    let (bank, train_levels) = enrol(embedder, &group.train, scoring.items, bar, log)?;
    let tap = embedder.meta().mode == "tap";
    let n = train_levels.len() as f64;
    let mu = train_levels.iter().sum::<f64>() / n;
    let sd = (train_levels.iter().map(|l| (l - mu).powi(2)).sum::<f64>() / n).sqrt() + 1e-9;

    let (mut normal, mut anomaly, mut level_n, mut level_a) = (vec![], vec![], vec![], vec![]);
    // The normal clips' scores by domain (DOMAINS order); other normal clips in neither.
    let mut normal_by_domain = [Vec::new(), Vec::new()];
    let mut clips = Vec::new();
    let mut events = [0, 0];
    for file in &group.test {
        let (e, rms) = clip_windows(embedder, file)?;
        bar.inc(1);
        let is = label(file);
        let name = match is {
            Some(true) => "anomaly",
            Some(false) => "normal",
            None => "unlabelled",
        };
        log.add("test", name, file, 0, &e)?;
        let (score, event) = judge(&bank, scoring, tap, &e.rows);
        let file_name = file.file_name().unwrap_or_default().to_string_lossy();
        clips.push(ClipScore {
            name: file_name.into_owned(),
            score,
            event,
        });
        let Some(is_anomaly) = is else {
            continue;
        };
        events[usize::from(is_anomaly)] += usize::from(event);
        // The peer's loudness baseline: distance of the clip's log level from the
        // training clips' mean, in standard deviations, whichever direction.
        let level = ((log_level(rms) - mu) / sd).abs();
        if is_anomaly {
            anomaly.push(score);
            level_a.push(level);
        } else {
            normal.push(score);
            level_n.push(level);
            if let Some(d) = domain(file) {
                normal_by_domain[d].push(score);
            }
        }
    }
    if normal.is_empty() || anomaly.is_empty() {
        return Ok((clips, None));
    }
    let result = SetResult {
        name: group.name.clone(),
        auc: auc(&normal, &anomaly)?,
        pauc: pauc(&normal, &anomaly, MAX_FPR)?,
        level_auc: auc(&level_n, &level_a)?,
        domain_auc: normal_by_domain.map(|n| auc(&n, &anomaly).ok()),
        normal,
        anomaly,
        events,
    };
    Ok((clips, Some(result)))
}

/// A set's name as part of a file name: a nested set's `/` becomes `_`.
fn set_file_name(set: &str) -> String {
    set.replace(['/', '\\'], "_")
}

/// Evaluates every set under `dirs` and prints a table or JSON lines: on `test/`, or
/// with `holdout` on held-out `train/` clips and their twins ([`super::holdout`]).
/// Banks are calibrated and clips decided as `scoring` says.
pub fn run(
    dirs: &[PathBuf],
    model: &Path,
    out: &Outputs,
    holdout: Option<super::holdout::Holdout>,
    scoring: Scoring,
) -> anyhow::Result<()> {
    let scale = scoring.scale;
    if dirs.is_empty() {
        bail!("give at least one DCASE-layout folder (SET/train, SET/test)");
    }
    if holdout.is_some() && (out.plot.is_some() || out.scores.is_some()) {
        bail!("--plot and --scores write test/ results; leave them out with --holdout");
    }
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--threshold-scale {scale}: must be a number above 0");
    }
    for (flag, dir) in [("--scores", out.scores), ("--windows", out.windows)] {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{flag} {}: cannot create folder", dir.display()))?;
        }
    }
    let embedder = Embedder::load(model)?;
    let mut all_sets = Vec::new();
    let mut clips = 0;
    for dir in dirs {
        for (name, set) in sets(dir)? {
            clips += super::wav_files(&set.join("train"))?.len();
            if holdout.is_none() {
                clips += test_files(&set)?.len();
            }
            all_sets.push((name, set));
        }
    }
    if let Some(h) = holdout {
        return super::holdout::run(&embedder, &all_sets, clips, h, scoring, out);
    }
    let bar = progress::bar(clips as u64, "evaluating", Unit::Items("clips"));
    let mut results = Vec::new();
    // Each machine's submission name, and the group that wrote it.
    let mut written: std::collections::HashMap<String, String> = Default::default();
    for (name, set) in all_sets {
        let train = super::wav_files(&set.join("train"))?;
        let machines = groups(&name, train, test_files(&set)?)?;
        let several = machines.len() > 1;
        let mut of_set = Vec::new();
        for group in &machines {
            bar.set_message(group.name.clone());
            let mut log = WindowLog::new(out.windows, &group.name, "")?;
            let (scored, r) = evaluate(&embedder, group, scoring, &bar, &mut log)?;
            log.save()?;
            if let (Some(dir), false) = (out.scores, scored.is_empty()) {
                let file = submission_name(&name, &group.machine);
                if let Some(other) = written.insert(file.clone(), group.name.clone()) {
                    bail!(
                        "--scores {}: {other} and {} would both write anomaly_score_{file}.csv \
                         (DCASE names it by the set's folder name and machine); score them \
                         in separate runs",
                        dir.display(),
                        group.name
                    );
                }
                write_scores(dir, &file, &scored)?;
            }
            let Some(r) = r else {
                let why = "its test/ clips need both normal and anomaly labels";
                let unlabelled = group.test.iter().filter(|f| label(f).is_none()).count();
                bar.stderr_line(&match out.scores {
                    Some(dir) if !scored.is_empty() => format!(
                        "{}: no AUC ({why}); the scores and decisions of its {} test clips \
                         are in {}",
                        group.name,
                        scored.len(),
                        dir.display()
                    ),
                    _ if unlabelled > 0 => format!(
                        "{}: skipped ({why}; --scores DIR writes the scores and decisions \
                         of its {unlabelled} unlabelled clips)",
                        group.name
                    ),
                    _ => format!("{}: skipped ({why})", group.name),
                });
                continue;
            };
            bar.stdout_line(&result_line(out.json, &r.name, &Numbers::of(&r), None))?;
            of_set.push(r);
        }
        // DCASE 2020's figure for a machine type: the mean over its machines.
        if several && of_set.len() > 1 {
            let mean = Numbers::mean(&of_set);
            bar.stdout_line(&result_line(out.json, &name, &mean, Some(of_set.len())))?;
        }
        results.extend(of_set);
    }
    drop(bar);
    if results.is_empty() && (written.is_empty() || out.plot.is_some()) {
        bail!("no set had test clips of both labels");
    }
    if let Some(svg) = out.plot {
        super::plot::eval_svg(&results, svg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_score_is_its_windows_mean_or_highest() {
        assert_eq!(Pooling::Mean.pool(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(Pooling::Max.pool(&[1.0, 6.0, 2.0]), 6.0);
        // One window (a knock): both are its score.
        assert_eq!(Pooling::Mean.pool(&[0.25]), Pooling::Max.pool(&[0.25]));
    }
}
