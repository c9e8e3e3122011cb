//! The outage journal: every event and verdict is written here first and stays until
//! the broker has confirmed it, so a broker outage, a dropped connection or a power cut
//! loses none; what waited is delivered in order once the broker is back.
//!
//! One file, `state_dir/outbox.journal`, of framed records: a little-endian `u32`
//! length, a CRC-32 of the body, and the body (JSON `{"topic", "payload"}`). Appends
//! are fsynced one by one (alarms are rare; losing one to a power cut is not). A power
//! cut mid-append leaves a torn last record: opening the journal keeps every whole
//! record before it and cuts the file there. The file never grows past its cap: the
//! oldest records are dropped first, and counted.
//!
//! A storage failure (disk full, read-only directory) never stops detection: records
//! are then kept in memory within the same cap, and the error is reported in `health`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes before each record's body: length and CRC-32.
const FRAME: usize = 8;

/// One message waiting for the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Full topic.
    pub topic: String,
    /// The JSON payload as it would have been published.
    pub payload: String,
}

impl Entry {
    fn framed(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("strings always serialise");
        let mut out = Vec::with_capacity(FRAME + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The payload marked `"replayed": true` (a payload that is not a JSON object is
    /// passed on unchanged).
    pub fn replayed_payload(&self) -> String {
        match serde_json::from_str::<serde_json::Value>(&self.payload) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.insert("replayed".into(), true.into());
                serde_json::Value::Object(m).to_string()
            }
            _ => self.payload.clone(),
        }
    }
}

/// A message in the journal and its delivery so far.
#[derive(Debug)]
pub struct Pending {
    /// The message.
    pub entry: Entry,
    /// Bytes it takes in the file.
    size: u64,
    /// When it was last handed to the client, if ever.
    pub sent: Option<std::time::Instant>,
    /// False when it could not go out when it was made (broker away, or found in the
    /// file at start-up): it is then marked `"replayed": true` when it does.
    pub live: bool,
}

impl Pending {
    /// What to publish: the payload, marked replayed unless it goes out live and first.
    pub fn payload(&self) -> String {
        if self.live && self.sent.is_none() {
            self.entry.payload.clone()
        } else {
            self.entry.replayed_payload()
        }
    }

    /// True when `payload` on `topic` is this message coming back from the broker.
    pub fn is_echo(&self, topic: &str, payload: &[u8]) -> bool {
        self.entry.topic == topic
            && (self.entry.payload.as_bytes() == payload
                || self.entry.replayed_payload().as_bytes() == payload)
    }
}

/// The journal: the records in memory, mirrored to the file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    cap: u64,
    records: VecDeque<Pending>,
    bytes: u64,
    file: Option<File>,
    /// Records dropped because the cap was reached, oldest first.
    pub dropped: u64,
    /// The latest storage error, until a write succeeds again.
    pub error: Option<String>,
}

/// Parses whole records from the start of `data`; returns them and the length they
/// span (where a torn or corrupt tail begins).
pub fn parse(data: &[u8]) -> (Vec<Entry>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= FRAME {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(body) = data.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(body) else {
            break;
        };
        out.push(entry);
        at += FRAME + len;
    }
    (out, at)
}

