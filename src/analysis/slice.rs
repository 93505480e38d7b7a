//! Axial slices of a volume as RGB images.
//!
//! A volume is indexed `[x, y, z]` in ITK's LPS frame; an axial slice `z = k` is drawn with
//! `x` across (columns) and `y` down (rows), the usual radiological display of an LPS image.

use super::colormap::{Window, gray_rgb, jet_rgb};
use crate::io::png::RgbImage;
use ndarray::Array3;

/// How slice values become colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorMap {
    /// Grey levels (CTA).
    Gray,
    /// matplotlib's jet (MBF).
    Jet,
}

impl ColorMap {
    /// The colour of `value` in `window`.
    pub fn rgb(self, value: f32, window: Window) -> [u8; 3] {
        match self {
            ColorMap::Gray => gray_rgb(value, window),
            ColorMap::Jet => jet_rgb(value, window),
        }
    }
}

/// Slice `z` of `volume` as an image, through `window` and `map`.
pub fn axial_slice(volume: &Array3<f32>, z: usize, window: Window, map: ColorMap) -> RgbImage {
    let (nx, ny, _) = volume.dim();
    let mut img = RgbImage::new(nx, ny);
    for y in 0..ny {
        for x in 0..nx {
            img.put(x, y, map.rgb(volume[[x, y, z]], window));
        }
    }
    img
}
