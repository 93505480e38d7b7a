//! Saving and loading trained networks (checkpoint folders: burnpack networks and optimizers
//! plus `state.json`), below both training, which writes them, and inference, which reads them
//! (docs/design.md §8).

pub mod generator;
pub mod segmentation;

pub use generator::{read_json, write_json};
