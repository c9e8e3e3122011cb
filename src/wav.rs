//! WAV input and output: any rate, channel count and sample format hound reads, as f32.
//!
//! Errors name the file and say what is wrong in one line; an empty or non-audio file is
//! an error, not an empty signal.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A decoded clip: interleaved f32 samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct Clip {
    /// Samples per second per channel.
    pub sample_rate_hz: u32,
    /// Channels per frame.
    pub channels: usize,
    /// Interleaved samples (`frames × channels`).
    pub samples: Vec<f32>,
}

/// A WAV file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct WavError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub why: String,
}

impl Clip {
    /// Reads a whole WAV file.
    pub fn read(path: &Path) -> Result<Clip, WavError> {
        Self::from_stream(WavStream::open(path)?)
    }

    /// Decodes a whole WAV file held in memory; `file` only names it in messages.
    pub fn from_bytes(bytes: &[u8], file: &Path) -> Result<Clip, WavError> {
        Self::from_stream(WavStream::from_reader(bytes, file)?)
    }

    fn from_stream<R: Read>(mut stream: WavStream<R>) -> Result<Clip, WavError> {
        let mut samples = Vec::new();
        stream.read(usize::MAX / stream.channels, &mut samples)?;
        Ok(Clip {
            sample_rate_hz: stream.sample_rate_hz,
            channels: stream.channels,
            samples,
        })
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate_hz as f64
    }

    /// One channel (`Some(c)`) or the mean of all channels (`None`).
    pub fn mono(&self, channel: Option<usize>) -> Vec<f32> {
        let mut out = vec![0.0; self.frames()];
        mix_into(&self.samples, self.channels, channel, &mut out);
        out
    }
}

/// A WAV file read a block at a time, so replaying a long recording costs a few
/// kilobytes of memory, not the whole file. `R` is the byte source: a buffered file
/// unless it was made with [`WavStream::from_reader`].
pub struct WavStream<R: Read = std::io::BufReader<std::fs::File>> {
    reader: hound::WavReader<R>,
    path: PathBuf,
    /// Samples per second per channel.
    pub sample_rate_hz: u32,
    /// Channels per frame.
    pub channels: usize,
    scale: f32,
    float: bool,
}

impl<R: Read> std::fmt::Debug for WavStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavStream")
            .field("path", &self.path)
            .finish()
    }
}

impl WavStream {
    /// Opens a WAV file and checks its header; an empty file is an error.
    pub fn open(path: &Path) -> Result<WavStream, WavError> {
        let file = std::fs::File::open(path).map_err(|e| WavError {
            file: path.to_path_buf(),
            why: describe(hound::Error::IoError(e)),
        })?;
        WavStream::from_reader(std::io::BufReader::new(file), path)
    }
}

impl<R: Read + std::io::Seek> WavStream<R> {
    /// Moves to frame `frame` (used to resume a replay where a failed read left off).
    pub fn seek_frame(&mut self, frame: u64) -> Result<(), WavError> {
        let at = u32::try_from(frame).unwrap_or(u32::MAX);
        self.reader.seek(at).map_err(|e| WavError {
            file: self.path.clone(),
            why: format!("cannot seek to frame {frame}: {e}"),
        })
    }
}

impl<R: Read> WavStream<R> {
    /// Reads and checks the header from `reader`; `path` only names the source in
    /// messages. An empty file is an error.
    pub fn from_reader(reader: R, path: &Path) -> Result<WavStream<R>, WavError> {
        let err = |why: String| WavError {
            file: path.to_path_buf(),
            why,
        };
        let reader = hound::WavReader::new(reader).map_err(|e| err(describe(e)))?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(err(format!(
                "invalid header: {} channels at {} Hz",
                spec.channels, spec.sample_rate
            )));
        }
        // Hound takes WAVE_FORMAT_EXTENSIBLE's valid-bits field as it stands (up to 65535),
        // and the scale below shifts by it.
        let width_ok = match spec.sample_format {
            hound::SampleFormat::Float => spec.bits_per_sample == 32,
            hound::SampleFormat::Int => (1..=32).contains(&spec.bits_per_sample),
        };
        if !width_ok {
            return Err(err(format!(
                "unsupported sample width: {} bits ({:?})",
                spec.bits_per_sample, spec.sample_format
            )));
        }
        if reader.len() == 0 {
            return Err(err("no audio samples (empty file)".into()));
        }
        Ok(WavStream {
            reader,
            path: path.to_path_buf(),
            sample_rate_hz: spec.sample_rate,
            channels: spec.channels as usize,
            scale: 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32,
            float: spec.sample_format == hound::SampleFormat::Float,
        })
    }

    /// Frames in the file, from its header (nothing is read).
    pub fn frames(&self) -> u64 {
        u64::from(self.reader.duration())
    }

    /// Reads up to `frames` frames (interleaved) into `out`, replacing its contents.
    /// Returns the number of frames read; 0 at the end of the file.
    pub fn read(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<usize, WavError> {
        out.clear();
        let n = frames.saturating_mul(self.channels);
        let result: Result<(), hound::Error> = if self.float {
            let mut finite = true;
            let read = self.reader.samples::<f32>().take(n).try_for_each(|s| {
                s.map(|v| {
                    finite &= v.is_finite();
                    out.push(v)
                })
            });
            if read.is_ok() && !finite {
                return Err(WavError {
                    file: self.path.clone(),
                    why: "float samples hold NaN or infinite values".into(),
                });
            }
            read
        } else {
            let scale = self.scale;
            self.reader
                .samples::<i32>()
                .take(n)
                .try_for_each(|s| s.map(|v| out.push(v as f32 * scale)))
        };
        result.map_err(|e| WavError {
            file: self.path.clone(),
            why: describe(e),
        })?;
        Ok(out.len() / self.channels)
    }
}

