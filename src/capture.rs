//! Stage 1, capture: one input per source, feeding that source's SPSC ring.
//!
//! A cpal device gets a stream whose data callback runs on cpal's real-time thread and
//! never allocates, locks, logs or blocks: it converts to f32, picks or mixes channels
//! into a scratch buffer allocated beforehand, pushes into the ring and counts what did
//! not fit. A `file:` device is replayed from disk, paced in real time or as fast as the
//! ring drains.
//!
//! Each source has a supervisor thread that owns its input. When the input fails (cpal's
//! error callback fires, or a file cannot be read on), the supervisor marks the source
//! unhealthy (`capture_ok = false`, which the alarm stage turns into state `fault`),
//! closes the stream, takes the ring's producer back, and reopens the device by the same
//! id, with the same rate, channels and format, after a capped exponential backoff; a
//! file resumes at the frame where it failed. The rest of the pipeline never notices
//! beyond a gap in the audio. Dropping the [`Capture`] stops the supervisor, which drops
//! the ring's producer: that is how the dsp stage learns the input has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{SampleFormat, SizedSample};
use crossbeam_channel::{Receiver, Sender, bounded};
use ringbuf::HeapProd;
use ringbuf::traits::Producer;

use crate::config::{Device, SourceConfig};
use crate::health::SourceHealth;
use crate::retry::{backoff, sleep_unless};
use crate::wav::{WavStream, mix_into};

/// Frames converted per step in the callback; a larger callback is done in steps.
const SCRATCH_FRAMES: usize = 4096;
/// Longest wait for an input to open at start.
const FIRST_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts to reopen a failed input.
const REOPEN_MAX_S: f64 = 30.0;
/// A stream that ran this long before failing starts its backoff afresh.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often the supervisor looks at a running cpal stream.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// A running, supervised input. Dropping it stops the input and joins its supervisor.
#[derive(Debug)]
pub struct Capture {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Capture {
    /// Set when the capture is told to stop; the dsp stage drains and ends on it even
    /// if a device open hangs and the ring's producer is never given back.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(t) = self.thread.take() else { return };
        // A device open can block in the kernel (a FIFO without a writer, a wedged USB
        // device): wait a while, then leave that thread behind rather than hang.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !t.is_finished() {
            tracing::warn!("capture did not stop within 3 s (device open blocked?); leaving it");
        } else if t.join().is_err() {
            tracing::error!("capture thread panicked");
        }
    }
}

/// The rate a source will deliver, found before the ring and front end are built.
#[derive(Debug)]
pub enum Input {
    /// A cpal device with the stream configuration chosen for it.
    Cpal {
        /// The device.
        device: cpal::Device,
        /// Rate, channels, buffer size.
        config: cpal::StreamConfig,
        /// The device's native sample format.
        format: SampleFormat,
    },
    /// A WAV file, read as it plays.
    File {
        /// The audio.
        stream: WavStream,
        /// Real-time pacing, at this many times real time; `None`: as fast as the
        /// pipeline takes it.
        pace: Option<f64>,
    },
}

impl Input {
    /// Opens what the source names: resolves the device or reads the file. Errors name
    /// the source and the device.
    pub fn open(source: &SourceConfig) -> anyhow::Result<Input> {
        match &source.device {
            Device::File {
                path,
                realtime,
                speed,
            } => {
                let stream = WavStream::open(path)?;
                if let Some(c) = source.channel
                    && c >= stream.channels
                {
                    anyhow::bail!(
                        "source {:?}: channel = {c}, but {} has {} channel(s)",
                        source.name,
                        path.display(),
                        stream.channels
                    );
                }
                Ok(Input::File {
                    stream,
                    pace: realtime.then_some(*speed),
                })
            }
            Device::Cpal(spec) => {
                let device = crate::devices::find(spec)
                    .with_context(|| format!("source {:?}: device = {spec:?}", source.name))?;
                let request = crate::devices::Request {
                    rate_hz: source.sample_rate_hz,
                    channels: source.channels,
                    format: source.sample_format,
                };
                let (config, format) = crate::devices::input_config(&device, request)
                    .with_context(|| format!("source {:?}: device = {spec:?}", source.name))?;
                if let Some(c) = source.channel
                    && c >= config.channels as usize
                {
                    anyhow::bail!(
                        "source {:?}: channel = {c}, but device {spec:?} has {} channel(s)",
                        source.name,
                        config.channels
                    );
                }
                Ok(Input::Cpal {
                    device,
                    config,
                    format,
                })
            }
        }
    }

