//! `hark enroll`: builds a normal bank from normal clips or a source's live input.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::items::{self, Items};
use super::progress::{self, Unit};
use crate::bank::{NormalBank, Origin, RowNote};
use crate::capture::Input;
use crate::config::Config;
use crate::detector::clip_alarms;
use crate::frontend::FrontEnd;
use crate::model::Embedder;

/// Enrols from every normal clip of the given folders. With `items`, clips of one item
/// (one object knocked several times, one recording cut into clips) are left out of
/// each other's calibration score and of the held-out check together.
pub fn from_dirs(
    dirs: &[PathBuf],
    model: &Path,
    out: &Path,
    max_bank: usize,
    items: Option<&Items>,
) -> anyhow::Result<()> {
    if dirs.is_empty() {
        bail!("give at least one folder of normal clips, or --source NAME");
    }
    let embedder = Embedder::load(model)?;
    let front = embedder.meta().front;
    // A tap model's bank holds knock windows, as the station will score them.
    let cut = super::offline::Cut::for_sets(&embedder.meta().mode);
    let files = dirs
        .iter()
        .map(|d| super::wav_files(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let machines: std::collections::BTreeSet<String> = files
        .iter()
        .flatten()
        .map(|f| super::machine_id(&f.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    if machines.len() > 1 {
        let names: Vec<String> = machines.into_iter().collect();
        tracing::warn!(
            "the clips are of {} machines ({}): one bank for all of them; a bank is for \
             one machine, so enrol each machine's clips into a bank of its own",
            names.len(),
            names.join(", ")
        );
    }
    let files: Vec<PathBuf> = files.into_iter().flatten().collect();
    let (item_of, n_items) = items::numbering(items, &files)?;
    if items.is_some() {
        outln!("{} clips of {n_items} items (--item)", files.len())?;
    }
    let bar = progress::bar(files.len() as u64, "enrolling", Unit::Items("files"));
    let mut embeddings = Vec::new();
    let mut origins = Vec::new();
    let mut notes = Vec::new();
    // Each clip's name (as its rows' notes give it), item and windows' range.
    let mut clips = Vec::new();
    for (file, &item) in files.iter().zip(&item_of) {
        let clip = super::embed_clip(&embedder, front, cut, file, None)?;
        bar.inc(1);
        if clip.windows.is_empty() {
            tracing::warn!(file = %file.display(), "no knock found: skipped");
        }
        let name = file.display().to_string();
        let item_name = items.map(|items| items.of(file));
        clips.push(Clip {
            name: name.clone(),
            item: item_name.clone(),
            rows: embeddings.len()..embeddings.len() + clip.windows.len(),
        });
        for (w, e) in clip.windows.iter().zip(clip.embeddings) {
            embeddings.push(e);
            origins.push(Origin::of(item, w.index as u32, items.is_some()));
            notes.push(note(w, front.n_mels, &name, item_name.clone()));
        }
    }
    drop(bar);
    let bank = save(&embedder, &embeddings, &origins, &notes, out, max_bank)?;
    if embedder.meta().mode != "tap" {
        report_unlike_the_rest(&bank, &embeddings, &clips, items.is_some())?;
    }
    Ok(())
}

/// An enrolled clip: its name and item (as its rows' notes give them) and the range of
/// its windows among the enrolment's.
struct Clip {
    name: String,
    item: Option<String>,
    rows: std::ops::Range<usize>,
}

/// The clips of an enrolment in which the daemon would raise an event (at the bank's
/// threshold, by the default rule) if the bank held only the other clips' windows:
/// recordings that sound unlike the rest (another day, load or microphone position,
/// or not normal at all). Each clip's windows are scored against the bank's rows from
/// the other clips, or with `--item` the other items (its notes name each row's clip
/// and item); a bank of one clip has no other.
fn unlike_the_rest(bank: &NormalBank, embeddings: &[Vec<f32>], clips: &[Clip]) -> Vec<String> {
    let threshold = bank.calibration.threshold;
    clips
        .iter()
        .filter(|clip| {
            let ours = |n: &RowNote| match &clip.item {
                Some(item) => n.item.as_ref() == Some(item),
                None => n.clip == clip.name,
            };
            let other = |i: usize| !bank.note(i).is_some_and(ours);
            let scores: Option<Vec<f32>> = embeddings[clip.rows.clone()]
                .iter()
                .map(|e| bank.nearest_among(e, other))
                .collect();
            scores.is_some_and(|s| clip_alarms(threshold, false, s))
        })
        .map(|clip| clip.name.clone())
        .collect()
}

/// Says how many enrolled clips are [`unlike_the_rest`], and warns with their names.
fn report_unlike_the_rest(
    bank: &NormalBank,
    embeddings: &[Vec<f32>],
    clips: &[Clip],
    by_item: bool,
) -> anyhow::Result<()> {
    if clips.len() < 2 {
        return Ok(());
    }
    let odd = unlike_the_rest(bank, embeddings, clips);
    outln!(
        "held-out check: {} of {} clips would raise an event against a bank of the {}",
        odd.len(),
        clips.len(),
        if by_item { "other items" } else { "others" }
    )?;
    if !odd.is_empty() {
        const SHOWN: usize = 5;
        let more = match odd.len() > SHOWN {
            true => format!(" and {} more", odd.len() - SHOWN),
            false => String::new(),
        };
        tracing::warn!(
            "unlike the other clips: {}{more}. If the machine was normal in them, it has a \
             condition few clips show: enrol more of it; if not, leave them out",
            odd[..odd.len().min(SHOWN)].join(", ")
        );
    }
    Ok(())
}

/// Enrols from `learn_seconds` of a configured source's live input.
pub fn from_source(
    config: &Path,
    name: &str,
    model: &Path,
    out: &Path,
    max_bank: usize,
) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let Some(s) = cfg.sources.iter().find(|s| s.name == name) else {
        bail!("{}: no [[source]] named {name:?}", config.display());
    };
    let embedder = Embedder::load(model)?;
    let front = embedder.meta().front;
    let input = Input::open(s)?;
    let mut fe = FrontEnd::new(front, input.sample_rate_hz())?;
    let mut windows = Vec::new();
    let started = std::time::SystemTime::now();
    tracing::info!(
        source = name,
        seconds = s.learn_seconds,
        "enrolling from live input"
    );
    super::record::capture_for(input, s, s.learn_seconds, "enrolling", &mut |chunk| {
        fe.push(chunk, &mut |w| windows.push(w));
        Ok(())
    })?;
    let embeddings = super::offline::embed_windows(&embedder, &windows)?;
    let origins: Vec<Origin> = windows
        .iter()
        .map(|w| Origin {
            segment: 0,
            index: w.index as u32,
        })
        .collect();
    let clip = format!("live:{name}:{}", crate::report::rfc3339(started));
    let notes: Vec<_> = windows
        .iter()
        .map(|w| note(w, front.n_mels, &clip, None))
        .collect();
    save(&embedder, &embeddings, &origins, &notes, out, max_bank)?;
    Ok(())
}

/// What the bank remembers of an enrolment window: for explanations, and where it
/// came from, for calibration at a rebuild.
fn note(
    w: &crate::frontend::Window,
    n_mels: usize,
    clip: &str,
    item: Option<String>,
) -> Option<RowNote> {
    Some(RowNote {
        profile: crate::explain::profile(&w.mels, n_mels),
        clip: clip.to_string(),
        t: w.t_start_s as f32,
        item,
    })
}

fn save(
    embedder: &Embedder,
    embeddings: &[Vec<f32>],
    origins: &[Origin],
    notes: &[Option<RowNote>],
    out: &Path,
    max_bank: usize,
) -> anyhow::Result<NormalBank> {
    let guard = embedder.meta().calibration_guard();
    let bank = NormalBank::build(
        embeddings,
        origins,
        notes,
        guard,
        max_bank,
        crate::bank::Target::for_model(embedder.meta()),
        embedder.hash(),
    )?;
    bank.save(out)?;
    outln!(
        "wrote {}: {} embeddings from {} windows, threshold {:.5} (normal scores: mean {:.5}, max {:.5})",
        out.display(),
        bank.len(),
        bank.n_windows,
        bank.calibration.threshold,
        bank.calibration.score_mean,
        bank.calibration.score_max
    )?;
    Ok(bank)
}
