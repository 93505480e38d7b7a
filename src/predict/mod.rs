//! Prediction of one volume by a network in memory, beside the networks and below both
//! training (validation) and inference: the generator's forward pass on a volume
//! ([`predict_volume`]), a case fitted to the block or covered by overlapping windows
//! ([`tiling`]), and the segmentation U-Net's label map ([`segment_volume`]).

pub mod segmentation;
pub mod tiling;
pub mod volume;

pub use segmentation::{SegmentationNetwork, segment_volume};
pub use tiling::{Tiling, fit_to_block, predict_tiled};
pub use volume::predict_volume;
