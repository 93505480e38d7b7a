//! Looking at results: scores of predicted against measured MBF, per-case and per-variant
//! tables, windowing and colour maps, axial slice images and browsable slice maps.

pub mod colormap;
pub mod metrics;
pub mod report;
pub mod slice;
pub mod slicemap;

pub use colormap::{Window, gray_rgb, jet_rgb};
pub use metrics::{CaseScores, score_case};
pub use slice::{ColorMap, axial_slice};
