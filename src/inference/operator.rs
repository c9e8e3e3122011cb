//! Operator commands on a source's `cmd` topic (`learn_start`/`learn_stop`,
//! `false_alarm`, `mute`): what the inference thread remembers for them, and the new
//! bank they make. A new bank is built on a thread of its own while the source goes on
//! scoring with the bank it has; it takes the old one's place once it is saved.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::{Inference, MAX_BANK, Phase};
use crate::bank::{NormalBank, RowNote};
use crate::detector::Transition;
use crate::station::StationCommand;

/// A window's embedding and what the bank should remember of it.
pub(super) type Row = (Vec<f32>, RowNote);

/// Knocks (or windows) collected since `enroll_start`, and the item they are of.
#[derive(Default)]
pub(super) struct Enrolling {
    rows: Vec<Row>,
    /// What the latest `enroll_start` named (`None`: nothing).
    item: Option<String>,
}

impl Enrolling {
    /// Collects a row, as of the item named last.
    pub(super) fn push(&mut self, (embedding, mut note): Row) {
        note.item = self.item.clone();
        self.rows.push((embedding, note));
    }
}

/// Operator state of a source (commands on its `cmd` topic).
#[derive(Default)]
pub(super) struct Station {
    /// What has been collected since `enroll_start`.
    pub(super) enrolling: Option<Enrolling>,
    /// The last knock, for `false_alarm`.
    pub(super) last: Option<Row>,
    /// Continuous sources: the over-threshold windows of the latest event.
    pub(super) event_windows: Vec<Row>,
    /// No new events until then.
    pub(super) muted_until: Option<Instant>,
    /// The running event began during a mute: none of its messages go out.
    pub(super) event_muted: bool,
}

impl Station {
    /// Bookkeeping for one scored window of a continuous source; `row` is made only
    /// if the window is kept (once, even when both lists keep it).
    pub(super) fn note(&mut self, row: impl FnOnce() -> Row, over: bool, transition: Transition) {
        if transition == Transition::Raise {
            self.event_windows.clear();
            self.event_muted = self.muted_until.is_some_and(|t| Instant::now() < t);
            if self.event_muted {
                tracing::info!("event muted");
            }
        }
        let collect = self
            .enrolling
            .as_ref()
            .is_some_and(|c| c.rows.len() < MAX_COLLECTED);
        let keep = over && self.event_windows.len() < MAX_EVENT_WINDOWS;
        if !(collect || keep) {
            return;
        }
        let row = row();
        match self.enrolling.as_mut().filter(|_| collect) {
            Some(c) if keep => {
                self.event_windows.push(row.clone());
                c.push(row);
            }
            Some(c) => c.push(row),
            None => self.event_windows.push(row),
        }
    }
}

/// Windows kept per event for `false_alarm`.
const MAX_EVENT_WINDOWS: usize = 256;
/// Windows collected at most between `learn_start` and `learn_stop` (continuous).
pub(super) const MAX_COLLECTED: usize = 16 * MAX_BANK;

/// A new bank being built beside detection, and the command that asked for it.
pub(super) struct Update {
    name: &'static str,
    done: Receiver<anyhow::Result<NormalBank>>,
}

impl Update {
    /// Builds `bank` on a thread of its own.
    fn start(
        name: &'static str,
        bank: impl FnOnce() -> anyhow::Result<NormalBank> + Send + 'static,
    ) -> Update {
        let (tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(bank());
        });
        Update { name, done }
    }

    /// Where the new bank arrives (for `select!`).
    pub(super) fn done(&self) -> &Receiver<anyhow::Result<NormalBank>> {
        &self.done
    }
}

