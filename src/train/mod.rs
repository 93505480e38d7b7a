//! Training the CTA→MBF generator and the chamber-segmentation U-Net: configurations,
//! losses, learning-rate policies, checkpoints, TensorBoard events, progress, the run folder,
//! and the two loops.

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod parallel;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod seg_checkpoint;
pub mod seg_config;
pub mod seg_loss;
pub mod seg_trainer;
pub mod tensorboard;
pub mod trainer;
pub mod validate;

pub use config::TrainConfig;
pub use loss::GanMode;
pub use schedule::{LrPolicy, LrSchedule};
pub use trainer::{TrainOptions, TrainReport, train};
pub use validate::{CaseMetrics, evaluate_case};
pub use seg_config::SegConfig;
pub use seg_trainer::{SegTrainOptions, SegTrainReport, train_seg};
