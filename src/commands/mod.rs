//! The command line of DESIGN.md and one module per command.

/// `println!` that returns the write's error instead of panicking: when the reader of
/// a pipe goes away (`hark status --json | head -1`), the command ends with a broken
/// pipe error, which `main` turns into a quiet exit ([`is_broken_pipe`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write's error: see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod bench;
mod enroll;
mod eval;
mod eval_report;
mod geometry;
mod holdout;
mod items;
mod machines;
mod offline;
mod plot;
mod progress;
mod record;
mod score;
mod status;
mod train;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

pub use machines::machine_id;
pub use offline::{EmbeddedClip, embed_clip, wav_files};

/// hark: listens to machines and raises alarms over MQTT when they sound wrong.
#[derive(Debug, Parser)]
#[command(name = "hark", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// No progress bars (they are drawn only on a terminal anyway).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (foreground; systemd supervises).
    Run {
        /// Config file [default: /etc/hark/hark.toml, else config/hark.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List input devices: stable id, name, channels, sample rates.
    Devices {
        /// One JSON object per device.
        #[arg(long)]
        json: bool,
    },
    /// Record a normal reference clip from a device.
    Record {
        /// Stable id, name substring or `default`.
        #[arg(long)]
        device: String,
        /// Length in seconds.
        #[arg(long)]
        seconds: f64,
        /// Output WAV (mono, 16-bit, at the device's rate).
        #[arg(long)]
        out: PathBuf,
        /// Capture rate in Hz [default: the device's].
        #[arg(long)]
        rate: Option<u32>,
        /// Channel to keep [default: mix all].
        #[arg(long)]
        channel: Option<usize>,
        /// Channels to open the device with [default: the device's].
        #[arg(long)]
        channels: Option<u16>,
        /// Native sample format to open it with: i16, i32, f32, ... [default: the device's].
        #[arg(long)]
        format: Option<String>,
    },
    /// Build a normal bank from normal clips (DIR/train/*.wav or DIR/*.wav) or from a
    /// configured source's live input.
    Enroll {
        /// Folders of normal clips.
        dirs: Vec<PathBuf>,
        /// Enrol from this source of the config instead of folders.
        #[arg(long, conflicts_with = "dirs")]
        source: Option<String>,
        /// Config file for --source [default: as `run`].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Embedding network.
        #[arg(long, default_value = "models/default.safetensors")]
        model: PathBuf,
        /// Bank file to write (atomically).
        #[arg(long)]
        out: PathBuf,
        /// Most embeddings to keep (greedy k-center coreset); scoring cost grows with it.
        #[arg(long, default_value_t = crate::inference::MAX_BANK)]
        max_bank: usize,
        /// Clips whose names are the same once REGEX is removed record one item (a
        /// piece knocked several times: `--item '_[0-9]+_ini\.wav$'` makes
        /// `S01_1_ini.wav`, `S01_2_ini.wav` one stone). The threshold is then
        /// calibrated on how each item scores against the *other* items, as a new
        /// piece will [default: every clip is an item].
        #[arg(long, value_name = "REGEX", conflicts_with = "source")]
        item: Option<String>,
    },
    /// Score a WAV file offline through the same dsp and inference path as the daemon.
    Score {
        /// The WAV file.
        file: PathBuf,
        /// Config whose first `[[source]]` gives mode, model and bank.
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per window.
        #[arg(long)]
        json: bool,
        /// Also draw the score over time, the threshold and the events (or, in tap
        /// mode, each knock's verdict) to this SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Train the embedding network from normal-only DCASE-layout folders (their
    /// train/ clips): ArcFace over machine identities plus anomaly-twin classes.
    Train {
        /// DCASE-layout folders (SET/train), or folders of such sets.
        dirs: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// Passes over the data (the shipped models' recipe: 5, with `--anchor 0.3`).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Windows per step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Seed of weights, order and augmentation (same seed, same model).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// AdamW learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Probability of mixup per batch.
        #[arg(long, default_value_t = 0.0)]
        mixup: f64,
        /// Label smoothing.
        #[arg(long, default_value_t = 0.1)]
        label_smoothing: f64,
        /// No spectrogram masking.
        #[arg(long)]
        no_spec_mask: bool,
        /// Weight of the anchor term that keeps each embedding near the fixed-seed
        /// network's (0: off). Without it, training on a few machines loses on
        /// machines it never heard (models/README.md, leaving one set out).
        #[arg(long, default_value_t = 0.3)]
        anchor: f64,
        /// Hide the last K frames of each window and train a decoder to predict them
        /// from the embedding (a self-supervised objective on the time course; 0: off).
        #[arg(long, default_value_t = 0, value_name = "K")]
        predict_frames: usize,
        /// No anomaly-twin classes.
        #[arg(long)]
        no_twins: bool,
        /// At most this many windows per clip (originals and each twin).
        #[arg(long, default_value_t = train::DEFAULT_WINDOWS_PER_CLIP)]
        windows_per_clip: usize,
        /// Every clip is a class of its own (instance discrimination), instead of
        /// every machine; twin classes stay one per machine and defect.
        #[arg(long)]
        clip_classes: bool,
        /// Tap mode: train on the window at each knock only, as the station scores,
        /// instead of sliding windows over the whole clip.
        #[arg(long)]
        knock_windows: bool,
        /// Front-end geometry of the model to train.
        #[command(flatten)]
        front: geometry::FrontEndArgs,
    },
    /// DCASE-style evaluation: enrol on each set's train/, score its test/, print AUC
    /// and pAUC (p = 0.1) beside a loudness-only baseline, and in how many clips the
    /// daemon would raise an event at the bank's threshold.
    Eval {
        /// DCASE-layout folders (SET/train, SET/test), or folders of such sets.
        dirs: Vec<PathBuf>,
        /// Embedding network.
        #[arg(long, default_value = "models/default.safetensors")]
        model: PathBuf,
        /// One JSON object per set.
        #[arg(long)]
        json: bool,
        /// Write ROC curves and score histograms to this SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Leave test/ alone: enrol every other train/ clip (long ones are cut into
        /// 10-20 s pieces first), and score the rest as they are and with each
        /// anomaly twin (synthetic fault) applied; AUC and pAUC per twin. For
        /// choosing a model or front end without test clips.
        #[arg(long)]
        holdout: bool,
        /// Which train/ clips --holdout enrols: `interleaved` (even places; the rest
        /// are their neighbours) or `halves` (the first half; the rest are later
        /// recordings or other items, as a deployment meets them).
        #[arg(long, value_enum, default_value = "interleaved", requires = "holdout")]
        holdout_split: holdout::Split,
        /// Seed of the twins' random parameters for --holdout: another seed draws
        /// other twins, to see how much a ranking depends on one draw.
        #[arg(long, default_value_t = holdout::HOLDOUT_SEED, requires = "holdout")]
        holdout_seed: u64,
        /// Also write each machine's clip scores and decisions to this folder, two CSVs
        /// named as DCASE submissions (`anomaly_score_fan_id_00.csv`,
        /// `anomaly_score_ToyCar_section_00_test.csv`: file name, score;
        /// `decision_result_….csv`: file name, 1 where the daemon would raise an event,
        /// else 0). Unlabelled test clips (a DCASE evaluation set) are written too.
        #[arg(long)]
        scores: Option<PathBuf>,
        /// Decide at the bank's calibrated threshold times this, as a source's
        /// `threshold_scale` does (>1: fewer alarms).
        #[arg(long, default_value_t = 1.0)]
        threshold_scale: f64,
        /// How a clip's score is made from its windows' (or knocks') scores: `mean`
        /// (DCASE's usual) or `max` (a fault heard in part of a clip, or a piece
        /// knocked several times in one clip).
        #[arg(long, value_enum, value_name = "HOW", default_value = "mean")]
        clip_score: eval::Pooling,
        /// Clips whose names are the same once REGEX is removed record one item, as
        /// `hark enroll --item` takes them: calibration leaves each item's other
        /// clips out, and --holdout enrols or holds out whole items.
        #[arg(long, value_name = "REGEX")]
        item: Option<String>,
        /// Also write every enrolled and scored window to this folder, per set: its
        /// vector (the model's output) in `windows_SET.jsonl` and its log-mel values in
        /// `windows_SET.mels` (with --holdout `windows_SET_holdout-SPLIT.*`), for
        /// studying scorers outside hark (scripts/scorer-study.py).
        #[arg(long)]
        windows: Option<PathBuf>,
    },
    /// What a running node last told its broker: availability, and per source its
    /// state, score, last event and capture health (the retained topics).
    Status {
        /// Config naming the node and its broker [default: as `run`].
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per source.
        #[arg(long)]
        json: bool,
        /// Most seconds to wait for the broker and its retained messages.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Per-stage cost and real-time factor on this machine.
    Bench {
        /// One JSON object per measurement.
        #[arg(long)]
        json: bool,
        /// Model to measure.
        #[arg(long, default_value = "models/default.safetensors")]
        model: PathBuf,
        /// Seconds of synthetic audio for the end-to-end measurement.
        #[arg(long, default_value_t = 120.0)]
        seconds: f64,
        /// Normal-bank size for the end-to-end measurement (the peer's default: 1000).
        #[arg(long, default_value_t = 1000)]
        bank: usize,
        /// Use this recording (looped to --seconds) instead of a synthetic pump.
        #[arg(long)]
        wav: Option<PathBuf>,
    },
    /// Write a fixed-seed (untrained) embedding network: the network `train` starts
    /// from and `--anchor` keeps near, or a model of its own for a new front end.
    InitModel {
        /// Seed of the weights.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Front-end geometry.
        #[command(flatten)]
        front: geometry::FrontEndArgs,
    },
}

/// Whether a command failed only because stdout's reader went away (`hark … | head`):
/// what it was asked for was cut short by its reader, not by a fault, so the binary
/// ends quietly with success, as ripgrep does.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    progress::set_quiet(cli.quiet);
    match cli.command {
        Command::Run { config } => {
            let path = config.unwrap_or_else(Config::default_path);
            let cfg = Config::load(&path)?;
            init_logging(&cfg.log_level);
            tracing::info!(config = %path.display(), node = %cfg.node, "hark {} starting", env!("CARGO_PKG_VERSION"));
            let shutdown = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, shutdown.clone())
                    .context("cannot install signal handlers")?;
            }
            crate::daemon::run(&cfg, &shutdown)
        }
        Command::Devices { json } => {
            init_logging("warn");
            let devices = crate::devices::list()?;
            if devices.is_empty() && !json {
                outln!("no input devices found")?;
            }
            for d in devices {
                if json {
                    outln!("{}", serde_json::to_string(&d)?)?;
                } else {
                    let rates: Vec<String> = d
                        .sample_rates
                        .iter()
                        .map(|(a, b)| {
                            if a == b {
                                format!("{a}")
                            } else {
                                format!("{a}-{b}")
                            }
                        })
                        .collect();
                    outln!(
                        "{}{}\n    name: {}\n    channels: {:?}  rates (Hz): {}",
                        d.id,
                        if d.default { "  (default)" } else { "" },
                        d.name,
                        d.channels,
                        rates.join(", ")
                    )?;
                }
            }
            Ok(())
        }
        Command::Record {
            device,
            seconds,
            out,
            rate,
            channel,
            channels,
            format,
        } => {
            init_logging("info");
            let format = match format {
                None => None,
                Some(f) => Some(
                    crate::devices::parse_format(&f)
                        .with_context(|| format!("--format {f:?}: expected i16, i32, f32, ..."))?,
                ),
            };
            let req = crate::devices::Request {
                rate_hz: rate,
                channels,
                format,
            };
            record::run(&device, seconds, &out, req, channel)
        }
        Command::Enroll {
            dirs,
            source,
            config,
            model,
            out,
            max_bank,
            item,
        } => {
            init_logging("info");
            anyhow::ensure!(max_bank >= 2, "--max-bank {max_bank}: must be >= 2");
            let items = items::parse(item.as_deref())?;
            match source {
                Some(name) => enroll::from_source(
                    &config.unwrap_or_else(Config::default_path),
                    &name,
                    &model,
                    &out,
                    max_bank,
                ),
                None => enroll::from_dirs(&dirs, &model, &out, max_bank, items.as_ref()),
            }
        }
        Command::Score {
            file,
            config,
            json,
            plot,
        } => {
            init_logging("warn");
            score::run(
                &file,
                &config.unwrap_or_else(Config::default_path),
                json,
                plot.as_deref(),
            )
        }
        Command::Status {
            config,
            json,
            timeout,
        } => {
            init_logging("warn");
            anyhow::ensure!(
                timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0,
                "--timeout {timeout}: must be between 0 and 3600 seconds"
            );
            status::run(
                &config.unwrap_or_else(Config::default_path),
                json,
                std::time::Duration::from_secs_f64(timeout),
            )
        }
        Command::Bench {
            json,
            model,
            seconds,
            bank,
            wav,
        } => {
            init_logging("warn");
            let options = bench::Options {
                model,
                seconds,
                bank,
                wav,
            };
            bench::run(&options, json)
        }
        Command::Train {
            dirs,
            out,
            epochs,
            batch,
            seed,
            lr,
            mixup,
            label_smoothing,
            no_spec_mask,
            anchor,
            predict_frames,
            no_twins,
            windows_per_clip,
            clip_classes,
            knock_windows,
            front,
        } => {
            init_logging("info");
            let config = crate::train::TrainConfig {
                epochs,
                batch,
                seed,
                lr,
                mixup,
                label_smoothing,
                spec_mask: !no_spec_mask,
                anchor,
                predict_frames,
                ..Default::default()
            };
            train::run(&train::Options {
                meta: front.meta("")?,
                dirs,
                out,
                config,
                twins: !no_twins,
                windows_per_clip,
                clip_classes,
                knock_windows,
            })
        }
        Command::Eval {
            dirs,
            model,
            json,
            plot,
            holdout,
            holdout_split,
            holdout_seed,
            scores,
            threshold_scale,
            clip_score,
            item,
            windows,
        } => {
            init_logging("info");
            let items = items::parse(item.as_deref())?;
            let out = eval::Outputs {
                json,
                plot: plot.as_deref(),
                scores: scores.as_deref(),
                windows: windows.as_deref(),
            };
            let holdout = holdout.then_some(holdout::Holdout {
                split: holdout_split,
                seed: holdout_seed,
            });
            let scoring = eval::Scoring {
                scale: threshold_scale,
                items: items.as_ref(),
                pooling: clip_score,
            };
            eval::run(&dirs, &model, &out, holdout, scoring)
        }
        Command::InitModel { seed, out, front } => {
            let meta = front.meta(&format!("fixed-seed {seed} (untrained)"))?;
            crate::model::init_fixed_seed(&meta, seed, &out)?;
            outln!("wrote {} (seed {seed})", out.display())?;
            Ok(())
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the configured level. Under systemd (journald
/// adds its own) timestamps are left out.
fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        // rumqttd logs every client disconnect as an error; the embedded broker's own
        // trouble surfaces as hark's MQTT connection state instead.
        _ => EnvFilter::new(format!("hark={level},rumqttd=off,warn")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
