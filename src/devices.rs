//! Finding input devices: by cpal's stable id, by name substring, or `default`.

use anyhow::{Context, bail};
use cpal::SampleFormat;
use cpal::traits::{DeviceTrait, HostTrait};

/// One input device as `hark devices` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// cpal's stable id, e.g. `alsa:hw:CARD=Device,DEV=0`.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Channel counts offered.
    pub channels: Vec<u16>,
    /// Sample-rate ranges offered, as (min, max) Hz.
    pub sample_rates: Vec<(u32, u32)>,
    /// Whether this is the host's default input.
    pub default: bool,
}

/// Lists the input devices of the default host.
pub fn list() -> anyhow::Result<Vec<DeviceInfo>> {
    let host = cpal::default_host();
    let default_id = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.to_string());
    let mut out = Vec::new();
    for device in host
        .input_devices()
        .context("cannot enumerate input devices")?
    {
        let Ok(id) = device.id() else { continue };
        let id = id.to_string();
        let name = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| id.clone());
        let mut channels = Vec::new();
        let mut sample_rates = Vec::new();
        if let Ok(configs) = device.supported_input_configs() {
            for c in configs {
                if !channels.contains(&c.channels()) {
                    channels.push(c.channels());
                }
                let r = (c.min_sample_rate(), c.max_sample_rate());
                if !sample_rates.contains(&r) {
                    sample_rates.push(r);
                }
            }
        }
        if channels.is_empty() {
            continue;
        }
        out.push(DeviceInfo {
            default: default_id.as_deref() == Some(id.as_str()),
            id,
            name,
            channels,
            sample_rates,
        });
    }
    Ok(out)
}

/// Resolves a device spec: `default`, an exact stable id, or a unique name substring.
pub fn find(spec: &str) -> anyhow::Result<cpal::Device> {
    let host = cpal::default_host();
    if spec == "default" {
        return host
            .default_input_device()
            .context("no default input device (is a microphone plugged in?)");
    }
    if let Ok(id) = spec.parse::<cpal::DeviceId>()
        && let Some(d) = host.device_by_id(&id)
    {
        return Ok(d);
    }
    let mut matches = Vec::new();
    for d in host
        .input_devices()
        .context("cannot enumerate input devices")?
    {
        let id = d.id().map(|i| i.to_string()).unwrap_or_default();
        let name = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_default();
        if id == spec || name.contains(spec) || id.contains(spec) {
            matches.push((id, d));
        }
    }
    match matches.len() {
        0 => bail!("no input device matches (see `hark devices`)"),
        1 => Ok(matches.pop().expect("one match").1),
        _ => {
            let ids: Vec<String> = matches.into_iter().map(|(id, _)| id).collect();
            bail!(
                "several input devices match: {}; use a stable id",
                ids.join(", ")
            )
        }
    }
}

/// What a source asks of its device; `None` leaves the choice to the device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Request {
    /// Sample rate in Hz.
    pub rate_hz: Option<u32>,
    /// Channel count.
    pub channels: Option<u16>,
    /// Native sample format.
    pub format: Option<SampleFormat>,
}

/// Parses a sample-format name as cpal prints it (`i16`, `f32`, ...).
pub fn parse_format(name: &str) -> Option<SampleFormat> {
    use SampleFormat::*;
    [I8, I16, I32, I64, U8, U16, U32, U64, F32, F64]
        .into_iter()
        .find(|f| f.to_string() == name)
}

/// Chooses the stream config: the device's default, unless the request names a rate,
/// channel count or format, in which case the first offered config that fits.
pub fn input_config(
    device: &cpal::Device,
    req: Request,
) -> anyhow::Result<(cpal::StreamConfig, SampleFormat)> {
    let default = device
        .default_input_config()
        .context("device offers no input configuration")?;
    if req == Request::default() {
        return Ok((default.config(), default.sample_format()));
    }
    let rate = req.rate_hz.unwrap_or(default.sample_rate());
    let configs = device
        .supported_input_configs()
        .context("device offers no input configuration")?;
    let mut offered = Vec::new();
    for c in configs {
        let fits = (c.min_sample_rate()..=c.max_sample_rate()).contains(&rate)
            && req.channels.is_none_or(|n| n == c.channels())
            && req.format.is_none_or(|f| f == c.sample_format());
        if fits {
            let c = c.with_sample_rate(rate);
            return Ok((c.config(), c.sample_format()));
        }
        offered.push(format!(
            "{} ch {} {}-{} Hz",
            c.channels(),
            c.sample_format(),
            c.min_sample_rate(),
            c.max_sample_rate()
        ));
    }
    offered.dedup();
    bail!(
        "no input configuration with rate {rate} Hz{}{} (offered: {})",
        req.channels
            .map(|n| format!(", {n} channel(s)"))
            .unwrap_or_default(),
        req.format
            .map(|f| format!(", format {f}"))
            .unwrap_or_default(),
        offered.join("; ")
    )
}
