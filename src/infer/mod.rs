//! Running trained networks on volumes: the generator (one forward pass, a case fitted to the
//! block, centred or sliding windows, and a whole folder of cases) and the chamber
//! segmentation U-Net (CTA → label map).

pub mod cohort;
pub mod single;
pub mod segment;

pub use crate::predict::{SegmentationNetwork, Tiling, fit_to_block, predict_tiled, predict_volume, segment_volume};
pub use cohort::{InferJob, InferReport, TrainedGenerator, infer_cohort};
pub use single::predict_case;
pub use segment::{SegmentationNet, Segmenter};