/// Picks one channel or mixes all of interleaved `input` into `out` (one value per frame).
///
/// Used by the real-time capture callback too, so it never allocates. A channel beyond
/// the device's count falls back to channel 0 (validated earlier, never reached).
pub fn mix_into(input: &[f32], channels: usize, channel: Option<usize>, out: &mut [f32]) {
    match (channels, channel) {
        (1, _) => out.copy_from_slice(&input[..out.len()]),
        (_, Some(c)) => {
            let c = if c < channels { c } else { 0 };
            for (o, frame) in out.iter_mut().zip(input.chunks_exact(channels)) {
                *o = frame[c];
            }
        }
        (_, None) => {
            let scale = 1.0 / channels as f32;
            for (o, frame) in out.iter_mut().zip(input.chunks_exact(channels)) {
                *o = frame.iter().sum::<f32>() * scale;
            }
        }
    }
}

fn describe(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(e) => format!("cannot read: {e}"),
        // hound's only word for a float WAV that is not 32-bit, such as the 64-bit
        // float that numpy's float64 arrays become through scipy.io.wavfile.write.
        hound::Error::FormatError("bits per sample is not 32") => {
            "float samples of other than 32 bits (64-bit float?) are not supported: \
             convert to 32-bit float or 16-bit PCM (sox IN.wav -e floating-point -b 32 OUT.wav)"
                .into()
        }
        hound::Error::FormatError(m) => format!("not a WAV file ({m})"),
        hound::Error::TooWide => "sample width too large".into(),
        hound::Error::Unsupported => "unsupported WAV format".into(),
        hound::Error::InvalidSampleFormat => "invalid sample format".into(),
        hound::Error::UnfinishedSample => "truncated sample data".into(),
    }
}

/// Writes mono f32 samples as a 16-bit PCM WAV.
pub fn write_mono_i16(path: &Path, sample_rate_hz: u32, samples: &[f32]) -> anyhow::Result<()> {
    use anyhow::Context;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    for &s in samples {
        w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .with_context(|| format!("{}: write failed", path.display()))?;
    }
    w.finalize()
        .with_context(|| format!("{}: write failed", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_mixing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let x: Vec<f32> = (0..100).map(|i| (i as f32 / 100.0) - 0.5).collect();
        write_mono_i16(&path, 8000, &x).unwrap();
        let clip = Clip::read(&path).unwrap();
        assert_eq!(clip.sample_rate_hz, 8000);
        assert_eq!(clip.frames(), 100);
        for (a, b) in clip.mono(None).iter().zip(&x) {
            assert!((a - b).abs() < 1e-4);
        }
        let stereo = [1.0, 3.0, -1.0, 1.0];
        let mut out = [0.0; 2];
        mix_into(&stereo, 2, None, &mut out);
        assert_eq!(out, [2.0, 0.0]);
        mix_into(&stereo, 2, Some(1), &mut out);
        assert_eq!(out, [3.0, 1.0]);
    }

    fn one_sample_wav<S: hound::Sample>(bits: u16, format: hound::SampleFormat, x: S) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        w.write_sample(x).unwrap();
        w.finalize().unwrap();
        cursor.into_inner()
    }

    #[test]
    fn odd_extensible_widths_and_non_finite_floats_are_errors() {
        // Found by tests/fuzz.rs. hound writes 24-bit audio as WAVE_FORMAT_EXTENSIBLE and
        // reads its valid-bits field (offset 38) as it stands: 200 bits overflowed the
        // scale's shift (a panic in debug builds, a garbage scale in release).
        let mut wide = one_sample_wav(24, hound::SampleFormat::Int, 1i32);
        wide[38..40].copy_from_slice(&200u16.to_le_bytes());
        let e = Clip::from_bytes(&wide, Path::new("wide.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("wide.wav: ") && e.contains("200 bits"), "{e}");
        // A NaN sample made every score NaN, and NaN never raises an alarm.
        let nan = one_sample_wav(32, hound::SampleFormat::Float, f32::NAN);
        let e = Clip::from_bytes(&nan, Path::new("nan.wav"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("nan.wav: ") && e.contains("NaN"), "{e}");
    }

    #[test]
    fn a_64_bit_float_wav_is_an_error_that_says_so() {
        // RIFF, fmt (IEEE float, 1 channel, 16 kHz, 64 bits), data: one sample.
        let fmt: Vec<u8> = [3u16.to_le_bytes(), 1u16.to_le_bytes()]
            .concat()
            .into_iter()
            .chain(16000u32.to_le_bytes())
            .chain((16000u32 * 8).to_le_bytes())
            .chain(8u16.to_le_bytes())
            .chain(64u16.to_le_bytes())
            .collect();
        let mut body = b"WAVEfmt ".to_vec();
        body.extend((fmt.len() as u32).to_le_bytes());
        body.extend(&fmt);
        body.extend(b"data");
        body.extend(8u32.to_le_bytes());
        body.extend(0.5f64.to_le_bytes());
        let mut wav = b"RIFF".to_vec();
        wav.extend((body.len() as u32).to_le_bytes());
        wav.extend(body);
        let e = Clip::from_bytes(&wav, Path::new("f64.wav"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f64.wav: ") && e.contains("64-bit float"),
            "{e}"
        );
        assert!(!e.contains("not a WAV file"), "{e}");
    }

    #[test]
    fn empty_and_non_audio_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"this is not audio at all").unwrap();
        let e = Clip::read(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.wav") && e.contains("not a WAV"), "{e}");
        let empty = dir.path().join("empty.wav");
        write_mono_i16(&empty, 16000, &[]).unwrap();
        let e = Clip::read(&empty).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
