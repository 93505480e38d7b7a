//! Running trained networks on volumes: the generator (CTA → MBF) and the chamber
//! segmentation U-Net (CTA → label map).

pub mod predict;
pub mod segment;

pub use predict::predict_volume;
pub use segment::{Segmenter, segment_volume};
