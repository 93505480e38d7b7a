//! Training the CTA→MBF generator: configuration, losses, learning-rate policies,
//! checkpoints, TensorBoard events, progress, and the loop itself.

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod seg_config;
pub mod seg_loss;
pub mod tensorboard;
pub mod trainer;
pub mod validate;

pub use config::TrainConfig;
pub use loss::GanMode;
pub use schedule::{LrPolicy, LrSchedule};
pub use trainer::{TrainOptions, TrainReport, train};
pub use validate::{CaseMetrics, evaluate_case};
