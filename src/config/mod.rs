//! The settings of a training run, read from JSON and saved in every checkpoint: the generator
//! run's ([`TrainConfig`]), the segmentation run's ([`SegConfig`]), the block they share
//! ([`RunSettings`]) and the learning-rate schedule ([`LrSchedule`]). They sit below training and the checkpoint store.

pub mod generator;
pub mod run;
pub mod schedule;
pub mod segmentation;

pub use generator::{GanMode, TrainConfig};
pub use run::{RunConfig, RunSettings};
pub use schedule::{LrPolicy, LrSchedule};
pub use segmentation::SegConfig;
