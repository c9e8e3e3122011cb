//! Shared helpers for the integration tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// The hark binary under test.
pub fn hark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hark"))
}

/// True when .ci/run asked that nothing be skipped.
fn required() -> bool {
    std::env::var_os("HARK_REQUIRE_ALL").is_some()
}

/// `../shared/data`, or `None` (with a message) when it is absent. Under .ci/run
/// (`HARK_REQUIRE_ALL=1`) absence is a failure, not a skip.
pub fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("fan").is_dir() {
        return Some(dir);
    }
    assert!(
        !required(),
        "../shared/data is missing but HARK_REQUIRE_ALL is set"
    );
    eprintln!("SKIP: ../shared/data not found beside the checkout");
    None
}

/// The path of a system program, or `None` (with a message) when it is not installed.
pub fn system_binary(name: &str) -> Option<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
        "/sbin",
        "/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    assert!(
        !required(),
        "{name} is not installed but HARK_REQUIRE_ALL is set"
    );
    eprintln!("SKIP: {name} is not installed (apt-get install {name})");
    None
}

/// A TCP port on loopback that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Daemon tests share the machine's two cores; running them one at a time keeps
/// their timing far from any limit.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything the process wrote to stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

/// A real mosquitto broker on a free loopback port.
pub fn mosquitto() -> Option<(Proc, u16)> {
    let bin = system_binary("mosquitto")?;
    let port = free_port();
    let child = Command::new(bin)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let proc = Proc(child);
    assert!(
        wait_for_port(port, Duration::from_secs(5)),
        "mosquitto listens on {port}"
    );
    Some((proc, port))
}

/// A mosquitto on `port` that keeps sessions across restarts (persistence in `dir`);
/// stop it with [`Proc::terminate`] so it saves them.
pub fn persistent_mosquitto(port: u16, dir: &Path) -> Option<Proc> {
    let bin = system_binary("mosquitto")?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let proc = Proc(child);
    assert!(
        wait_for_port(port, Duration::from_secs(5)),
        "mosquitto listens on {port}"
    );
    Some(proc)
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// Subscribes to `filter` and records every message.
pub struct Collector {
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    client: Client,
}

impl Collector {
    /// Connects (retrying until `timeout`) and subscribes with QoS 1.
    pub fn connect(port: u16, filter: &str, timeout: Duration) -> Collector {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        Collector::connect_with(MqttOptions::new(id, "127.0.0.1", port), filter, timeout)
    }

    /// Like [`Collector::connect`] with a persistent session (clean session off): the
    /// broker keeps the subscription and queues QoS 1 messages while it is away.
    pub fn connect_persistent(port: u16, filter: &str, timeout: Duration) -> Collector {
        let id = format!("test-{}-{}", std::process::id(), free_port());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(false);
        Collector::connect_with(opts, filter, timeout)
    }

    fn connect_with(mut opts: MqttOptions, filter: &str, timeout: Duration) -> Collector {
        let port = opts.broker_address().1;
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(opts, 100);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let (m2, subscribed) = (msgs.clone(), Arc::new(Mutex::new(false)));
        let s2 = subscribed.clone();
        std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => m2.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    }),
                    Ok(Event::Incoming(Packet::SubAck(_))) => *s2.lock().unwrap() = true,
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    // Reconnects as it polls; 100 ms apart while the broker is down.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let deadline = Instant::now() + timeout;
        while !*subscribed.lock().unwrap() {
            assert!(
                Instant::now() < deadline,
                "could not subscribe on port {port}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Collector { msgs, client }
    }

    /// Waits until a message satisfies `pred`; returns it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.msgs.lock().unwrap().iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Publishes a message (QoS 1, not retained).
    pub fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .unwrap();
    }

    /// A copy of everything received so far.
    pub fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// Concatenates mono clips of one rate with a short linear crossfade at each join (so
/// the joins are not clicks), writes 16-bit WAV; returns each clip's start in seconds
/// and the total length.
pub fn concat_wav(files: &[PathBuf], out: &Path) -> (Vec<f64>, f64) {
    let fade = 4000usize; // 0.25 s at 16 kHz
    let mut all: Vec<f32> = Vec::new();
    let mut starts = Vec::new();
    let mut rate = 0;
    for f in files {
        let clip = hark::wav::Clip::read(f).unwrap();
        rate = clip.sample_rate_hz;
        let x = clip.mono(Some(0));
        if all.is_empty() {
            starts.push(0.0);
            all.extend_from_slice(&x);
            continue;
        }
        let n = fade.min(x.len()).min(all.len());
        let base = all.len() - n;
        starts.push(base as f64 / rate as f64);
        for i in 0..n {
            let a = i as f32 / n as f32;
            all[base + i] = all[base + i] * (1.0 - a) + x[i] * a;
        }
        all.extend_from_slice(&x[n..]);
    }
    hark::wav::write_mono_i16(out, rate, &all).unwrap();
    (starts, all.len() as f64 / rate as f64)
}

/// Runs a prepared hark command and asserts it succeeded (showing its stderr if not).
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a prepared hark command and asserts it failed with exit status 2 (bad input);
/// returns its stderr.
pub fn run_fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{cmd:?}: {stderr}");
    stderr
}

