//! Running trained networks on volumes: the generator (one forward pass, a case fitted to the
//! block, centred or sliding windows, and a whole folder of cases) and the chamber
//! segmentation U-Net (CTA → label map).

pub mod block;
pub mod cohort;
pub mod predict;
pub mod single;
pub mod segment;

pub use block::{Tiling, fit_to_block, predict_tiled};
pub use cohort::{InferJob, InferReport, TrainedGenerator, infer_cohort, inference_folder_name};
pub use predict::predict_volume;
pub use single::predict_case;
pub use segment::{Segmenter, segment_volume};