    /// Samples per second per channel this input delivers.
    pub fn sample_rate_hz(&self) -> u32 {
        match self {
            Input::Cpal { config, .. } => config.sample_rate,
            Input::File { stream, .. } => stream.sample_rate_hz,
        }
    }

    /// True when the input may be paced by the pipeline (nothing is lost by waiting).
    pub fn lossless(&self) -> bool {
        matches!(self, Input::File { pace: None, .. })
    }

    /// Starts delivering mono samples into `producer` and supervises the input from a
    /// thread of its own. Returns once the input runs; a device that cannot be started
    /// now is an error (a device that fails later is reopened instead).
    pub fn start(
        self,
        source: &SourceConfig,
        producer: HeapProd<f32>,
        health: Arc<SourceHealth>,
    ) -> anyhow::Result<Capture> {
        health
            .sample_rate_hz
            .store(self.sample_rate_hz(), Ordering::Relaxed);
        // Healthy until proven otherwise: the alarm stage must not read the initial
        // `false` of a stream that is only starting as a fault.
        health.capture_ok.store(true, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let supervisor = Supervisor {
            source: source.clone(),
            health,
            stop: stop.clone(),
            producer: Some(producer),
            position: 0,
        };
        let (ready_tx, ready_rx) = bounded(1);
        // The cpal stream is made, watched and dropped on this thread alone.
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || supervisor.run(self, ready_tx))?;
        let capture = Capture {
            thread: Some(thread),
            stop,
        };
        // An open can block in the kernel (a wedged device, a FIFO nobody writes):
        // fail the start rather than hang the process.
        match ready_rx.recv_timeout(FIRST_OPEN_TIMEOUT) {
            Ok(Ok(())) => Ok(capture),
            Ok(Err(e)) => Err(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => anyhow::bail!(
                "the input did not open within {} s (a wedged device, or a FIFO nobody writes to)",
                FIRST_OPEN_TIMEOUT.as_secs()
            ),
            Err(_) => anyhow::bail!("the capture thread ended before the input started"),
        }
    }

    /// The request that reopens this input with the same shape.
    fn same_shape(&self) -> Option<crate::devices::Request> {
        match self {
            Input::Cpal { config, format, .. } => Some(crate::devices::Request {
                rate_hz: Some(config.sample_rate),
                channels: Some(config.channels),
                format: Some(*format),
            }),
            Input::File { .. } => None,
        }
    }
}

/// How one run of an input ended.
enum Ended {
    /// Asked to stop.
    Stop,
    /// A file reached its end.
    EndOfInput,
    /// The input failed; it will be reopened.
    Failed(String),
}

/// Owns one source's input and its ring producer; reopens the input when it fails.
struct Supervisor {
    source: SourceConfig,
    health: Arc<SourceHealth>,
    stop: Arc<AtomicBool>,
    /// The ring's producer, lent to each stream in turn and taken back when it closes.
    producer: Option<HeapProd<f32>>,
    /// Frames of a file delivered so far (where a reopened file resumes).
    position: u64,
}

impl Supervisor {
    fn run(mut self, first: Input, ready: Sender<anyhow::Result<()>>) {
        self.supervise(first, ready);
        self.health.capture_beat.finish();
    }

    fn supervise(&mut self, first: Input, ready: Sender<anyhow::Result<()>>) {
        let shape = first.same_shape();
        let mut ready = Some(ready);
        let mut next = Some(first);
        let mut attempt = 0u32;
        loop {
            let input = match next.take() {
                Some(i) => Ok(i),
                None => self.reopen(shape),
            };
            let began = Instant::now();
            let ended = match input {
                Err(e) => Ended::Failed(format!("{e:#}")),
                Ok(Input::File { stream, pace }) => {
                    let reopened = ready.is_none();
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    self.replay(stream, pace, reopened)
                }
                Ok(Input::Cpal {
                    device,
                    config,
                    format,
                }) => match self.play(&device, &config, format) {
                    Ok((stream, returned, error)) => {
                        let reopened = ready.is_none();
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                        self.watch(stream, &returned, &error, reopened)
                    }
                    Err(e) => match ready.take() {
                        // Failing at start-up is the caller's error to report.
                        Some(r) => {
                            let _ = r.send(Err(e));
                            return;
                        }
                        None => Ended::Failed(format!("{e:#}")),
                    },
                },
            };
            match ended {
                Ended::Stop => break,
                Ended::EndOfInput => {
                    tracing::info!(source = %self.source.name, "input ended");
                    self.health.ended.store(true, Ordering::Relaxed);
                    break;
                }
                Ended::Failed(why) => {
                    self.health.capture_ok.store(false, Ordering::Relaxed);
                    if self.producer.is_none() {
                        tracing::error!(source = %self.source.name, "capture failed and its ring could not be recovered: {why}");
                        break;
                    }
                    if began.elapsed() >= STABLE_AFTER {
                        attempt = 0;
                    }
                    let wait = backoff(attempt, REOPEN_MAX_S);
                    attempt += 1;
                    tracing::warn!(
                        source = %self.source.name,
                        "capture failed: {why}; reopening in {:.1} s",
                        wait.as_secs_f64()
                    );
                    if self.wait(wait) {
                        break;
                    }
                }
            }
        }
    }

