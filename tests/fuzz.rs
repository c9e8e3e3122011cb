//! Property-based fuzzing of the five parsers that read untrusted input: the config
//! file, WAV files, model files, bank files and MQTT station commands.
//!
//! Each property starts from a valid input made in code and mutates it with knowledge
//! of its structure (TOML keys and values, WAV header fields, safetensors header JSON,
//! metadata, tensor shapes, dtypes and data), or feeds plain arbitrary bytes. Every
//! case must end in `Ok` (whose value is then checked for sanity) or in an error whose
//! message is one non-empty line that names the file. A panic fails the case.
//!
//! `cargo test --test fuzz` runs a short smoke of each (what CI runs). The documented
//! full run, 10^5 cases per parser (timings in README.md, "Fuzzing"):
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release --test fuzz -- --test-threads 1 --nocapture
//! ```
//!
//! `PROPTEST_CASES` (and proptest's other `PROPTEST_*` variables) override the smoke
//! defaults set here.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use hark::bank::{Calibration, Metric, NormalBank, Origin, RowNote, Target};
use hark::config::Config;
use hark::model::{Embedder, ModelMeta};
use hark::spectrogram::FrontEndParams;
use hark::station::StationCommand;
use hark::wav::Clip;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// Shared
// ---------------------------------------------------------------------------------

/// Smoke-sized config unless `PROPTEST_CASES` is set: then the variable wins
/// (`ProptestConfig::with_cases` would silently override it). No regression file:
/// every failure found so far is a unit test next to the code it fixed.
fn config(smoke_cases: u32) -> ProptestConfig {
    let defaults = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        defaults.cases
    } else {
        smoke_cases
    };
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..defaults
    }
}

/// Counts the cases a property ran, how many were accepted, and the time from the
/// first case to the last; `zz_report` prints them (the numbers in README.md).
struct Tally {
    name: &'static str,
    start: OnceLock<Instant>,
    cases: AtomicU64,
    ok: AtomicU64,
    last_ns: AtomicU64,
}

impl Tally {
    const fn new(name: &'static str) -> Tally {
        Tally {
            name,
            start: OnceLock::new(),
            cases: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        }
    }

    fn count(&self, ok: bool) {
        let start = self.start.get_or_init(Instant::now);
        self.cases.fetch_add(1, Relaxed);
        if ok {
            self.ok.fetch_add(1, Relaxed);
        }
        self.last_ns
            .fetch_max(start.elapsed().as_nanos() as u64, Relaxed);
    }

    fn report(&self) {
        let secs = self.last_ns.load(Relaxed) as f64 * 1e-9;
        println!(
            "fuzz {}: {} cases ({} accepted) in {secs:.1} s",
            self.name,
            self.cases.load(Relaxed),
            self.ok.load(Relaxed)
        );
    }
}

/// An error message must be one line, start with `file: ` and say something after it.
fn clear_message(msg: &str, file: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
    let rest = msg.strip_prefix(&format!("{file}: "));
    prop_assert!(rest.is_some(), "error does not name {file}: {msg:?}");
    let rest = rest.unwrap_or_default().trim();
    prop_assert!(
        !rest.is_empty() && !rest.ends_with(':'),
        "error says nothing: {msg:?}"
    );
    Ok(())
}

/// Byte-level damage applied after any structured edit.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, Vec<u8>),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, m)| ByteEdit::Flip(i, m)),
        2 => (any::<Index>(), select(vec![0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'\n', b'0', b'9']))
            .prop_map(|(i, b)| ByteEdit::Set(i, b)),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(ByteEdit::Extend),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| ByteEdit::Insert(i, b)),
    ]
}

