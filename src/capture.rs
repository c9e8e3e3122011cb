//! Stage 1, capture: one input per source, feeding that source's SPSC ring.
//!
//! A cpal device gets a stream whose data callback runs on cpal's real-time thread and
//! never allocates, locks, logs or blocks: it converts to f32, picks or mixes channels
//! into a scratch buffer allocated beforehand, pushes into the ring and counts what did
//! not fit. A `file:` device gets a thread of its own that replays the WAV, paced in
//! real time or as fast as the ring drains. Dropping the [`Capture`] stops the input and
//! drops the ring's producer, which is how the dsp stage learns the input has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{SampleFormat, SizedSample};
use ringbuf::HeapProd;
use ringbuf::traits::Producer;

use crate::config::{Device, SourceConfig};
use crate::health::SourceHealth;
use crate::wav::{WavStream, mix_into};

/// Frames converted per step in the callback; a larger callback is done in steps.
const SCRATCH_FRAMES: usize = 4096;

/// A running input. Dropping it stops the input and joins its thread, if any.
pub struct Capture {
    /// The cpal stream; its callback owns the ring producer.
    stream: Option<cpal::Stream>,
    /// The file replay thread; it owns the ring producer.
    thread: Option<JoinHandle<()>>,
    /// Tells the replay thread to stop.
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("cpal", &self.stream.is_some())
            .field("file", &self.thread.is_some())
            .finish()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.stream.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
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
        /// Real-time pacing.
        realtime: bool,
    },
}

impl Input {
    /// Opens what the source names: resolves the device or reads the file. Errors name
    /// the source and the device.
    pub fn open(source: &SourceConfig) -> anyhow::Result<Input> {
        match &source.device {
            Device::File { path, realtime } => {
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
                    realtime: *realtime,
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
        matches!(
            self,
            Input::File {
                realtime: false,
                ..
            }
        )
    }

    /// Starts delivering mono samples into `producer`.
    pub fn start(
        self,
        channel: Option<usize>,
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
        match self {
            Input::File { stream, realtime } => {
                let stop2 = stop.clone();
                let thread = std::thread::Builder::new()
                    .name("capture".into())
                    .spawn(move || replay(stream, channel, realtime, producer, &health, &stop2))?;
                Ok(Capture {
                    stream: None,
                    thread: Some(thread),
                    stop,
                })
            }
            Input::Cpal {
                device,
                config,
                format,
            } => {
                let stream = match format {
                    SampleFormat::I8 => build::<i8>(&device, &config, channel, producer, health),
                    SampleFormat::I16 => build::<i16>(&device, &config, channel, producer, health),
                    SampleFormat::I32 => build::<i32>(&device, &config, channel, producer, health),
                    SampleFormat::U8 => build::<u8>(&device, &config, channel, producer, health),
                    SampleFormat::U16 => build::<u16>(&device, &config, channel, producer, health),
                    SampleFormat::U32 => build::<u32>(&device, &config, channel, producer, health),
                    SampleFormat::F32 => build::<f32>(&device, &config, channel, producer, health),
                    SampleFormat::F64 => build::<f64>(&device, &config, channel, producer, health),
                    other => anyhow::bail!("sample format {other} is not supported"),
                }?;
                stream.play().context("cannot start the input stream")?;
                Ok(Capture {
                    stream: Some(stream),
                    thread: None,
                    stop,
                })
            }
        }
    }
}

/// Builds the stream for one native sample type; the callback is monomorphic.
fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    channel: Option<usize>,
    mut producer: HeapProd<f32>,
    health: Arc<SourceHealth>,
) -> anyhow::Result<cpal::Stream>
where
    T: SizedSample + cpal::Sample,
    f32: cpal::FromSample<T>,
{
    let channels = config.channels as usize;
    // Allocated here, before the stream exists, so the callback never allocates.
    let mut interleaved = vec![0.0f32; SCRATCH_FRAMES * channels];
    let mut mono = vec![0.0f32; SCRATCH_FRAMES];
    let data_health = health.clone();
    let on_data = move |data: &[T], _: &cpal::InputCallbackInfo| {
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
                data_health
                    .dropped_samples
                    .fetch_add((frames - pushed) as u64, Ordering::Relaxed);
            }
        }
    };
    let on_error = move |_e: cpal::Error| {
        // Not the audio thread, but still no logging here: the flag reaches the health
        // topic and the supervisor logs the change.
        health.capture_ok.store(false, Ordering::Relaxed);
    };
    device
        .build_input_stream::<T, _, _>(*config, on_data, on_error, None)
        .context("cannot open the input stream")
}

/// Replays a file into the ring, then drops the producer (end of input).
fn replay(
    mut stream: WavStream,
    channel: Option<usize>,
    realtime: bool,
    mut producer: HeapProd<f32>,
    health: &SourceHealth,
    stop: &AtomicBool,
) {
    let rate = stream.sample_rate_hz as f64;
    // 10 ms blocks, like a sound card's periods.
    let block = ((rate / 100.0) as usize).max(1);
    let (mut interleaved, mut mono) = (Vec::new(), vec![0.0f32; block]);
    let started = Instant::now();
    let mut played = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let frames = match stream.read(block, &mut interleaved) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                // A file cut short behaves like a microphone unplugged mid-stream.
                tracing::error!("{e}");
                health.capture_ok.store(false, Ordering::Relaxed);
                break;
            }
        };
        mix_into(&interleaved, stream.channels, channel, &mut mono[..frames]);
        let mut chunk = &mono[..frames];
        if realtime {
            let due = started + Duration::from_secs_f64(played as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let lost = frames - producer.push_slice(chunk);
            if lost > 0 {
                health
                    .dropped_samples
                    .fetch_add(lost as u64, Ordering::Relaxed);
            }
        } else {
            // Nothing is live: wait for room instead of dropping.
            while !chunk.is_empty() && !stop.load(Ordering::Relaxed) {
                let n = producer.push_slice(chunk);
                chunk = &chunk[n..];
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        played += frames;
    }
    health.ended.store(true, Ordering::Relaxed);
}
