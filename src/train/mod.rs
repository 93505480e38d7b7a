//! Training: one engine ([`engine`]: epoch loop, schedule, logging, metrics, checkpoint policy)
//! with one shared run setup ([`run`]) and one task per network ([`generator`]: the CTA→MBF
//! GAN; [`segmentation`]: the chamber U-Net), with their losses, TensorBoard events, progress
//! and data parallelism.

pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod generator;
pub mod loss;
pub mod metrics;
pub mod parallel;
pub mod progress;
pub mod run;
pub mod seg_loss;
pub mod segmentation;
pub mod tensorboard;
pub mod validate;

pub use crate::config::{GanMode, LrPolicy, LrSchedule, SegConfig, TrainConfig};
pub use generator::{TrainOptions, TrainReport, train};
pub use run::{RunOptions, TrainRequest};
pub use segmentation::{SegTrainOptions, SegTrainReport, train_seg};
pub use validate::{CaseMetrics, evaluate_case};
