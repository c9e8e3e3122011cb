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
use crate::metrics::{auc, hmean, pauc};
use crate::model::Embedder;
use crate::wav::Clip;

use super::machines::{DOMAINS, Group, domain, groups, label};

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
    /// The clip's score: the mean of its windows' scores ([`clip_score`]).
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
    /// Folder for one clip-score CSV and one decision CSV per machine ([`submission_name`]).
    pub scores: Option<&'a Path>,
    /// Folder for one file per set of every scored window's vector ([`WindowLog`]).
    pub windows: Option<&'a Path>,
    /// Decisions are taken at the bank's threshold times this (a source's
    /// `threshold_scale`).
    pub threshold_scale: f64,
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

/// A bank enrolled from `files`, as `hark enroll` would make it, and each file's log
/// level.
pub(super) fn enrol(
    embedder: &Embedder,
    files: &[PathBuf],
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
    Ok((bank_of(embedder, segments)?, levels))
}

/// A bank of the windows of `segments` (each a clip, or a piece of one), as `hark
/// enroll` would make it.
pub(super) fn bank_of(
    embedder: &Embedder,
    segments: Vec<Vec<Vec<f32>>>,
) -> anyhow::Result<NormalBank> {
    let (mut embeddings, mut origins) = (Vec::new(), Vec::new());
    for (segment, e) in segments.into_iter().enumerate() {
        for (index, v) in e.into_iter().enumerate() {
            embeddings.push(v);
            origins.push(Origin {
                segment: segment as u32,
                index: index as u32,
            });
        }
    }
    NormalBank::build(
        &embeddings,
        &origins,
        &[],
        embedder.meta().front.overlapping_windows(),
        MAX_BANK,
        crate::bank::Target::for_model(embedder.meta()),
        embedder.hash(),
    )
}

/// A clip's score: the mean of its windows' scores.
pub(super) fn clip_score(bank: &NormalBank, embeddings: &[Vec<f32>]) -> f64 {
    embeddings
        .iter()
        .map(|v| f64::from(bank.nearest(v).0))
        .sum::<f64>()
        / embeddings.len() as f64
}

/// The daemon's decision on a clip's windows at `bank`'s calibrated threshold times
/// `scale`: any of a tap model's knocks over it, or an event by the continuous rule's
/// defaults.
pub(super) fn decide(bank: &NormalBank, scale: f64, tap: bool, embeddings: &[Vec<f32>]) -> bool {
    let threshold = bank.calibration.threshold * scale as f32;
    clip_alarms(threshold, tap, embeddings.iter().map(|v| bank.nearest(v).0))
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
/// times `scale`), and the set's numbers (`None` when its test clips lack one of the
/// labels). `bar` advances by one per clip (train and test); `log` gets every clip's
/// windows.
pub(super) fn evaluate(
    embedder: &Embedder,
    group: &Group,
    scale: f64,
    bar: &Bar,
    log: &mut WindowLog,
) -> anyhow::Result<(Vec<ClipScore>, Option<SetResult>)> {
    let (bank, train_levels) = enrol(embedder, &group.train, bar, log)?;
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
        let score = clip_score(&bank, &e.rows);
        let event = decide(&bank, scale, tap, &e.rows);
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

/// What DCASE calls a machine's result files, after `anomaly_score_` and
/// `decision_result_`: `TYPE_id_02` (2020) or `TYPE_section_00_test` (2021+), TYPE
/// being the set's folder name (`fan` of `dcase2023/fan`), so that DCASE's own
/// evaluators read what `eval --scores` writes. A set whose clips name no machine is
/// `TYPE`.
pub fn submission_name(set: &str, machine: &str) -> String {
    let kind = set.rsplit(['/', '\\']).next().unwrap_or(set);
    match machine {
        "" => kind.to_string(),
        m if m.starts_with("section_") => format!("{kind}_{m}_test"),
        m => format!("{kind}_{m}"),
    }
}

/// The scores file `eval --scores DIR` writes for a machine: `anomaly_score_NAME.csv`
/// ([`submission_name`]).
pub fn scores_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("anomaly_score_{name}.csv"))
}

/// Its decisions beside it: `decision_result_NAME.csv`.
pub fn decisions_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("decision_result_{name}.csv"))
}

/// A set's name as part of a file name: a nested set's `/` becomes `_`.
fn set_file_name(set: &str) -> String {
    set.replace(['/', '\\'], "_")
}

/// Writes a set's clip scores (`file name,score`) and decisions (`file name,1` where
/// the daemon would raise an event, else `0`), one line per clip and no header, as
/// DCASE submissions; each file atomically.
fn write_scores(dir: &Path, name: &str, clips: &[ClipScore]) -> anyhow::Result<()> {
    let lines = |f: &dyn Fn(&ClipScore) -> String| -> String {
        clips
            .iter()
            .map(|c| format!("{},{}\n", c.name, f(c)))
            .collect()
    };
    let scores = lines(&|c| c.score.to_string());
    crate::fsutil::write_atomic(&scores_file(dir, name), scores.as_bytes())?;
    let decisions = lines(&|c| u8::from(c.event).to_string());
    crate::fsutil::write_atomic(&decisions_file(dir, name), decisions.as_bytes())
}

/// What a result line reports: one group's numbers, or a set's mean over its machines.
struct Numbers {
    auc: f64,
    pauc: f64,
    level_auc: f64,
    domain_auc: [Option<f64>; 2],
    /// DCASE 2021–2024's official score: the harmonic mean of each machine's source
    /// AUC, target AUC and pAUC; `None` unless every machine has both domains.
    dcase_score: Option<f64>,
    n_normal: usize,
    n_anomaly: usize,
    events: [usize; 2],
}