/// Applies `edit`; `within` limits positions to the first bytes (headers) when set.
fn apply_byte_edit(bytes: &mut Vec<u8>, edit: &ByteEdit, within: Option<usize>) {
    let span = within.map_or(bytes.len(), |w| w.min(bytes.len()));
    match edit {
        ByteEdit::Flip(i, m) if span > 0 => bytes[i.index(span)] ^= m,
        ByteEdit::Set(i, b) if span > 0 => bytes[i.index(span)] = *b,
        ByteEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        ByteEdit::Extend(b) => bytes.extend_from_slice(b),
        ByteEdit::Insert(i, b) => {
            let at = i.index(span + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------

const SHIPPED_CONFIG: &str = include_str!("../config/hark.toml");

const CONFIG_KEYS: &[&str] = &[
    "node",
    "state_dir",
    "log_level",
    "url",
    "prefix",
    "embedded_port",
    "client_id",
    "keep_alive_s",
    "reconnect_max_s",
    "health_interval_s",
    "state_interval_s",
    "event_update_s",
    "name",
    "device",
    "realtime",
    "mode",
    "model",
    "bank",
    "learn_seconds",
    "channel",
    "sample_rate_hz",
    "channels",
    "sample_format",
    "window_hop_frames",
    "raise_k",
    "raise_n",
    "clear_m",
    "threshold_scale",
    "ring_seconds",
    "tap_threshold_db",
    "tap_refractory_ms",
    "tap_pre_ms",
    "source",
    "mqtt",
    "mqtt.url",
    "\"node\"",
    "unknown_key",
    "Node",
];

/// Values that sit on or past the edges of what the keys accept, in TOML syntax.
fn toml_value() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        "nan",
        "+nan",
        "-nan",
        "inf",
        "-inf",
        "0",
        "-0",
        "-0.0",
        "0.0",
        "1",
        "-1",
        "2",
        "3",
        "4",
        "5",
        "64",
        "65",
        "1e308",
        "1e-320",
        "5e-324",
        "0.05",
        "0.1",
        "600",
        "600.0001",
        "80.5",
        "3.0",
        "10000.5",
        "4000",
        "3999",
        "384000",
        "384001",
        "65535",
        "65536",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "0x10",
        "0o7",
        "0b1",
        "1_000",
        "true",
        "false",
        "\"\"",
        "\" \"",
        "\"\\u0000\"",
        "\"a/b\"",
        "\"a#\"",
        "\"a+b\"",
        "\"file:\"",
        "\"file:x.wav\"",
        "\"file:/dev/null\"",
        "\"mqtt://\"",
        "\"mqtt://h\"",
        "\"mqtt://h:\"",
        "\"mqtt://h:99999\"",
        "\"mqtt://h:1/\"",
        "\"mqtt://:1\"",
        "\"tcp://[::1]:1883\"",
        "\"http://h\"",
        "\"tap\"",
        "\"continuous\"",
        "\"TAP\"",
        "\"i16\"",
        "\"f64\"",
        "\"i24\"",
        "\"INFO\"",
        "\"error\"",
        "\"trace\"",
        "\"x\\ny\"",
        "\"\\t\"",
        "[]",
        "[1, \"a\"]",
        "{}",
        "{ a = 1 }",
        "1979-05-27T07:32:00Z",
        "07:32:00",
        "\"\"\"multi\nline\"\"\"",
        "'lit'",
        "'''x'''",
        "\"\\ud800\"",
        "",
        "=",
        "\"unterminated",
        "\"\u{202e}rtl\"",
        "\"\u{fffd}\"",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        6 => fixed,
        2 => any::<i64>().prop_map(|v| v.to_string()),
        2 => any::<f64>().prop_filter("TOML spells these nan/inf", |v| v.is_finite())
            .prop_map(|v| format!("{v:e}")),
        2 => any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        1 => "\\PC{0,12}",
    ]
}

#[derive(Debug, Clone)]
enum ConfigEdit {
    Remove(Index),
    Duplicate(Index),
    Uncomment(Index),
    SetValue(Index, String),
    SetKey(Index, String),
    Insert(Index, String),
    Swap(Index, Index),
    Bytes(ByteEdit),
}

fn config_edit() -> impl Strategy<Value = ConfigEdit> {
    let key = prop_oneof![
        4 => select(CONFIG_KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ];
    let line = prop_oneof![
        select(vec![
            "[mqtt]",
            "[[source]]",
            "[[source]]\nname = \"pump\"",
            "[[source]]\nname = \"other\"\nmode = \"tap\"",
            "[source]",
            "[[mqtt]]",
            "[mqtt.tls]",
            "[mqtt]\nurl = \"mqtt://h\"",
            "node = \"x\"",
            "# comment",
            "",
            "[",
            "]]",
            "a.b.c = 1",
        ])
        .prop_map(str::to_string),
        (select(CONFIG_KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    prop_oneof![
        2 => any::<Index>().prop_map(ConfigEdit::Remove),
        1 => any::<Index>().prop_map(ConfigEdit::Duplicate),
        2 => any::<Index>().prop_map(ConfigEdit::Uncomment),
        6 => (any::<Index>(), toml_value()).prop_map(|(i, v)| ConfigEdit::SetValue(i, v)),
        1 => (any::<Index>(), key).prop_map(|(i, k)| ConfigEdit::SetKey(i, k)),
        2 => (any::<Index>(), line).prop_map(|(i, l)| ConfigEdit::Insert(i, l)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| ConfigEdit::Swap(a, b)),
        1 => byte_edit().prop_map(ConfigEdit::Bytes),
    ]
}

/// Lines of the form `key = value` (commented-out or not).
fn is_key_line(line: &str) -> bool {
    let l = line.trim_start_matches(['#', ' ']);
    l.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

fn apply_config_edits(edits: &[ConfigEdit]) -> String {
    let mut lines: Vec<String> = SHIPPED_CONFIG.lines().map(str::to_string).collect();
    let mut bytes_edits = Vec::new();
    for edit in edits {
        let keyed: Vec<usize> = (0..lines.len())
            .filter(|&i| is_key_line(&lines[i]))
            .collect();
        let pick_keyed = |i: &Index| (!keyed.is_empty()).then(|| keyed[i.index(keyed.len())]);
        match edit {
            ConfigEdit::Remove(i) => {
                if let Some(at) = pick_keyed(i) {
                    lines.remove(at);
                }
            }
            ConfigEdit::Duplicate(i) => {
                if let Some(at) = pick_keyed(i) {
                    let l = lines[at].clone();
                    lines.insert(at, l);
                }
            }
            ConfigEdit::Uncomment(i) => {
                let commented: Vec<usize> = (0..lines.len())
                    .filter(|&k| lines[k].starts_with('#') && is_key_line(&lines[k]))
                    .collect();
                if !commented.is_empty() {
                    let at = commented[i.index(commented.len())];
                    lines[at] = lines[at].trim_start_matches(['#', ' ']).to_string();
                }
            }
            ConfigEdit::SetValue(i, v) => {
                if let Some(at) = pick_keyed(i) {
                    let l = lines[at].trim_start_matches(['#', ' ']).to_string();
                    let key = l.split(" = ").next().unwrap_or_default();
                    lines[at] = format!("{key} = {v}");
                }
            }
            ConfigEdit::SetKey(i, k) => {
                if let Some(at) = pick_keyed(i) {
                    let l = lines[at].clone();
                    let value = l.split_once(" = ").map_or("", |(_, v)| v);
                    lines[at] = format!("{k} = {value}");
                }
            }
            ConfigEdit::Insert(i, l) => lines.insert(i.index(lines.len() + 1), l.clone()),
            ConfigEdit::Swap(a, b) => {
                let n = lines.len();
                if n > 0 {
                    lines.swap(a.index(n), b.index(n));
                }
            }
            ConfigEdit::Bytes(b) => bytes_edits.push(b),
        }
    }
    let mut bytes = lines.join("\n").into_bytes();
    for b in bytes_edits {
        apply_byte_edit(&mut bytes, b, None);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn config_text() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::collection::vec(config_edit(), 1..6).prop_map(|e| apply_config_edits(&e)),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// What a validated config promises the stages.
fn check_config(c: &Config) -> Result<(), TestCaseError> {
    let m = &c.mqtt;
    for v in [
        m.reconnect_max_s,
        m.health_interval_s,
        m.state_interval_s,
        m.event_update_s,
    ] {
        prop_assert!(v.is_finite() && v > 0.0, "mqtt interval {v}");
    }
    prop_assert!(!m.prefix.is_empty() && !m.prefix.contains(['#', '+']));
    let mut names = std::collections::HashSet::new();
    for s in &c.sources {
        prop_assert!(names.insert(&s.name), "duplicate source {}", s.name);
        prop_assert!(!s.name.is_empty() && !s.name.contains(['/', '#', '+', ' ']));
        prop_assert!(1 <= s.raise_k && s.raise_k <= s.raise_n && s.raise_n <= 64);
        prop_assert!(s.clear_m >= 1);
        prop_assert!(s.learn_seconds.is_finite() && s.learn_seconds > 0.0);
        prop_assert!(s.threshold_scale.is_finite() && s.threshold_scale > 0.0);
        prop_assert!((0.1..=600.0).contains(&s.ring_seconds));
        prop_assert!(s.channels != Some(0) && s.window_hop_frames != Some(0));
        prop_assert!(s.tap.threshold_db.is_finite() && s.tap.refractory_ms.is_finite());
        prop_assert!(s.tap.pre_ms.is_finite());
    }
    Ok(())
}

static CONFIG_TALLY: Tally = Tally::new("config");

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn config_parser_never_panics_and_explains(text in config_text()) {
        let result = Config::parse(&text, Path::new("fuzz.toml"));
        CONFIG_TALLY.count(result.is_ok());
        match result {
            Ok(c) => check_config(&c)?,
            Err(e) => clear_message(&e.to_string(), "fuzz.toml")?,
        }
    }
}

// ---------------------------------------------------------------------------------
// WAV
// ---------------------------------------------------------------------------------

/// A valid WAV made by hound: PCM 8/16/24/32-bit or float, 1–3 channels (hound writes
/// WAVE_FORMAT_EXTENSIBLE for more than 2 channels or more than 16 bits).
fn valid_wav(
    channels: u16,
    rate: u32,
    format: (hound::SampleFormat, u16),
    frames: usize,
) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: format.1,
        sample_format: format.0,
    };
    let mut cursor = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).expect("valid spec");
    for i in 0..frames * channels as usize {
        let x = ((i * 7919) % 2001) as f32 / 1000.0 - 1.0;
        match format {
            (hound::SampleFormat::Float, _) => w.write_sample(x),
            (_, bits) => {
                let max = ((1i64 << (bits - 1)) - 1) as f32;
                w.write_sample((x * max) as i32)
            }
        }
        .expect("in-memory write");
    }
    w.finalize().expect("in-memory write");
    cursor.into_inner()
}

fn wav_format() -> impl Strategy<Value = (hound::SampleFormat, u16)> {
    select(vec![
        (hound::SampleFormat::Int, 8),
        (hound::SampleFormat::Int, 16),
        (hound::SampleFormat::Int, 24),
        (hound::SampleFormat::Int, 32),
        (hound::SampleFormat::Float, 32),
    ])
}

#[derive(Debug, Clone, Copy)]
enum WavField {
    RiffLen,
    FmtLen,
    Tag,
    Channels,
    Rate,
    ByteRate,
    Align,
    Bits,
    CbSize,
    ValidBits,
    SubFormat,
    DataLen,
}

#[derive(Debug, Clone)]
enum WavEdit {
    /// Sets a header field; `consistent` then recomputes block align, byte rate and
    /// the chunk lengths from the others, so the edit gets past hound's own checks.
    Field(WavField, u32, bool),
    Bytes(ByteEdit),
    Header(ByteEdit),
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => select(vec![
            0u32, 1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 18, 20, 22, 24, 31, 32, 33, 40, 48, 63, 64,
            65, 127, 128, 255, 256, 4000, 16000, 48000, 0x7fff, 0xfffe, 0xffff, 0x1_0000,
            0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff,
        ]),
        1 => any::<u32>(),
    ]
}

fn wav_edit() -> impl Strategy<Value = WavEdit> {
    let field = select(vec![
        WavField::RiffLen,
        WavField::FmtLen,
        WavField::Tag,
        WavField::Channels,
        WavField::Rate,
        WavField::ByteRate,
        WavField::Align,
        WavField::Bits,
        WavField::CbSize,
        WavField::ValidBits,
        WavField::SubFormat,
        WavField::DataLen,
    ]);
    prop_oneof![
        6 => (field, interesting_u32(), any::<bool>()).prop_map(|(f, v, c)| WavEdit::Field(f, v, c)),
        2 => byte_edit().prop_map(WavEdit::Header),
        2 => byte_edit().prop_map(WavEdit::Bytes),
    ]
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Offset of the `data` chunk header (hound writes `fmt ` at 12, `data` after it).
fn data_chunk(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .skip(36)
        .position(|w| w == b"data")
        .map(|p| p + 36)
}

fn apply_wav_edits(mut b: Vec<u8>, edits: &[WavEdit]) -> Vec<u8> {
    // hound's layout: RIFF len @4, fmt len @16, fmt fields from 20; extensible adds
    // cbSize @36, valid bits @38, mask @40, GUID @44.
    for edit in edits {
        match edit {
            WavEdit::Field(field, v, consistent) => {
                let data = data_chunk(&b);
                match field {
                    WavField::RiffLen => put_u32(&mut b, 4, *v),
                    WavField::FmtLen => put_u32(&mut b, 16, *v),
                    WavField::Tag => put_u16(&mut b, 20, *v as u16),
                    WavField::Channels => put_u16(&mut b, 22, *v as u16),
                    WavField::Rate => put_u32(&mut b, 24, *v),
                    WavField::ByteRate => put_u32(&mut b, 28, *v),
                    WavField::Align => put_u16(&mut b, 32, *v as u16),
                    WavField::Bits => put_u16(&mut b, 34, *v as u16),
                    WavField::CbSize => put_u16(&mut b, 36, *v as u16),
                    WavField::ValidBits => put_u16(&mut b, 38, *v as u16),
                    WavField::SubFormat => put_u16(&mut b, 44, *v as u16),
                    WavField::DataLen => {
                        if let Some(d) = data {
                            put_u32(&mut b, d + 4, *v);
                        }
                    }
                }
                if *consistent {
                    let channels = get_u16(&b, 22) as u32;
                    let container = (get_u16(&b, 34) as u32).div_ceil(8);
                    let align = channels.wrapping_mul(container);
                    put_u16(&mut b, 32, align as u16);
                    let rate = b
                        .get(24..28)
                        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
                    put_u32(&mut b, 28, (align as u16 as u32).wrapping_mul(rate));
                    if let Some(d) = data {
                        let payload = b.len().saturating_sub(d + 8) as u32;
                        let align = align as u16 as u32;
                        let len = payload.checked_div(align).map_or(payload, |n| n * align);
                        put_u32(&mut b, d + 4, len);
                    }
                    let riff = b.len().saturating_sub(8) as u32;
                    put_u32(&mut b, 4, riff);
                }
            }
            WavEdit::Header(e) => apply_byte_edit(&mut b, e, Some(72)),
            WavEdit::Bytes(e) => apply_byte_edit(&mut b, e, None),
        }
    }
    b
}

fn wav_bytes() -> impl Strategy<Value = Vec<u8>> {
    let base = (
        1..=3u16,
        prop_oneof![select(vec![8000u32, 16000, 44100, 48000]), 1..=400_000u32],
        wav_format(),
        1..48usize,
    )
        .prop_map(|(c, r, f, n)| valid_wav(c, r, f, n));
    prop_oneof![
        10 => (base, prop::collection::vec(wav_edit(), 1..5))
            .prop_map(|(b, e)| apply_wav_edits(b, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..128),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|tail| {
            let mut b = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
            b.extend(tail);
            b
        }),
    ]
}

fn check_clip(c: &Clip) -> Result<(), TestCaseError> {
    prop_assert!(c.channels >= 1 && c.sample_rate_hz >= 1);
    prop_assert!(!c.samples.is_empty() && c.samples.len() % c.channels == 0);
    prop_assert!(
        c.samples.iter().all(|x| x.is_finite()),
        "non-finite sample accepted"
    );
    prop_assert_eq!(c.mono(None).len(), c.frames());
    prop_assert_eq!(c.mono(Some(c.channels - 1)).len(), c.frames());
    Ok(())
}

static WAV_TALLY: Tally = Tally::new("wav");

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn wav_reader_never_panics_and_explains(bytes in wav_bytes()) {
        let result = Clip::from_bytes(&bytes, Path::new("fuzz.wav"));
        WAV_TALLY.count(result.is_ok());
        match result {
            Ok(c) => check_clip(&c)?,
            Err(e) => clear_message(&e.to_string(), "fuzz.wav")?,
        }
    }
}

// ---------------------------------------------------------------------------------
// safetensors files (models and banks)
// ---------------------------------------------------------------------------------

/// A safetensors file taken apart: metadata, then tensors in file order. Rebuilding
/// recomputes the offsets, so edits here stay well-formed unless they mean not to.
#[derive(Debug, Clone)]
struct StFile {
    metadata: Option<BTreeMap<String, Value>>,
    tensors: Vec<StTensor>,
}

#[derive(Debug, Clone)]
struct StTensor {
    name: String,
    dtype: String,
    shape: Vec<Value>,
    data: Vec<u8>,
    /// Override of `data_offsets` (left as is when the edit did not touch them).
    offsets: Option<Value>,
}

impl StFile {
    fn parse(bytes: &[u8]) -> StFile {
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let header: serde_json::Map<String, Value> =
            serde_json::from_slice(&bytes[8..8 + n]).expect("valid header");
        let data = &bytes[8 + n..];
        let mut metadata = None;
        let mut tensors = Vec::new();
        for (name, v) in header {
            if name == "__metadata__" {
                metadata = serde_json::from_value(v).ok();
                continue;
            }
            let off = v["data_offsets"].as_array().expect("offsets");
            let (s, e) = (
                off[0].as_u64().expect("start") as usize,
                off[1].as_u64().expect("end") as usize,
            );
            tensors.push((
                s,
                StTensor {
                    name,
                    dtype: v["dtype"].as_str().expect("dtype").to_string(),
                    shape: v["shape"].as_array().expect("shape").clone(),
                    data: data[s..e].to_vec(),
                    offsets: None,
                },
            ));
        }
        tensors.sort_by_key(|(s, _)| *s);
        StFile {
            metadata,
            tensors: tensors.into_iter().map(|(_, t)| t).collect(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if let Some(m) = &self.metadata {
            header.insert("__metadata__".into(), json!(m));
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            let end = offset + t.data.len();
            header.insert(
                t.name.clone(),
                json!({
                    "dtype": t.dtype,
                    "shape": t.shape,
                    "data_offsets": t.offsets.clone().unwrap_or(json!([offset, end])),
                }),
            );
            offset = end;
        }
        let mut head = serde_json::to_vec(&Value::Object(header)).expect("json");
        while head.len() % 8 != 0 {
            head.push(b' ');
        }
        let mut out = (head.len() as u64).to_le_bytes().to_vec();
        out.extend(head);
        for t in &self.tensors {
            out.extend(&t.data);
        }
        out
    }
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Bytes per element of a safetensors dtype (0: unknown or sub-byte).
fn dtype_size(dtype: &str) -> usize {
    match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0" => 1,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" | "C64" => 8,
        _ => 0,
    }
}

/// f32 data re-encoded in `dtype` (value-preserving where the type can hold it).
fn recode(data: &[u8], from: &str, to: &str) -> Vec<u8> {
    let values: Vec<f32> = if from == "F32" {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        data.iter().map(|&b| b as f32 / 255.0).collect()
    };
    match to {
        "F32" => f32_bytes(values),
        "F64" => values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect(),
        "BF16" => values
            .iter()
            .flat_map(|&v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        "I64" | "U64" => values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        "I32" | "U32" => values
            .iter()
            .flat_map(|&v| (v as i32).to_le_bytes())
            .collect(),
        _ => {
            let size = dtype_size(to).max(1);
            (0..values.len() * size).map(|i| (i * 31) as u8).collect()
        }
    }
}

#[derive(Debug, Clone)]
enum StEdit {
    MetaRemove(Index),
    MetaSet(String, Value),
    MetaDrop,
    TensorRemove(Index),
    TensorDuplicate(Index),
    TensorRename(Index, String),
    /// New dtype; `true` re-encodes the data so offsets and sizes stay consistent.
    TensorDtype(Index, String, bool),
    /// New shape; `true` resizes the data to fit (when it is small enough).
    TensorShape(Index, Vec<u64>, bool),
    TensorOffsets(Index, Value),
    /// Writes one f32 value (NaN, infinities, huge) into a tensor's data.
    Poke(Index, Index, f32),
    Bytes(ByteEdit),
    Header(ByteEdit),
    HeaderLen(u64),
}

fn meta_value(keys_values: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop_oneof![
            select(keys_values).prop_map(str::to_string),
            select(vec![
                "", " ", "0", "-0", "1", "2", "-1", "4", "16", "64", "128", "512", "513", "4096",
                "4097", "65536", "NaN", "nan", "inf", "-inf", "1e39", "3.4e38", "1e-45", "0.5",
                "4294967296", "18446744073709551616", "lots", "x\ny", "1\n", "\u{0}",
                "continuous", "tap", "mel", "hark-cnn1d-v1", "hark-normal-bank",
            ])
            .prop_map(str::to_string),
            any::<u32>().prop_map(|v| v.to_string()),
            any::<f32>().prop_map(|v| v.to_string()),
            "\\PC{0,8}",
        ]
        .prop_map(Value::String),
        1 => select(vec![json!(1), json!(null), json!([]), json!({}), json!(true), json!(-1.5)]),
    ]
}

fn st_edit(
    meta_keys: &'static [&'static str],
    tensor_names: &'static [&'static str],
    values: &'static [&'static str],
) -> impl Strategy<Value = StEdit> {
    let key = prop_oneof![
        6 => select(meta_keys).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ];
    let name = prop_oneof![
        4 => select(tensor_names).prop_map(str::to_string),
        1 => select(vec!["", "__metadata__", "a\nb", " ", "conv1.weight "]).prop_map(str::to_string),
        1 => "\\PC{0,8}",
    ];
    let dtype = select(vec![
        "F32", "F16", "BF16", "F64", "I8", "U8", "I16", "U16", "I32", "U32", "I64", "U64", "BOOL",
        "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "C64", "f32", "X",
    ])
    .prop_map(str::to_string);
    let dim = prop_oneof![
        6 => select(vec![0u64, 1, 2, 3, 4, 8, 16, 48, 96, 128, 256, 512]),
        1 => select(vec![1u64 << 31, 1 << 32, 1 << 61, 1 << 62, u64::MAX]),
        1 => any::<u64>(),
    ];
    let offsets = prop_oneof![
        select(vec![
            json!([0, 0]),
            json!([0]),
            json!([1, 0]),
            json!("x"),
            json!([0, u64::MAX])
        ]),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| json!([a, b])),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| json!([a, b])),
    ];
    let poke = select(vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN_POSITIVE / 4.0,
        1e30,
        -0.0,
        0.0,
    ]);
    prop_oneof![
        2 => any::<Index>().prop_map(StEdit::MetaRemove),
        6 => (key, meta_value(values)).prop_map(|(k, v)| StEdit::MetaSet(k, v)),
        1 => Just(StEdit::MetaDrop),
        1 => any::<Index>().prop_map(StEdit::TensorRemove),
        1 => any::<Index>().prop_map(StEdit::TensorDuplicate),
        1 => (any::<Index>(), name).prop_map(|(i, n)| StEdit::TensorRename(i, n)),
        2 => (any::<Index>(), dtype, any::<bool>()).prop_map(|(i, d, r)| StEdit::TensorDtype(i, d, r)),
        3 => (any::<Index>(), prop::collection::vec(dim, 0..4), any::<bool>())
            .prop_map(|(i, s, r)| StEdit::TensorShape(i, s, r)),
        1 => (any::<Index>(), offsets).prop_map(|(i, o)| StEdit::TensorOffsets(i, o)),
        3 => (any::<Index>(), any::<Index>(), poke).prop_map(|(t, at, v)| StEdit::Poke(t, at, v)),
        2 => byte_edit().prop_map(StEdit::Bytes),
        2 => byte_edit().prop_map(StEdit::Header),
        1 => prop_oneof![select(vec![0u64, 1, 7, 8, 9, 100_000_001, 1 << 32, u64::MAX]), any::<u64>()]
            .prop_map(StEdit::HeaderLen),
    ]
}

