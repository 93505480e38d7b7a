//! TensorBoard event files, written directly: TFRecord framing (length, masked CRC-32C) around
//! `Event` protocol buffers (encoded with [`crate::io::protobuf`]) carrying scalar, PNG image
//! and histogram summaries. TensorBoard's own reader (`event_accumulator`) loads them; a CI
//! test checks that.

use crate::error::{Error, Result};
use crate::io::png::RgbImage;
use crate::interop::{StoredTensor, StoredValues};
use crate::io::protobuf::Message;
use burn::store::ModuleSnapshot;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Buckets of an [`EventWriter::histogram`].
pub const HISTOGRAM_BUCKETS: usize = 30;

/// Appends summaries to one `events.out.tfevents.*` file.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Create a new event file in `dir` (created if needed).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = wall_time();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
        let name = format!("events.out.tfevents.{}.{}.{}", now as u64, host.trim(), std::process::id());
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = Self { file: BufWriter::new(file), path };
        let event = Message::new().double(1, now).string(3, "brain.Event:2");
        w.record(event.as_bytes())?;
        w.flush()?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar `value` under `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, value: f32, step: usize) -> Result<()> {
        self.summary(Message::new().string(1, tag).float(2, value), step)
    }

    /// An RGB image under `tag` at `step`.
    pub fn image(&mut self, tag: &str, img: &RgbImage, step: usize) -> Result<()> {
        let image = Message::new().int(1, img.height as i64).int(2, img.width as i64).int(3, 3).bytes(4, &img.to_png());
        self.summary(Message::new().string(1, tag).message(4, &image), step)
    }

    /// A histogram of the finite values among `values` under `tag` at `step`, in
    /// [`HISTOGRAM_BUCKETS`] equal-width buckets from the least to the largest; nothing is
    /// written when no value is finite.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: usize) -> Result<()> {
        let finite: Vec<f64> = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
        let Some(min) = finite.iter().copied().reduce(f64::min) else { return Ok(()) };
        let max = finite.iter().copied().fold(min, f64::max);
        let n = if max > min { HISTOGRAM_BUCKETS } else { 1 };
        let width = (max - min) / n as f64;
        let mut counts = vec![0.0f64; n];
        for &v in &finite {
            let i = if width > 0.0 { ((v - min) / width) as usize } else { 0 };
            counts[i.min(n - 1)] += 1.0;
        }
        // Bucket i holds the values up to its limit (and above the previous one's).
        let limits: Vec<f64> = (1..=n).map(|i| if i == n { max } else { min + width * i as f64 }).collect();
        let histo = Message::new()
            .double(1, min)
            .double(2, max)
            .double(3, finite.len() as f64)
            .double(4, finite.iter().sum())
            .double(5, finite.iter().map(|v| v * v).sum())
            .packed_double(6, &limits)
            .packed_double(7, &counts);
        self.summary(Message::new().string(1, tag).message(5, &histo), step)
    }

    /// A histogram of each learnable tensor of `module` (weights, biases, norm scales; not the
    /// running statistics) under `weights/<prefix>/<module path>` at `step`.
    pub fn weights<M: ModuleSnapshot>(&mut self, prefix: &str, module: &M, step: usize) -> Result<()> {
        for t in module.collect(None, None, false) {
            if t.name.ends_with("running_mean") || t.name.ends_with("running_var") {
                continue;
            }
            let stored = StoredTensor::from_pack(&t).map_err(|e| Error::invalid(format!("TensorBoard weights: {e}")))?;
            if let StoredValues::Float(values) = stored.values {
                self.histogram(&format!("weights/{prefix}/{}", t.name), &values, step)?;
            }
        }
        Ok(())
    }

    /// Push buffered events to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// An event at `step` holding one `Summary.Value`.
    fn summary(&mut self, value: Message, step: usize) -> Result<()> {
        let summary = Message::new().message(1, &value);
        let event = Message::new().double(1, wall_time()).int(2, step as i64).message(5, &summary);
        self.record(event.as_bytes())
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&out).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

fn wall_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// CRC-32C (Castagnoli), bitwise-reflected, as TFRecord uses.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // RFC 3720 test vector: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