/// The three values of a machine that DCASE 2021–2024's official score takes the
/// harmonic mean of, if its test clips name both domains.
fn dcase_values(r: &SetResult) -> Option<[f64; 3]> {
    match r.domain_auc {
        [Some(source), Some(target)] => Some([source, target, r.pauc]),
        _ => None,
    }
}

impl Numbers {
    fn of(r: &SetResult) -> Numbers {
        Numbers {
            auc: r.auc,
            pauc: r.pauc,
            level_auc: r.level_auc,
            domain_auc: r.domain_auc,
            dcase_score: dcase_values(r).and_then(|v| hmean(&v)),
            n_normal: r.normal.len(),
            n_anomaly: r.anomaly.len(),
            events: r.events,
        }
    }

    /// The mean AUC, pAUC and level AUC over `rs`, with their clips counted together.
    fn mean(rs: &[SetResult]) -> Numbers {
        let n = rs.len() as f64;
        let mean = |f: fn(&SetResult) -> f64| rs.iter().map(f).sum::<f64>() / n;
        Numbers {
            auc: mean(|r| r.auc),
            pauc: mean(|r| r.pauc),
            level_auc: mean(|r| r.level_auc),
            // A domain's mean over the machines that have its normal clips.
            domain_auc: [0, 1].map(|d| {
                let v: Vec<f64> = rs.iter().filter_map(|r| r.domain_auc[d]).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            }),
            // Over every machine's three values together, as DCASE takes it.
            dcase_score: rs
                .iter()
                .map(dcase_values)
                .collect::<Option<Vec<[f64; 3]>>>()
                .and_then(|v| hmean(v.as_flattened())),
            n_normal: rs.iter().map(|r| r.normal.len()).sum(),
            n_anomaly: rs.iter().map(|r| r.anomaly.len()).sum(),
            events: [0, 1].map(|i| rs.iter().map(|r| r.events[i]).sum()),
        }
    }
}

/// One line of `hark eval`'s output: a table row, or with `json` a JSON object.
/// `machines`: the line is a set's mean over that many machines (`"machines": N`).
fn result_line(json: bool, name: &str, n: &Numbers, machines: Option<usize>) -> String {
    if json {
        let mut v = serde_json::json!({
            "set": name, "auc": n.auc, "pauc": n.pauc, "level_auc": n.level_auc,
            "n_normal": n.n_normal, "n_anomaly": n.n_anomaly,
            "false_alarms": n.events[0], "detected": n.events[1],
        });
        if let Some(m) = machines {
            v["machines"] = m.into();
        }
        for (d, a) in DOMAINS.iter().zip(n.domain_auc) {
            if let Some(a) = a {
                v[format!("auc_{d}")] = a.into();
            }
        }
        if let Some(h) = n.dcase_score {
            v["dcase_score"] = h.into();
        }
        v.to_string()
    } else {
        let name = match machines {
            Some(m) => format!("{name} (mean of {m})"),
            None => name.to_string(),
        };
        let mut line = format!(
            "{:<24} AUC {:6.2}  pAUC {:6.2}  level AUC {:6.2}  ({} normal / {} anomaly)  \
             events in {}/{} normal, {}/{} anomaly",
            name,
            100.0 * n.auc,
            100.0 * n.pauc,
            100.0 * n.level_auc,
            n.n_normal,
            n.n_anomaly,
            n.events[0],
            n.n_normal,
            n.events[1],
            n.n_anomaly,
        );
        for (d, a) in DOMAINS.iter().zip(n.domain_auc) {
            if let Some(a) = a {
                line.push_str(&format!("  {d} AUC {:6.2}", 100.0 * a));
            }
        }
        if let Some(h) = n.dcase_score {
            line.push_str(&format!("  DCASE score {:6.2}", 100.0 * h));
        }
        line
    }
}

/// Evaluates every set under `dirs` and prints a table or JSON lines: on `test/`, or
/// with `holdout` on held-out `train/` clips and their twins ([`super::holdout`]).
pub fn run(
    dirs: &[PathBuf],
    model: &Path,
    out: &Outputs,
    holdout: Option<super::holdout::Holdout>,
) -> anyhow::Result<()> {
    if dirs.is_empty() {
        bail!("give at least one DCASE-layout folder (SET/train, SET/test)");
    }
    if holdout.is_some() && (out.plot.is_some() || out.scores.is_some()) {
        bail!("--plot and --scores write test/ results; leave them out with --holdout");
    }
    let scale = out.threshold_scale;
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
        return super::holdout::run(&embedder, &all_sets, clips, h, out);
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
            let (scored, r) = evaluate(&embedder, group, out.threshold_scale, &bar, &mut log)?;
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
    fn scores_files_are_named_as_dcase_submissions() {
        // DCASE 2020: anomaly_score_fan_id_00.csv; 2021+: ..._section_00_test.csv.
        assert_eq!(submission_name("fan", "id_00"), "fan_id_00");
        assert_eq!(
            submission_name("dcase2023/ToyCar", "section_00"),
            "ToyCar_section_00_test"
        );
        assert_eq!(submission_name("my/recordings", ""), "recordings");
        let dir = Path::new("out");
        assert_eq!(
            scores_file(dir, "fan_id_00"),
            Path::new("out/anomaly_score_fan_id_00.csv")
        );
        assert_eq!(
            decisions_file(dir, "ToyCar_section_00_test"),
            Path::new("out/decision_result_ToyCar_section_00_test.csv")
        );
    }
}