impl Journal {
    /// Opens (or creates) the journal at `path`, recovering whole records from a torn
    /// file. Never fails: a journal that cannot be read or written works from memory
    /// and says why in [`Journal::error`].
    pub fn open(path: &Path, cap_bytes: u64) -> Journal {
        let mut j = Journal {
            path: path.to_path_buf(),
            cap: cap_bytes,
            records: VecDeque::new(),
            bytes: 0,
            file: None,
            dropped: 0,
            error: None,
        };
        match std::fs::read(path) {
            Ok(data) => {
                let (entries, good) = parse(&data);
                if good < data.len() {
                    tracing::warn!(
                        journal = %path.display(),
                        kept = entries.len(),
                        "torn or corrupt record at byte {good} of {}: cut there",
                        data.len()
                    );
                    if let Err(e) = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(good as u64).and_then(|_| f.sync_all()))
                    {
                        j.fail(&e);
                    }
                }
                for e in entries {
                    j.remember(e);
                }
                if !j.records.is_empty() {
                    tracing::info!(pending = j.records.len(), journal = %path.display(), "journal holds undelivered messages");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => j.fail(&e),
        }
        j
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The oldest waiting message.
    pub fn front(&self) -> Option<&Entry> {
        self.records.front().map(|p| &p.entry)
    }

    /// Every waiting message, oldest first.
    pub fn pending_mut(&mut self) -> impl Iterator<Item = &mut Pending> {
        self.records.iter_mut()
    }

    /// Removes the message that `payload` on `topic` echoes, if one waits. Call
    /// [`Journal::sync`] after a run of these.
    pub fn confirm(&mut self, topic: &str, payload: &[u8]) -> bool {
        match self.records.iter().position(|p| p.is_echo(topic, payload)) {
            Some(i) => {
                let p = self.records.remove(i).expect("index from position");
                self.bytes -= p.size;
                true
            }
            None => false,
        }
    }

    /// Adds a message at the end, dropping the oldest ones if the cap requires it.
    /// `live`: it can go out now (see [`Pending::live`]).
    pub fn push(&mut self, entry: Entry, live: bool) {
        let framed = entry.framed();
        let size = framed.len() as u64;
        if size > self.cap {
            self.dropped += 1;
            tracing::warn!(topic = %entry.topic, size, "message larger than the whole journal: dropped");
            return;
        }
        let mut shrunk = false;
        while self.bytes + size > self.cap {
            let p = self.records.pop_front().expect("bytes > 0 means records");
            self.bytes -= p.size;
            self.dropped += 1;
            shrunk = true;
        }
        if shrunk && self.dropped.is_power_of_two() {
            tracing::warn!(
                dropped = self.dropped,
                "journal full: oldest messages dropped"
            );
        }
        self.records.push_back(Pending {
            entry,
            size,
            sent: None,
            live,
        });
        self.bytes += size;
        if shrunk || self.file.is_none() {
            self.rewrite();
        } else if let Some(f) = self.file.as_mut() {
            let written = f.write_all(&framed).and_then(|_| f.sync_data());
            match written {
                Ok(()) => self.error = None,
                Err(e) => {
                    self.file = None;
                    self.fail(&e);
                }
            }
        }
    }

    /// Removes the oldest message once it has been handed to the broker. Call
    /// [`Journal::sync`] after a run of these.
    pub fn pop_front(&mut self) -> Option<Entry> {
        let p = self.records.pop_front()?;
        self.bytes -= p.size;
        Some(p.entry)
    }

    /// Makes the file match memory (after [`Journal::pop_front`]s).
    pub fn sync(&mut self) {
        self.rewrite();
    }

    fn remember(&mut self, e: Entry) {
        let size = e.framed().len() as u64;
        self.records.push_back(Pending {
            entry: e,
            size,
            sent: None,
            live: false,
        });
        self.bytes += size;
        while self.bytes > self.cap {
            let p = self.records.pop_front().expect("bytes > 0 means records");
            self.bytes -= p.size;
            self.dropped += 1;
        }
    }

    /// Writes every record afresh (atomically) and reopens the append handle.
    fn rewrite(&mut self) {
        let mut data = Vec::with_capacity(self.bytes as usize);
        for p in &self.records {
            data.extend_from_slice(&p.entry.framed());
        }
        if data.is_empty() && !self.path.exists() {
            // Nothing to keep and no file yet: create none (appends create it).
            self.file = None;
            self.error = None;
            return;
        }
        let result = crate::fsutil::write_atomic(&self.path, &data).map_err(|e| format!("{e:#}"));
        let reopened = result.and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))
        });
        match reopened {
            Ok(f) => {
                self.file = Some(f);
                self.error = None;
            }
            Err(e) => {
                self.file = None;
                if self.error.is_none() {
                    tracing::error!("journal kept in memory only: {e}");
                }
                self.error = Some(e);
            }
        }
    }

    fn fail(&mut self, e: &std::io::Error) {
        let msg = format!("{}: {e}", self.path.display());
        if self.error.is_none() {
            tracing::error!("journal kept in memory only: {msg}");
        }
        self.error = Some(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            topic: "hark/n/s/event".to_string(),
            payload: format!(r#"{{"id":"e{i}","type":"start"}}"#),
        }
    }

    #[test]
    fn survives_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outbox.journal");
        let mut j = Journal::open(&p, 1 << 20);
        for i in 0..5 {
            j.push(entry(i), true);
        }
        drop(j);
        let mut j = Journal::open(&p, 1 << 20);
        assert_eq!(j.len(), 5);
        assert_eq!(j.pop_front(), Some(entry(0)));
        j.sync();
        let j = Journal::open(&p, 1 << 20);
        assert_eq!(j.len(), 4);
        assert_eq!(j.front(), Some(&entry(1)));
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outbox.journal");
        let mut j = Journal::open(&p, 1 << 20);
        for i in 0..3 {
            j.push(entry(i), true);
        }
        drop(j);
        let whole = std::fs::read(&p).unwrap();
        // Every possible cut inside the last record keeps exactly the first two.
        let two = whole.len() - entry(2).framed().len();
        for cut in two..whole.len() {
            std::fs::write(&p, &whole[..cut]).unwrap();
            let j = Journal::open(&p, 1 << 20);
            assert_eq!(j.len(), 2, "cut at {cut}");
            assert_eq!(std::fs::metadata(&p).unwrap().len(), two as u64);
        }
        // A flipped byte in the middle record keeps the first only.
        let mut bad = whole.clone();
        bad[entry(0).framed().len() + FRAME + 3] ^= 0x40;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(Journal::open(&p, 1 << 20).len(), 1);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outbox.journal");
        let size = entry(0).framed().len() as u64;
        let mut j = Journal::open(&p, 3 * size);
        for i in 0..5 {
            j.push(entry(i), true);
        }
        assert_eq!(j.len(), 3);
        assert_eq!(j.dropped, 2);
        assert_eq!(j.front(), Some(&entry(2)));
        assert!(std::fs::metadata(&p).unwrap().len() <= 3 * size);
        assert_eq!(Journal::open(&p, 3 * size).len(), 3);
    }

    #[test]
    fn an_unwritable_directory_keeps_records_in_memory() {
        let p = Path::new("/nonexistent-hark-dir/outbox.journal");
        let mut j = Journal::open(p, 1 << 20);
        j.push(entry(0), true);
        assert_eq!(j.len(), 1);
        assert!(j.error.as_deref().unwrap().contains("nonexistent-hark-dir"));
    }

    #[test]
    fn an_echo_confirms_its_message_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("outbox.journal");
        let mut j = Journal::open(&p, 1 << 20);
        for i in 0..3 {
            j.push(entry(i), true);
        }
        let e1 = entry(1);
        assert!(!j.confirm("other/topic", e1.payload.as_bytes()));
        assert!(j.confirm(&e1.topic, e1.replayed_payload().as_bytes()));
        assert!(
            !j.confirm(&e1.topic, e1.payload.as_bytes()),
            "confirmed once"
        );
        j.sync();
        let j = Journal::open(&p, 1 << 20);
        let left: Vec<_> = j.records.iter().map(|p| p.entry.clone()).collect();
        assert_eq!(left, vec![entry(0), entry(2)]);
        assert!(
            j.records.iter().all(|p| !p.live),
            "found at start-up: replayed"
        );
    }

    #[test]
    fn replayed_payloads_are_marked() {
        let e = entry(7);
        let v: serde_json::Value = serde_json::from_str(&e.replayed_payload()).unwrap();
        assert_eq!(v["replayed"], true);
        assert_eq!(v["id"], "e7");
    }
}