/// Largest tensor an edit resizes data for; bigger shapes keep their old data (and so
/// fail the size check), as a hostile file would.
const MAX_RESIZE_BYTES: u64 = 4 << 20;

fn apply_st_edits(mut f: StFile, edits: &[StEdit]) -> Vec<u8> {
    let mut raw = Vec::new();
    for edit in edits {
        let nt = f.tensors.len();
        let pick = |i: &Index| (nt > 0).then(|| i.index(nt));
        match edit {
            StEdit::MetaRemove(i) => {
                if let Some(m) = &mut f.metadata
                    && !m.is_empty()
                {
                    let key = m.keys().nth(i.index(m.len())).cloned().unwrap_or_default();
                    m.remove(&key);
                }
            }
            StEdit::MetaSet(k, v) => {
                f.metadata
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k.clone(), v.clone());
            }
            StEdit::MetaDrop => f.metadata = None,
            StEdit::TensorRemove(i) => {
                if let Some(t) = pick(i) {
                    f.tensors.remove(t);
                }
            }
            StEdit::TensorDuplicate(i) => {
                if let Some(t) = pick(i) {
                    let mut copy = f.tensors[t].clone();
                    copy.name.push_str(".copy");
                    f.tensors.push(copy);
                }
            }
            StEdit::TensorRename(i, n) => {
                if let Some(t) = pick(i) {
                    f.tensors[t].name = n.clone();
                }
            }
            StEdit::TensorDtype(i, d, recode_data) => {
                if let Some(t) = pick(i) {
                    let t = &mut f.tensors[t];
                    if *recode_data {
                        t.data = recode(&t.data, &t.dtype, d);
                    }
                    t.dtype = d.clone();
                }
            }
            StEdit::TensorShape(i, shape, resize) => {
                if let Some(t) = pick(i) {
                    let t = &mut f.tensors[t];
                    t.shape = shape.iter().map(|&d| json!(d)).collect();
                    let bytes = shape
                        .iter()
                        .try_fold(dtype_size(&t.dtype) as u64, |a, &d| a.checked_mul(d));
                    if *resize && let Some(n) = bytes.filter(|&n| n <= MAX_RESIZE_BYTES) {
                        let old = std::mem::take(&mut t.data);
                        t.data = (0..n as usize)
                            .map(|k| old.get(k % old.len().max(1)).copied().unwrap_or(0))
                            .collect();
                    }
                }
            }
            StEdit::TensorOffsets(i, o) => {
                if let Some(t) = pick(i) {
                    f.tensors[t].offsets = Some(o.clone());
                }
            }
            StEdit::Poke(i, at, v) => {
                if let Some(t) = pick(i) {
                    let data = &mut f.tensors[t].data;
                    if data.len() >= 4 {
                        let k = at.index(data.len() / 4) * 4;
                        data[k..k + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            StEdit::Bytes(_) | StEdit::Header(_) | StEdit::HeaderLen(_) => raw.push(edit),
        }
    }
    let mut bytes = f.to_bytes();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    for edit in raw {
        match edit {
            StEdit::Bytes(e) => apply_byte_edit(&mut bytes, e, None),
            StEdit::Header(e) => apply_byte_edit(&mut bytes, e, Some(header_end)),
            StEdit::HeaderLen(n) if bytes.len() >= 8 => {
                bytes[..8].copy_from_slice(&n.to_le_bytes())
            }
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------

/// A small but valid model geometry (fewer mels and a shorter window than the
/// shipped one, so a case costs well under a millisecond).
fn fuzz_meta(n_mels: usize, frames: usize, embedding_dim: usize) -> ModelMeta {
    let mut meta = ModelMeta::default_continuous("fuzz");
    meta.front = FrontEndParams {
        n_mels,
        frames,
        window_hop_frames: frames.min(FrontEndParams::DEFAULT.window_hop_frames),
        ..FrontEndParams::DEFAULT
    };
    meta.embedding_dim = embedding_dim;
    meta
}

/// A model file as `init_fixed_seed` writes it (through `save_tensors`).
fn model_file(meta: &ModelMeta, seed: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.safetensors");
    hark::model::init_fixed_seed(meta, seed, &path).expect("save model");
    std::fs::read(&path).expect("read model")
}

fn base_model() -> &'static StFile {
    static BASE: OnceLock<StFile> = OnceLock::new();
    BASE.get_or_init(|| StFile::parse(&model_file(&fuzz_meta(8, 16, 16), 7)))
}

const MODEL_KEYS: &[&str] = &[
    "format_version",
    "arch",
    "sample_rate_hz",
    "n_fft",
    "hop",
    "n_mels",
    "scale",
    "fmin_hz",
    "fmax_hz",
    "frames",
    "window_hop_frames",
    "embedding_dim",
    "input_offset_db",
    "input_scale_db",
    "mode",
    "origin",
];

const MODEL_TENSORS: &[&str] = &[
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "fc.weight",
    "fc.bias",
];

const MODEL_VALUES: &[&str] = &[
    "1", "16000", "1024", "512", "8", "50", "8000", "16", "-60", "20",
];

/// Builds a consistent model of another geometry (metadata and weights agree), so
/// the network itself runs on odd sizes.
fn model_geometry() -> impl Strategy<Value = StFile> {
    (
        prop_oneof![select(vec![1usize, 2, 3]), 1..=64usize],
        prop_oneof![select(vec![4usize, 5, 6, 7, 8]), 4..=96usize],
        prop_oneof![select(vec![0usize, 1, 2, 3]), 0..=64usize],
        any::<u64>(),
    )
        .prop_map(|(m, f, e, seed)| {
            let meta = fuzz_meta(m, f, e);
            let tensors = hark::model::fixed_seed_tensors(&meta, seed);
            StFile {
                metadata: Some(
                    meta.to_map()
                        .into_iter()
                        .map(|(k, v)| (k, json!(v)))
                        .collect(),
                ),
                tensors: tensors
                    .into_iter()
                    .map(|(name, shape, values)| StTensor {
                        name,
                        dtype: "F32".into(),
                        shape: shape.iter().map(|&d| json!(d)).collect(),
                        data: f32_bytes(values),
                        offsets: None,
                    })
                    .collect(),
            }
        })
}

fn model_bytes() -> impl Strategy<Value = Vec<u8>> {
    let edits = || prop::collection::vec(st_edit(MODEL_KEYS, MODEL_TENSORS, MODEL_VALUES), 1..5);
    prop_oneof![
        12 => edits().prop_map(|e| apply_st_edits(base_model().clone(), &e)),
        3 => (model_geometry(), prop::collection::vec(st_edit(MODEL_KEYS, MODEL_TENSORS, MODEL_VALUES), 0..2))
            .prop_map(|(f, e)| apply_st_edits(f, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..128),
        1 => (any::<u64>(), "\\PC{0,40}").prop_map(|(n, s)| {
            let mut b = (n % 64).to_le_bytes().to_vec();
            b.extend(s.bytes());
            b
        }),
    ]
}

fn check_embedder(e: &Embedder) -> Result<(), TestCaseError> {
    let dim = e.meta().embedding_dim;
    prop_assert!(dim >= 1, "embedding_dim 0 accepted");
    let window: Vec<f32> = (0..e.window_len())
        .map(|i| -60.0 + (i % 17) as f32)
        .collect();
    let out = e.embed(&[&window]);
    prop_assert!(
        out.is_ok(),
        "a loaded model fails to embed: {:?}",
        out.err()
    );
    let out = out.unwrap_or_default();
    prop_assert_eq!(out.len(), 1);
    prop_assert_eq!(out[0].len(), dim);
    prop_assert!(
        out[0].iter().all(|x| x.is_finite()),
        "a loaded model embeds to NaN or infinity"
    );
    Ok(())
}

static MODEL_TALLY: Tally = Tally::new("model");

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn model_loader_never_panics_and_explains(bytes in model_bytes()) {
        let result = Embedder::from_bytes(bytes, Path::new("fuzz.safetensors"));
        MODEL_TALLY.count(result.is_ok());
        match result {
            Ok(e) => check_embedder(&e)?,
            Err(e) => clear_message(&e.to_string(), "fuzz.safetensors")?,
        }
    }
}

// ---------------------------------------------------------------------------------
// Bank
// ---------------------------------------------------------------------------------

const BANK_HASH: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = hark::model::SplitMix64(seed);
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn calibration() -> Calibration {
    Calibration {
        threshold: 0.2,
        score_mean: 0.05,
        score_std: 0.02,
        score_max: 0.11,
        target_far: 0.01,
        margin: 2.0,
    }
}

/// A bank file as `NormalBank::save` writes it.
fn bank_file(rows: &[Vec<f32>]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("b.bank.safetensors");
    // Every row but the last has a note (profile, clip, time, and for one an item), so
    // the fuzzer edits the `profiles` and `origins` tensors and the `clips` and
    // `items` lists as well.
    let mut bank = NormalBank::from_parts(&rows[..0], calibration(), BANK_HASH);
    for (i, row) in rows.iter().enumerate() {
        let note = (i + 1 < rows.len()).then(|| RowNote {
            profile: vec![-40.0 - i as f32; 3],
            clip: format!("clip{}.wav", i % 2),
            t: i as f32 * 0.5,
            item: (i == 0).then(|| "piece 1".to_string()),
        });
        bank.push(row, note);
    }
    bank.save(&path).expect("save bank");
    std::fs::read(&path).expect("read bank")
}

fn base_bank() -> &'static StFile {
    static BASE: OnceLock<StFile> = OnceLock::new();
    BASE.get_or_init(|| StFile::parse(&bank_file(&unit_rows(5, 8, 1))))
}

/// A standardised bank (`metric`, `center`, `scale`), as `NormalBank::build` writes
/// one for a model with the band profile.
fn standardised_bank() -> &'static StFile {
    static BASE: OnceLock<StFile> = OnceLock::new();
    BASE.get_or_init(|| {
        let rows: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                (0..8)
                    .map(|j| ((i * 8 + j) as f32 * 0.7).sin() * 10.0)
                    .collect()
            })
            .collect();
        let origins: Vec<Origin> = (0..6)
            .map(|i| Origin {
                segment: i,
                index: 0,
            })
            .collect();
        let target = Target {
            metric: Metric::Standardised { embedding_dim: 4 },
            ..Target::continuous()
        };
        let bank = NormalBank::build(&rows, &origins, &[], 0, 100, target, BANK_HASH)
            .expect("build standardised bank");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.bank.safetensors");
        bank.save(&path).expect("save bank");
        StFile::parse(&std::fs::read(&path).expect("read bank"))
    })
}

const BANK_KEYS: &[&str] = &[
    "metric",
    "clips",
    "items",
    "format_version",
    "kind",
    "model_sha256",
    "threshold",
    "score_mean",
    "score_std",
    "score_max",
    "target_far",
    "margin",
    "n_windows",
];

const BANK_VALUES: &[&str] = &[
    BANK_HASH,
    "standardised",
    "cosine",
    "1",
    "0.2",
    "0.01",
    "2",
    "-0.5",
    "5",
    "[]",
    "[\"a.wav\"]",
    "[1]",
    "[null, \"a\", null]",
];

/// Consistent banks of other sizes (shape and data agree).
fn bank_geometry() -> impl Strategy<Value = StFile> {
    (0..=12usize, 0..=40usize, any::<u64>()).prop_map(|(n, dim, seed)| {
        let mut f = base_bank().clone();
        // Notes belong to the base bank's 5 rows: another size keeps its embeddings
        // only (a bank without notes), otherwise every such case would be refused.
        if n != 5 {
            f.tensors.retain(|t| t.name == "embeddings");
        }
        let rows = unit_rows(n, dim, seed);
        let t = &mut f.tensors[0];
        t.shape = vec![json!(n), json!(dim)];
        t.data = f32_bytes(rows.into_iter().flatten());
        f
    })
}

fn bank_bytes() -> impl Strategy<Value = Vec<u8>> {
    let edit = || {
        st_edit(
            BANK_KEYS,
            &["embeddings", "origins", "profiles", "center", "scale"],
            BANK_VALUES,
        )
    };
    prop_oneof![
        12 => prop::collection::vec(edit(), 1..5).prop_map(|e| apply_st_edits(base_bank().clone(), &e)),
        6 => prop::collection::vec(edit(), 1..5)
            .prop_map(|e| apply_st_edits(standardised_bank().clone(), &e)),
        3 => (bank_geometry(), prop::collection::vec(edit(), 0..2))
            .prop_map(|(f, e)| apply_st_edits(f, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ]
}

fn check_bank(b: &NormalBank) -> Result<(), TestCaseError> {
    prop_assert!(b.dim() >= 1 && !b.is_empty());
    prop_assert_eq!(b.rows().count(), b.len());
    prop_assert!(b.rows().flatten().all(|x| x.is_finite()));
    let c = &b.calibration;
    for v in [
        c.threshold,
        c.score_mean,
        c.score_std,
        c.score_max,
        c.target_far,
        c.margin,
    ] {
        prop_assert!(v.is_finite(), "non-finite calibration accepted");
    }
    prop_assert_eq!(b.model_hash.as_str(), BANK_HASH);
    prop_assert_eq!(b.notes().len(), b.len());
    for note in b.notes().iter().flatten() {
        prop_assert!(note.t.is_finite() && note.profile.iter().all(|x| x.is_finite()));
    }
    let query = b.rows().next().unwrap_or_default();
    let (score, at) = b.nearest(&query);
    prop_assert!(score.is_finite() && at < b.len());
    Ok(())
}

static BANK_TALLY: Tally = Tally::new("bank");

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn bank_loader_never_panics_and_explains(bytes in bank_bytes()) {
        let result = NormalBank::from_bytes(
            &bytes,
            Path::new("fuzz.bank.safetensors"),
            BANK_HASH,
            Path::new("model.safetensors"),
        );
        BANK_TALLY.count(result.is_ok());
        match result {
            Ok(b) => check_bank(&b)?,
            Err(e) => clear_message(&e.to_string(), "fuzz.bank.safetensors")?,
        }
    }
}

// ---------------------------------------------------------------------------------
// Station commands
// ---------------------------------------------------------------------------------

const COMMAND_WORDS: &[&str] = &[
    "enroll_start",
    "enroll_stop",
    "learn_start",
    "learn_stop",
    "false_alarm",
    "mute",
    "mute",
    "ENROLL_START",
    " enroll_start",
    "enroll_start\n",
    "enroll_start\0",
    "enroll",
    "",
    "cmd",
    "\u{202e}false_alarm",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<u64>().prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| json!(v)),
        select(COMMAND_WORDS).prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["cmd", "Cmd", "cmd ", "", "command", "\u{0}", "cmd\n", "minutes", "minutes", "item", "item"]).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly `{"cmd": ...}`-shaped objects, some with more keys.
fn command_object() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            4 => select(COMMAND_WORDS).prop_map(|s| json!(s)),
            1 => json_value(),
        ],
        prop::collection::btree_map(json_key(), json_value(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(cmd, extra, with_cmd)| {
            let mut m: serde_json::Map<String, Value> = extra.into_iter().collect();
            if with_cmd {
                m.insert("cmd".into(), cmd);
            }
            Value::Object(m)
        })
}