impl Inference {
    /// Carries out a station command. Returns the `cmd/result` payload, or `None` when
    /// the command started a bank update, whose payload [`Inference::finish_update`]
    /// gives once the new bank is built.
    pub(super) fn command(
        &self,
        cmd: StationCommand,
        phase: &mut Phase,
        station: &mut Station,
        update: &mut Option<Update>,
    ) -> Option<serde_json::Value> {
        // A continuous source learns; a tap station enrolls knocks.
        let name = match (&cmd, self.tap) {
            (StationCommand::EnrollStart { .. }, false) => "learn_start",
            (StationCommand::EnrollStop, false) => "learn_stop",
            _ => cmd.as_str(),
        };
        let fail = |e: String| Some(serde_json::json!({"cmd": name, "ok": false, "error": e}));
        if let StationCommand::Mute { minutes } = cmd {
            if self.tap {
                return fail("tap sources have no events to mute (verdicts always go out)".into());
            }
            station.muted_until =
                (minutes > 0.0).then(|| Instant::now() + Duration::from_secs_f64(minutes * 60.0));
            tracing::info!(source = %self.name, minutes, "events muted");
            return Some(serde_json::json!({"cmd": name, "ok": true, "minutes": minutes}));
        }
        let Phase::Armed(det) = phase else {
            return fail("the source is still learning its first bank".into());
        };
        if let StationCommand::EnrollStart { item } = cmd {
            if item.is_some() && !self.tap {
                // As `--item` on a running machine's clips, it would count the margin
                // for another day twice (models/README.md, "Leaving the whole piece out").
                return fail(
                    "item names a piece at a tap station; a running machine's bank already keeps a 2x margin for other days"
                        .into(),
                );
            }
            // Sent again while collecting, it keeps what was collected: a station
            // names each piece as it comes (`{"cmd": "enroll_start", "item": "S07"}`).
            let collecting = station.enrolling.get_or_insert_with(Enrolling::default);
            collecting.item = item;
            let mut reply =
                serde_json::json!({"cmd": name, "ok": true, "collected": collecting.rows.len()});
            if let Some(item) = &collecting.item {
                reply["item"] = item.as_str().into();
            }
            return Some(reply);
        }
        if let Some(u) = update {
            return fail(format!(
                "the bank of the last {} is still being built: send this again once its result is in",
                u.name
            ));
        }
        let started = match cmd {
            StationCommand::EnrollStop => {
                let Some(Enrolling {
                    rows: collected, ..
                }) = station.enrolling.take()
                else {
                    return fail("not enrolling: send enroll_start first".into());
                };
                if collected.is_empty() {
                    return fail("no knocks were heard while enrolling".into());
                }
                let (rows, notes): (Vec<Vec<f32>>, Vec<Option<RowNote>>) =
                    collected.into_iter().map(|(e, n)| (e, Some(n))).unzip();
                let spacing = self.embedder.meta().spacing();
                let guard = self.embedder.meta().calibration_guard();
                let target = crate::bank::Target::for_model(self.embedder.meta());
                let bank = det.bank().clone();
                Update::start(name, move || {
                    bank.extend(rows, notes, spacing, guard, MAX_BANK, target)
                })
            }
            StationCommand::FalseAlarm => {
                let windows: Vec<Row> = match self.tap {
                    true => station.last.take().into_iter().collect(),
                    false => std::mem::take(&mut station.event_windows),
                };
                if windows.is_empty() {
                    return fail(match self.tap {
                        true => "no knock since the start or the last false_alarm".into(),
                        false => "no event since the start or the last false_alarm".into(),
                    });
                }
                let mut bank = det.bank().clone();
                Update::start(name, move || {
                    for (w, note) in windows {
                        bank.push(&w, Some(note));
                    }
                    bank.cap(MAX_BANK);
                    Ok(bank)
                })
            }
            StationCommand::EnrollStart { .. } | StationCommand::Mute { .. } => {
                unreachable!("answered above")
            }
        };
        tracing::info!(source = %self.name, cmd = name, "building a new bank; detection goes on with the old one");
        *update = Some(started);
        None
    }

    /// The new bank of a finished [`Update`]: saved, then put to use. Returns the
    /// command's `cmd/result` payload.
    pub(super) fn finish_update(
        &self,
        update: Update,
        built: Result<anyhow::Result<NormalBank>, crossbeam_channel::RecvError>,
        phase: &mut Phase,
    ) -> serde_json::Value {
        let name = update.name;
        let fail = |e: String| serde_json::json!({"cmd": name, "ok": false, "error": e});
        let bank = match built {
            Ok(Ok(bank)) => bank,
            Ok(Err(e)) => return fail(format!("{e:#}")),
            Err(_) => return fail("the bank update stopped without a bank".into()),
        };
        // Updates start only on an armed source, and a source never unlearns.
        let Phase::Armed(det) = phase else {
            return fail("the source is not armed".into());
        };
        // Saved before it is used: a power cut leaves the old bank or the new one.
        if let Err(e) = bank.save(&self.bank_path) {
            self.health
                .storage_ok
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return fail(format!("bank not saved: {e:#}"));
        }
        self.health
            .storage_ok
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(source = %self.name, cmd = name, size = bank.len(), "bank updated");
        let reply = serde_json::json!({
            "cmd": name, "ok": true, "bank_size": bank.len(), "threshold": bank.calibration.threshold,
        });
        det.replace_bank(bank, self.decision.3);
        reply
    }