    /// Waits before the next attempt, alive and stoppable. True when asked to stop.
    fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.health.capture_beat.tick();
            if sleep_unless(&self.stop, WATCH_EVERY * 5) {
                return true;
            }
        }
        false
    }

    /// Marks a reopened input healthy again, once it has delivered sound.
    fn resumed(health: &SourceHealth, source: &str) {
        health.reopens.fetch_add(1, Ordering::Relaxed);
        health.capture_ok.store(true, Ordering::Relaxed);
        tracing::info!(source, "capture resumed");
    }

    /// Opens the source's device again by its id, asking for the shape it had.
    fn reopen(&self, shape: Option<crate::devices::Request>) -> anyhow::Result<Input> {
        let mut source = self.source.clone();
        if let Some(r) = shape {
            (source.sample_rate_hz, source.channels, source.sample_format) =
                (r.rate_hz, r.channels, r.format);
        }
        let input = Input::open(&source)?;
        let rate = self.health.sample_rate_hz.load(Ordering::Relaxed);
        if input.sample_rate_hz() != rate {
            anyhow::bail!(
                "the device came back at {} Hz, not {rate} Hz",
                input.sample_rate_hz()
            );
        }
        match input {
            Input::File { mut stream, pace } => {
                stream.seek_frame(self.position)?;
                Ok(Input::File { stream, pace })
            }
            cpal => Ok(cpal),
        }
    }

    /// Builds and starts a cpal stream that borrows the producer.
    #[allow(clippy::type_complexity)]
    fn play(
        &mut self,
        device: &cpal::Device,
        config: &cpal::StreamConfig,
        format: SampleFormat,
    ) -> anyhow::Result<(cpal::Stream, Receiver<HeapProd<f32>>, Arc<StreamFailure>)> {
        let (back, returned) = bounded(1);
        let producer = Lent {
            producer: self.producer.take(),
            back,
        };
        let error = Arc::new(StreamFailure::default());
        let parts = (producer, self.health.clone(), error.clone());
        let channel = self.source.channel;
        let built = match format {
            SampleFormat::I8 => build::<i8>(device, config, channel, parts),
            SampleFormat::I16 => build::<i16>(device, config, channel, parts),
            SampleFormat::I32 => build::<i32>(device, config, channel, parts),
            SampleFormat::U8 => build::<u8>(device, config, channel, parts),
            SampleFormat::U16 => build::<u16>(device, config, channel, parts),
            SampleFormat::U32 => build::<u32>(device, config, channel, parts),
            SampleFormat::F32 => build::<f32>(device, config, channel, parts),
            SampleFormat::F64 => build::<f64>(device, config, channel, parts),
            other => {
                drop(parts);
                Err(anyhow::anyhow!("sample format {other} is not supported"))
            }
        };
        let started = built.and_then(|stream| {
            stream.play().context("cannot start the input stream")?;
            Ok(stream)
        });
        match started {
            Ok(stream) => Ok((stream, returned, error)),
            Err(e) => {
                // The callback (and the producer it held) is dropped with the stream.
                self.producer = returned.recv_timeout(Duration::from_secs(2)).ok();
                Err(e)
            }
        }
    }

    /// Watches a running stream until it fails or the source stops, then closes it and
    /// takes the producer back.
    fn watch(
        &mut self,
        stream: cpal::Stream,
        returned: &Receiver<HeapProd<f32>>,
        error: &StreamFailure,
        mut reopened: bool,
    ) -> Ended {
        let before = self.health.samples_in.load(Ordering::Relaxed);
        let ended = loop {
            self.health.capture_beat.tick();
            if self.stop.load(Ordering::Relaxed) {
                break Ended::Stop;
            }
            if error.failed.load(Ordering::Relaxed) {
                let why = error.why.lock().ok().and_then(|mut e| e.take());
                break Ended::Failed(why.unwrap_or_else(|| "stream error".into()));
            }
            if reopened && self.health.samples_in.load(Ordering::Relaxed) > before {
                Self::resumed(&self.health, &self.source.name);
                reopened = false;
            }
            std::thread::sleep(WATCH_EVERY);
        };
        drop(stream);
        self.producer = returned.recv_timeout(Duration::from_secs(2)).ok();
        ended
    }

    /// Replays a file into the ring from `self.position`.
    fn replay(&mut self, mut stream: WavStream, pace: Option<f64>, mut reopened: bool) -> Ended {
        let Some(producer) = self.producer.as_mut() else {
            return Ended::Stop;
        };
        let rate = stream.sample_rate_hz as f64;
        // 10 ms blocks, like a sound card's periods.
        let block = ((rate / 100.0) as usize).max(1);
        let (mut interleaved, mut mono) = (Vec::new(), vec![0.0f32; block]);
        let started = Instant::now();
        let mut played = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            self.health.capture_beat.tick();
            let frames = match stream.read(block, &mut interleaved) {
                Ok(0) => return Ended::EndOfInput,
                Ok(n) => n,
                // A file cut short behaves like a microphone unplugged mid-stream.
                Err(e) => return Ended::Failed(e.to_string()),
            };
            if reopened {
                Self::resumed(&self.health, &self.source.name);
                reopened = false;
            }
            mix_into(
                &interleaved,
                stream.channels,
                self.source.channel,
                &mut mono[..frames],
            );
            let mut chunk = &mono[..frames];
            if let Some(speed) = pace {
                let due = started + Duration::from_secs_f64(played as f64 / (rate * speed));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let lost = frames - producer.push_slice(chunk);
                if lost > 0 {
                    self.health
                        .dropped_samples
                        .fetch_add(lost as u64, Ordering::Relaxed);
                }
            } else {
                // Nothing is live: wait for room instead of dropping.
                while !chunk.is_empty() && !self.stop.load(Ordering::Relaxed) {
                    let n = producer.push_slice(chunk);
                    chunk = &chunk[n..];
                    self.health.capture_beat.tick();
                    if n == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            played += frames;
            self.position += frames as u64;
        }
        Ended::Stop
    }
}

