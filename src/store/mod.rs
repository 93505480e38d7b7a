//! Saving and loading trained networks (checkpoint folders: burnpack networks and optimizers
//! plus `state.json`), below both training, which writes them, and inference, which reads them
//! (docs/design.md §8).

pub mod folder;
pub mod generator;
pub mod segmentation;

pub use folder::{BEST, LATEST, RunState, STATE, epoch_dir_name, read_json, resolve, write_json};