    /// Waits for `update` to finish, keeping the watchdog beat (a lossless replay, or
    /// the input's end), and returns its payload.
    pub(super) fn wait_update(&self, update: Update, phase: &mut Phase) -> serde_json::Value {
        let built = self.beating(|| update.done.recv());
        self.finish_update(update, built, phase)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::bank::{Origin, Target};
    use crate::model::Embedder;

    /// An armed continuous source with a bank of 16 windows, and 8 windows of
    /// another sound for it to be taught.
    fn armed(bank_path: &Path) -> (Inference, Phase, Vec<Row>) {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors");
        let embedder = Embedder::load(&model).unwrap();
        let n = embedder.window_len();
        let n_mels = embedder.meta().front.n_mels;
        let windows: Vec<Vec<f32>> = (0..24)
            .map(|i| {
                let level = if i < 16 { -60.0 } else { -20.0 };
                (0..n)
                    .map(|j| level + ((j * (i % 5 + 3)) % 17) as f32 * 0.5)
                    .collect()
            })
            .collect();
        let slices: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
        let rows = embedder.embed(&slices).unwrap();
        let origins: Vec<Origin> = (0..16)
            .map(|i| Origin {
                segment: i,
                index: 0,
            })
            .collect();
        let target = Target::for_model(embedder.meta());
        let bank = NormalBank::build(
            &rows[..16],
            &origins,
            &[],
            0,
            MAX_BANK,
            target,
            embedder.hash(),
        )
        .unwrap();
        let inference = Inference {
            source: 0,
            name: "pump".into(),
            embedder,
            bank: None,
            bank_path: bank_path.to_path_buf(),
            learn_seconds: 10.0,
            decision: (3, 5, 5, 1.0),
            event_update_s: 1.0,
            lossless: false,
            tap: false,
            commands: None,
            health: Arc::new(crate::health::SourceHealth::new()),
            evidence: None,
        };
        let phase = Phase::Armed(inference.detector(bank));
        let taught = rows[16..]
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let note = RowNote {
                    profile: crate::explain::profile(&windows[16 + i], n_mels),
                    clip: "live:test".into(),
                    t: i as f32,
                    item: None,
                };
                (r.clone(), note)
            })
            .collect();
        (inference, phase, taught)
    }

    fn error(payload: Option<serde_json::Value>) -> String {
        let p = payload.expect("an answer now");
        assert_eq!(p["ok"], false, "{p}");
        p["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn false_alarm_builds_beside_detection_and_refuses_a_second_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pump.bank.safetensors");
        let (inference, mut phase, taught) = armed(&path);
        let mut station = Station::default();
        let mut update = None;
        let Phase::Armed(det) = &phase else { panic!() };
        let before = det.nearest(&taught[0].0).0;
        assert!(before > det.threshold(), "the new sound scores {before}");

        station.event_windows = taught.clone();
        let started = inference.command(
            StationCommand::FalseAlarm,
            &mut phase,
            &mut station,
            &mut update,
        );
        assert!(started.is_none(), "answered at once: {started:?}");
        assert!(update.is_some());
        // Meanwhile: another bank change is refused and says why; the event's windows
        // stay for a later false_alarm. Other commands are answered.
        station.event_windows = taught.clone();
        let busy = inference.command(
            StationCommand::FalseAlarm,
            &mut phase,
            &mut station,
            &mut update,
        );
        assert!(error(busy).contains("still being built"));
        assert_eq!(station.event_windows.len(), taught.len());
        let mute = StationCommand::Mute { minutes: 1.0 };
        let muted = inference.command(mute, &mut phase, &mut station, &mut update);
        assert_eq!(muted.expect("an answer")["ok"], true);

        let done = inference.wait_update(update.take().unwrap(), &mut phase);
        assert_eq!(done["ok"], true, "{done}");
        assert_eq!(done["bank_size"], 24);
        let Phase::Armed(det) = &phase else { panic!() };
        assert!(det.nearest(&taught[0].0).0 < 1e-3);
        let hash = inference.embedder.hash();
        let saved = NormalBank::load(&path, hash, inference.embedder.path()).unwrap();
        assert_eq!(saved.len(), 24);
    }

    #[test]
    fn enroll_start_names_the_item_of_what_follows_and_keeps_what_was_collected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pump.bank.safetensors");
        let (mut inference, mut phase, taught) = armed(&path);
        let mut station = Station::default();
        let mut update = None;
        // A running machine takes no item ...
        let named = StationCommand::EnrollStart {
            item: Some("S1".into()),
        };
        let refused = inference.command(named, &mut phase, &mut station, &mut update);
        assert!(error(refused).contains("tap station"));
        assert!(station.enrolling.is_none());
        // ... a station does.
        inference.tap = true;
        let mut start = |item: Option<&str>, station: &mut Station| {
            let cmd = StationCommand::EnrollStart {
                item: item.map(str::to_string),
            };
            let reply = inference.command(cmd, &mut phase, station, &mut update);
            reply.expect("answered at once")
        };
        let r = start(Some("S1"), &mut station);
        assert_eq!(
            (&r["ok"], &r["collected"], &r["item"]),
            (&true.into(), &0.into(), &"S1".into())
        );
        for row in &taught[..3] {
            station.enrolling.as_mut().unwrap().push(row.clone());
        }
        // The next piece: what was collected stays, the item changes.
        let r = start(Some("S2"), &mut station);
        assert_eq!((&r["collected"], &r["item"]), (&3.into(), &"S2".into()));
        for row in &taught[3..6] {
            station.enrolling.as_mut().unwrap().push(row.clone());
        }
        let r = start(None, &mut station);
        assert_eq!(r["collected"], 6);
        assert!(r.get("item").is_none(), "{r}");
        for row in &taught[6..] {
            station.enrolling.as_mut().unwrap().push(row.clone());
        }
        let stop = StationCommand::EnrollStop;
        assert!(
            inference
                .command(stop, &mut phase, &mut station, &mut update)
                .is_none()
        );
        let done = inference.wait_update(update.take().unwrap(), &mut phase);
        assert_eq!(done["ok"], true, "{done}");
        // The saved bank says which rows are of which item.
        let saved =
            NormalBank::load(&path, inference.embedder.hash(), inference.embedder.path()).unwrap();
        let mut items: Vec<Option<&str>> = saved
            .notes()
            .iter()
            .flatten()
            .map(|n| n.item.as_deref())
            .collect();
        items.sort();
        let expected = [
            None,
            None,
            Some("S1"),
            Some("S1"),
            Some("S1"),
            Some("S2"),
            Some("S2"),
            Some("S2"),
        ];
        assert_eq!(items, expected);
    }

    #[test]
    fn a_failed_save_keeps_the_old_bank_in_use() {
        let dir = tempfile::tempdir().unwrap();
        // The bank's folder is a file: the save fails.
        std::fs::write(dir.path().join("not-a-dir"), b"x").unwrap();
        let path = dir.path().join("not-a-dir/pump.bank.safetensors");
        let (inference, mut phase, taught) = armed(&path);
        let mut station = Station {
            event_windows: taught,
            ..Station::default()
        };
        let mut update = None;
        let fa = StationCommand::FalseAlarm;
        assert!(
            inference
                .command(fa.clone(), &mut phase, &mut station, &mut update)
                .is_none()
        );
        let done = inference.wait_update(update.take().unwrap(), &mut phase);
        assert_eq!(done["ok"], false, "{done}");
        assert!(done["error"].as_str().unwrap().contains("bank not saved"));
        let Phase::Armed(det) = &phase else { panic!() };
        assert_eq!(det.bank().len(), 16);
        let empty = inference.command(fa, &mut phase, &mut station, &mut update);
        assert!(error(empty).contains("no event since"));
    }
}