/// What `StationCommand::parse` must return for a well-formed JSON value.
fn expected_command(v: &Value) -> Option<StationCommand> {
    let obj = v.as_object()?;
    let cmd = obj.get("cmd")?.as_str()?;
    if cmd == "mute" {
        let minutes = obj.get("minutes")?.as_f64()?;
        let only_known = obj.keys().all(|k| k == "cmd" || k == "minutes");
        return (only_known && (0.0..=hark::station::MAX_MUTE_MINUTES).contains(&minutes))
            .then_some(StationCommand::Mute { minutes });
    }
    if matches!(cmd, "enroll_start" | "learn_start") {
        let only_known = obj.keys().all(|k| k == "cmd" || k == "item");
        let item = match obj.get("item") {
            None => None,
            Some(Value::String(s))
                if (1..=hark::station::MAX_ITEM_CHARS).contains(&s.chars().count())
                    && !s.chars().any(char::is_control) =>
            {
                Some(s.clone())
            }
            Some(_) => return None,
        };
        return only_known.then_some(StationCommand::EnrollStart { item });
    }
    if obj.len() != 1 {
        return None;
    }
    match cmd {
        "enroll_stop" | "learn_stop" => Some(StationCommand::EnrollStop),
        "false_alarm" => Some(StationCommand::FalseAlarm),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Payload {
    /// Well-formed JSON: the result is known.
    Json(Value),
    /// Anything else.
    Raw(Vec<u8>),
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        6 => command_object().prop_map(Payload::Json),
        2 => json_value().prop_map(Payload::Json),
        3 => (command_object(), prop::collection::vec(byte_edit(), 1..3)).prop_map(|(v, edits)| {
            let mut b = v.to_string().into_bytes();
            for e in &edits {
                apply_byte_edit(&mut b, e, None);
            }
            Payload::Raw(b)
        }),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Payload::Raw),
        1 => (1..400usize, select(vec!["[", "{\"cmd\":", "{\"a\":[", "\""])).prop_map(|(n, open)| {
            Payload::Raw(open.repeat(n).into_bytes())
        }),
    ]
}

