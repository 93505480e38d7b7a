//! Running a trained generator on volumes.

pub mod predict;

pub use predict::predict_volume;