/// Set by a stream's error callback.
#[derive(Default)]
struct StreamFailure {
    failed: AtomicBool,
    why: Mutex<Option<String>>,
}

/// The ring's producer while a cpal callback holds it; sent back to the supervisor when
/// the stream (and with it the callback) is dropped.
struct Lent {
    producer: Option<HeapProd<f32>>,
    back: Sender<HeapProd<f32>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(p) = self.producer.take() {
            let _ = self.back.try_send(p);
        }
    }
}

/// Builds the stream for one native sample type; the callback is monomorphic.
fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channel: Option<usize>,
    (mut lent, health, error): (Lent, Arc<SourceHealth>, Arc<StreamFailure>),
) -> anyhow::Result<cpal::Stream>
where
    T: SizedSample + cpal::Sample,
    f32: cpal::FromSample<T>,
{
    let channels = config.channels as usize;
    // Allocated here, before the stream exists, so the callback never allocates.
    let mut interleaved = vec![0.0f32; SCRATCH_FRAMES * channels];
    let mut mono = vec![0.0f32; SCRATCH_FRAMES];
    let errors_health = health.clone();
    let on_data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        let Some(producer) = lent.producer.as_mut() else {
            return;
        };
        for chunk in data.chunks(SCRATCH_FRAMES * channels) {
            let frames = chunk.len() / channels;
            for (dst, src) in interleaved.iter_mut().zip(chunk) {
                *dst = <f32 as cpal::FromSample<T>>::from_sample_(*src);
            }
            mix_into(
                &interleaved[..frames * channels],
                channels,
                channel,
                &mut mono[..frames],
            );
            let pushed = producer.push_slice(&mono[..frames]);
            if pushed < frames {
                health
                    .dropped_samples
                    .fetch_add((frames - pushed) as u64, Ordering::Relaxed);
            }
        }
    };
    let on_error = move |e: cpal::Error| {
        match e.kind() {
            // A late callback let the driver's buffer overflow; cpal has already
            // restarted the stream. A glitch to count, not a reason to reopen (a
            // reopen loses more audio, and a FIFO-fed test PCM would wait forever).
            cpal::ErrorKind::Xrun => {
                errors_health.xruns.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The stream followed the default device to a new route: nothing to do.
            cpal::ErrorKind::DeviceChanged => return,
            _ => {}
        }
        // Fatal to the stream: the supervisor sees the flag, logs, reopens.
        if let Ok(mut slot) = error.why.try_lock() {
            *slot = Some(e.to_string());
        }
        error.failed.store(true, Ordering::Relaxed);
    };
    device
        .build_input_stream::<T, _, _>(*config, on_data, on_error, None)
        .context("cannot open the input stream")
}
