//! Training the CTA→MBF generator and the chamber-segmentation U-Net: configurations,
//! losses, learning-rate policies, checkpoints, TensorBoard events, progress, the run folder,
//! and the two loops.

pub mod loss;
pub mod parallel;
pub mod progress;
pub mod run;
pub mod seg_loss;
pub mod seg_trainer;
pub mod tensorboard;
pub mod trainer;
pub mod validate;

pub use crate::config::{GanMode, LrPolicy, LrSchedule, SegConfig, TrainConfig};
pub use trainer::{TrainOptions, TrainReport, train};
pub use validate::{CaseMetrics, evaluate_case};
pub use seg_trainer::{SegTrainOptions, SegTrainReport, train_seg};
