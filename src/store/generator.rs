//! Generator checkpoints, in the shared folder layout ([`super::folder`]):
//!
//! ```text
//! <checkpoints-dir>/<name>/
//!   config.json               the effective configuration of the run
//!   latest/                   the last finished epoch (replaced every epoch)
//!   epoch_<NNN>/              every `save_epoch_freq` epochs
//!     net_G.bpk  net_D.bpk    generator / discriminator (Burn's burnpack, parameter ids kept)
//!     optim_G.bpk optim_D.bpk Adam state
//!     state.json              epoch, global step, learning-rate schedule, configuration
//! ```

use super::folder::{RunState, STATE, load_module, load_module_from, read_json, save_folder, save_module, save_optim, write_json};
use crate::config::TrainConfig;
use crate::error::Result;
use crate::models::init::Initializer;
use crate::models::{Discriminator, Generator};
use burn::optim::ModuleOptimizer;
use burn::store::BurnpackStore;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// Generator file inside a checkpoint folder.
pub const NET_G: &str = "net_G.bpk";
/// Discriminator file.
pub const NET_D: &str = "net_D.bpk";
/// Generator optimizer state.
pub const OPTIM_G: &str = "optim_G.bpk";
/// Discriminator optimizer state.
pub const OPTIM_D: &str = "optim_D.bpk";
/// Where generator training stands after an epoch.
pub type TrainState = RunState<TrainConfig>;

/// The networks and optimizers to save.
pub struct CheckpointParts<'a> {
    /// The generator.
    pub generator: &'a Generator,
    /// The discriminator, when trained.
    pub discriminator: Option<&'a Discriminator>,
    /// The generator's optimizer.
    pub optim_g: &'a ModuleOptimizer,
    /// The discriminator's optimizer.
    pub optim_d: Option<&'a ModuleOptimizer>,
    /// Progress.
    pub state: &'a TrainState,
}

/// Write a checkpoint folder `run_dir/label` atomically (temporary folder, then rename).
pub fn save(run_dir: &Path, label: &str, parts: &CheckpointParts) -> Result<PathBuf> {
    save_folder(run_dir, label, |tmp| {
        save_module(parts.generator, &tmp.join(NET_G))?;
        save_optim(parts.optim_g, &tmp.join(OPTIM_G))?;
        if let (Some(d), Some(o)) = (parts.discriminator, parts.optim_d) {
            save_module(d, &tmp.join(NET_D))?;
            save_optim(o, &tmp.join(OPTIM_D))?;
        }
        write_json(&tmp.join(STATE), parts.state)
    })
}

/// Read a checkpoint's progress and configuration.
pub fn load_state(dir: &Path) -> Result<TrainState> {
    read_json(&dir.join(STATE))
}

/// Load the generator of a checkpoint folder onto `device`.
pub fn load_generator(dir: &Path, device: &Device) -> Result<(Generator, TrainState)> {
    let state = load_state(dir)?;
    let mut g = state.config.generator.init(&mut Initializer::new(0, device));
    // Checkpoints written before the U-Net existed stored the ResNet at the top level.
    let store = |path: &Path| BurnpackStore::from_file(path).auto_extension(false).with_remap_pattern(r"^(stem|down|blocks|up|head)\.", "Resnet.$1.");
    load_module_from(&mut g, &dir.join(NET_G), store)?;
    Ok((g, state))
}

/// Load the discriminator of a checkpoint folder, when the run has one.
pub fn load_discriminator(dir: &Path, state: &TrainState, device: &Device) -> Result<Option<Discriminator>> {
    let Some(cfg) = &state.config.discriminator else { return Ok(None) };
    let mut d = cfg.init(&mut Initializer::new(0, device), 2);
    load_module(&mut d, &dir.join(NET_D))?;
    Ok(Some(d))
}

