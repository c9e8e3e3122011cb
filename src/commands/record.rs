//! `hark record`: a normal reference clip from a device, written as WAV.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Split};

use super::progress::{self, Unit};
use crate::capture::Input;
use crate::config::{Device, Mode, SourceConfig};
use crate::health::SourceHealth;

/// Captures `seconds` of mono audio from `input`, handing each chunk to `sink`, with a
/// progress bar labelled `what`. Returns the capture rate. Stops early if the input ends.
pub(super) fn capture_for(
    input: Input,
    source: &SourceConfig,
    seconds: f64,
    what: &'static str,
    sink: &mut dyn FnMut(&[f32]) -> anyhow::Result<()>,
) -> anyhow::Result<u32> {
    let rate = input.sample_rate_hz();
    let (producer, mut consumer) = HeapRb::<f32>::new((rate as usize * 4).max(8192)).split();
    let health = Arc::new(SourceHealth::new());
    let capture = input.start(source, producer, health.clone())?;
    let want = (seconds * rate as f64).round() as usize;
    let mut got = 0;
    let mut buf = vec![0.0f32; 4096];
    let mut last_data = Instant::now();
    let bar = progress::bar((seconds * 1000.0).round() as u64, what, Unit::Seconds);
    while got < want {
        let n = consumer.pop_slice(&mut buf[..(want - got).min(4096)]);
        if n == 0 {
            if !consumer.write_is_held() && consumer.is_empty() {
                break;
            }
            if last_data.elapsed() > Duration::from_secs(5) {
                bail!("no audio from the device for 5 s");
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        last_data = Instant::now();
        sink(&buf[..n])?;
        got += n;
        bar.set_position((got as f64 * 1000.0 / rate as f64) as u64);
    }
    drop(bar);
    drop(capture);
    let dropped = health
        .dropped_samples
        .load(std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(dropped, "samples were dropped during capture");
    }
    let xruns = health.xruns.load(std::sync::atomic::Ordering::Relaxed);
    if xruns > 0 {
        tracing::warn!(
            xruns,
            "the driver overran: samples were dropped before hark saw them"
        );
    }
    Ok(rate)
}

/// A throwaway source description for commands that name a device directly.
pub(super) fn adhoc_source(
    device: &str,
    req: crate::devices::Request,
    channel: Option<usize>,
) -> SourceConfig {
    let device = match device.strip_prefix("file:") {
        Some(p) => Device::File {
            path: p.into(),
            realtime: false,
            speed: 1.0,
        },
        None => Device::Cpal(device.to_string()),
    };
    SourceConfig {
        name: "record".into(),
        device,
        mode: Mode::Continuous,
        model: "".into(),
        bank: "".into(),
        learn_seconds: 1.0,
        channel,
        sample_rate_hz: req.rate_hz,
        channels: req.channels,
        sample_format: req.format,
        window_hop_frames: None,
        raise_k: 1,
        raise_n: 1,
        clear_m: 1,
        threshold_scale: 1.0,
        ring_seconds: 4.0,
        evidence: None,
        tap: Default::default(),
    }
}

/// Records `seconds` from `device` into `out`.
pub fn run(
    device: &str,
    seconds: f64,
    out: &Path,
    req: crate::devices::Request,
    channel: Option<usize>,
) -> anyhow::Result<()> {
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds = {seconds}: must be > 0");
    }
    let source = adhoc_source(device, req, channel);
    let input = Input::open(&source)?;
    let mut samples = Vec::new();
    tracing::info!(device, seconds, "recording");
    let rate = capture_for(input, &source, seconds, "recording", &mut |chunk| {
        samples.extend_from_slice(chunk);
        Ok(())
    })?;
    crate::wav::write_mono_i16(out, rate, &samples)
        .with_context(|| format!("--out {}", out.display()))?;
    outln!(
        "wrote {} ({:.1} s at {rate} Hz)",
        out.display(),
        samples.len() as f64 / rate as f64
    )?;
    Ok(())
}