/// Longest error a command may answer with (it is published back on `cmd/result`).
const MAX_COMMAND_ERROR: usize = 200;

static STATION_TALLY: Tally = Tally::new("station");

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn station_command_parser_never_panics_and_explains(p in payload()) {
        let bytes = match &p {
            Payload::Json(v) => v.to_string().into_bytes(),
            Payload::Raw(b) => b.clone(),
        };
        let result = StationCommand::parse(&bytes);
        STATION_TALLY.count(result.is_ok());
        if let Payload::Json(v) = &p {
            prop_assert_eq!(result.clone().ok(), expected_command(v), "payload {}", v);
        }
        if let Err(e) = result {
            prop_assert!(!e.trim().is_empty(), "empty error");
            prop_assert!(!e.contains(['\n', '\r']), "multi-line error: {:?}", e);
            prop_assert!(e.chars().count() <= MAX_COMMAND_ERROR, "{} chars: {:?}", e.chars().count(), e);
        }
    }
}

// ---------------------------------------------------------------------------------
// Sanity: the unmutated inputs parse, through the path entry points too
// ---------------------------------------------------------------------------------

#[test]
fn valid_inputs_parse() {
    let dir = tempfile::tempdir().unwrap();

    let cfg = Config::parse(SHIPPED_CONFIG, Path::new("hark.toml")).unwrap();
    assert_eq!(cfg.sources.len(), 1);
    let cfg_path = dir.path().join("hark.toml");
    std::fs::write(&cfg_path, SHIPPED_CONFIG).unwrap();
    Config::load(&cfg_path).unwrap();

    for format in [
        (hound::SampleFormat::Int, 8),
        (hound::SampleFormat::Int, 16),
        (hound::SampleFormat::Int, 24),
        (hound::SampleFormat::Int, 32),
        (hound::SampleFormat::Float, 32),
    ] {
        for channels in 1..=3 {
            let bytes = valid_wav(channels, 16000, format, 10);
            let clip = Clip::from_bytes(&bytes, Path::new("ok.wav")).unwrap();
            assert_eq!((clip.channels, clip.frames()), (channels as usize, 10));
            let path = dir.path().join("ok.wav");
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(Clip::read(&path).unwrap().samples, clip.samples);
        }
    }

    let model = apply_st_edits(base_model().clone(), &[]);
    let e = Embedder::from_bytes(model.clone(), Path::new("ok.safetensors")).unwrap();
    assert_eq!(e.meta(), &fuzz_meta(8, 16, 16));
    let path = dir.path().join("ok.safetensors");
    std::fs::write(&path, &model).unwrap();
    assert_eq!(Embedder::load(&path).unwrap().hash(), e.hash());

    let bank = apply_st_edits(base_bank().clone(), &[]);
    let b = NormalBank::from_bytes(&bank, Path::new("b"), BANK_HASH, Path::new("m")).unwrap();
    assert_eq!((b.len(), b.dim()), (5, 8));
    assert_eq!(b.calibration, calibration());
    let path = dir.path().join("ok.bank.safetensors");
    std::fs::write(&path, &bank).unwrap();
    NormalBank::load(&path, BANK_HASH, Path::new("m")).unwrap();

    for cmd in [
        "enroll_start",
        "enroll_stop",
        "learn_start",
        "learn_stop",
        "false_alarm",
    ] {
        StationCommand::parse(json!({ "cmd": cmd }).to_string().as_bytes()).unwrap();
    }
}

/// Errors from the path entry points name the file (the properties use the bytes ones).
#[test]
fn path_loaders_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"RIFF\0\0\0\0junk").unwrap();
    let name = junk.display().to_string();
    let messages = [
        Config::load(&junk).unwrap_err().to_string(),
        Clip::read(&junk).unwrap_err().to_string(),
        Embedder::load(&junk).unwrap_err().to_string(),
        NormalBank::load(&junk, BANK_HASH, Path::new("m"))
            .unwrap_err()
            .to_string(),
    ];
    for m in messages {
        clear_message(&m, &name).unwrap();
    }
}

/// Prints the tallies; named to sort last, so `--test-threads 1` runs it after the
/// properties.
#[test]
fn zz_report() {
    for t in [
        &CONFIG_TALLY,
        &WAV_TALLY,
        &MODEL_TALLY,
        &BANK_TALLY,
        &STATION_TALLY,
    ] {
        t.report();
    }
}