/// A model shipped in models/.
pub fn shipped_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// `hark run --config CONFIG` with stderr captured (read it with [`Proc::stderr`]).
pub fn spawn_hark(config: &Path) -> Proc {
    Proc(
        hark()
            .args(["run", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Reads the evidence clip a payload names and checks it is the stream's own sound:
/// it must start within `slack` samples of second `starts_at_s` of `stream` (payload
/// times are rounded to the millisecond) and match it sample for sample from there.
/// Returns the clip's samples and the rate.
pub fn evidence_clip(
    payload: &serde_json::Value,
    stream: &Path,
    starts_at_s: f64,
    slack: usize,
) -> (Vec<f32>, f64) {
    let path = payload["clip"]
        .as_str()
        .unwrap_or_else(|| panic!("no clip: {payload}"));
    let got = hark::wav::Clip::read(Path::new(path))
        .unwrap_or_else(|e| panic!("evidence clip: {e}"))
        .mono(None);
    let stream = hark::wav::Clip::read(stream).unwrap();
    let rate = stream.sample_rate_hz as f64;
    let stream = stream.mono(None);
    let guess = (starts_at_s * rate) as usize;
    let probe = got.len().min(2000);
    let at = (guess.saturating_sub(slack)..guess + slack)
        .find(|&i| stream[i..i + probe] == got[..probe])
        .unwrap_or_else(|| panic!("the clip does not start at {starts_at_s} s: {payload}"));
    let n = got.len().min(stream.len() - at);
    assert_eq!(
        got[..n],
        stream[at..at + n],
        "the clip is the stream's sound"
    );
    (got, rate)
}

/// One JSON value per line of a command's output (`--json` modes).
pub fn json_rows(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Enrols the normal clips in `clips` with `model` into `dir/NAME.bank.safetensors`;
/// returns the bank's path.
pub fn enrol(dir: &Path, name: &str, clips: &Path, model: &Path) -> PathBuf {
    let bank = dir.join(format!("{name}.bank.safetensors"));
    run_ok(
        hark()
            .arg("enroll")
            .arg(clips)
            .arg("--model")
            .arg(model)
            .arg("--out")
            .arg(&bank),
    );
    bank
}

/// Writes `dir/hark.toml` with one source `name` scoring with `model` and `bank`, plus
/// the TOML lines in `extra`; returns its path (for `hark score --config`).
pub fn scoring_config(dir: &Path, name: &str, model: &Path, bank: &Path, extra: &str) -> PathBuf {
    let config = dir.join("hark.toml");
    let text = format!(
        "[[source]]\nname = \"{name}\"\nmodel = \"{}\"\nbank = \"{}\"\n{extra}",
        model.display(),
        bank.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Seconds of audio one window of the shipped default model spans.
pub fn shipped_window_s() -> f64 {
    let model = hark::model::Embedder::load(&shipped_model("default.safetensors")).unwrap();
    let f = model.meta().front;
    ((f.frames - 1) * f.hop + f.n_fft) as f64 / f64::from(f.sample_rate_hz)
}

/// The files of a folder, sorted by name.
pub fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
