//! Looking at results: windowing and colour maps, axial slice images.

pub mod colormap;
pub mod slice;

pub use colormap::{Window, gray_rgb, jet_rgb};
pub use slice::{ColorMap, axial_slice};
