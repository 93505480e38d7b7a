//! PNG encoding of 8-bit RGB images (slice maps, TensorBoard images).

use crate::error::{Error, Result};
use std::path::Path;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 · width · height` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![0; 3 * width * height] }
    }

    /// Set pixel (`col`, `row`).
    pub fn put(&mut self, col: usize, row: usize, rgb: [u8; 3]) {
        let i = 3 * (row * self.width + col);
        self.pixels[i..i + 3].copy_from_slice(&rgb);
    }

    /// Pixel (`col`, `row`).
    pub fn get(&self, col: usize, row: usize) -> [u8; 3] {
        let i = 3 * (row * self.width + col);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// The image as PNG bytes.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("in-memory PNG header");
            w.write_image_data(&self.pixels).expect("in-memory PNG data");
        }
        out
    }

    /// Write the image as a PNG file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        super::atomic::write_bytes_atomically(path, &self.to_png())
    }

    /// Read an RGB or RGBA PNG file.
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut dec = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .map_err(|e| Error::format(path, format!("not a PNG: {e}")))?;
        let mut buf = vec![0; dec.output_buffer_size().unwrap_or(0)];
        let info = dec.next_frame(&mut buf).map_err(|e| Error::format(path, format!("bad PNG data: {e}")))?;
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => return Err(Error::format(path, format!("unsupported PNG colour type {other:?}"))),
        };
        let (w, h) = (info.width as usize, info.height as usize);
        let pixels = buf[..w * h * channels].chunks(channels).flat_map(|p| [p[0], p[1], p[2]]).collect();
        Ok(Self { width: w, height: h, pixels })
    }
}
