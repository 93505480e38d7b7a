//! Looking at results: scores of predicted against measured MBF, per-case and per-variant
//! tables, label overlap (Dice) of segmentations, windowing and colour maps, axial slice
//! images, learning curves of training runs, and browsable slice maps with their SVG figures.

pub mod colormap;
pub mod curve;
pub mod metrics;
pub mod overlap;
pub mod report;
pub mod slice;
pub mod slicemap;
pub mod svg;

pub use colormap::{Window, gray_rgb, jet_rgb};
pub use metrics::{CaseScores, score_case};
pub use overlap::{dice_per_label, mean_dice};
pub use slice::{ColorMap, axial_slice};
