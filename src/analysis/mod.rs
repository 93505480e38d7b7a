//! Looking at results: windowing and colour maps, axial slice images, label overlap (Dice).

pub mod colormap;
pub mod overlap;
pub mod slice;

pub use colormap::{Window, gray_rgb, jet_rgb};
pub use overlap::{dice_per_label, mean_dice};
pub use slice::{ColorMap, axial_slice};
