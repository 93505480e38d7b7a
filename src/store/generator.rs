//! Checkpoints: a folder per saved epoch under the run folder, written whole under a
//! temporary name and renamed into place, so a checkpoint is either complete or absent.
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

use crate::config::{LrSchedule, TrainConfig};
use crate::error::{Error, Result};
use crate::models::init::Initializer;
use crate::models::{Discriminator, Generator};
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Folder name of the checkpoint replaced after every epoch.
pub const LATEST: &str = "latest";
/// Generator file inside a checkpoint folder.
pub const NET_G: &str = "net_G.bpk";
/// Discriminator file.
pub const NET_D: &str = "net_D.bpk";
/// Generator optimizer state.
pub const OPTIM_G: &str = "optim_G.bpk";
/// Discriminator optimizer state.
pub const OPTIM_D: &str = "optim_D.bpk";
/// Progress and configuration.
pub const STATE: &str = "state.json";

/// Where training stands after an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Last finished epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub global_step: usize,
    /// The learning-rate schedule, with its state.
    pub schedule: LrSchedule,
    /// The run's configuration.
    pub config: TrainConfig,
}

/// Folder name of epoch `epoch`'s numbered checkpoint.
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch_{epoch:03}")
}

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

/// Create the folder `run_dir/label` whole: `write` fills a temporary folder, which then
/// replaces the old one, so a checkpoint folder is either complete or absent.
pub fn save_folder(run_dir: &Path, label: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let final_dir = run_dir.join(label);
    let tmp = run_dir.join(format!(".tmp-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Move the previous folder aside, the new one in, then drop the old one. A crash between
    // the two renames leaves `.old-<label>`, which `resolve` falls back to.
    let old = run_dir.join(format!(".old-{label}"));
    let _ = std::fs::remove_dir_all(&old);
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(final_dir)
}

/// Write `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("state serializes");
    std::fs::write(path, json).map_err(|e| Error::io(path, e))
}

/// Read a JSON file into `T`; a parse error names the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// Save a network's parameters to a burnpack file.
pub fn save_module<M: ModuleSnapshot>(m: &M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false).overwrite(true);
    m.save_into(&mut store).map_err(|e| Error::format(path, format!("cannot save network: {e}")))
}

/// Save an optimizer's state.
pub fn save_optim(o: &ModuleOptimizer, path: &Path) -> Result<()> {
    o.save(path).map_err(|e| Error::format(path, format!("cannot save optimizer state: {e:?}")))
}

/// The checkpoint folder a path names: a checkpoint folder itself, or a run folder (its
/// `latest`).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE).is_file() {
        return Ok(path.to_path_buf());
    }
    for candidate in [path.join(LATEST), path.join(format!(".old-{LATEST}"))] {
        if candidate.join(STATE).is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::format(path, "not a cta2mbf checkpoint: no state.json here or in latest/"))
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

/// Load an optimizer state saved beside the networks.
pub fn load_optimizer(path: &Path, adam: &AdamConfig) -> Result<ModuleOptimizer> {
    if !path.is_file() {
        return Err(Error::format(path, "missing optimizer state"));
    }
    adam.init().load(path).map_err(|e| Error::format(path, format!("cannot read optimizer state: {e:?}")))
}

/// Load a network's parameters from a burnpack file; every parameter must match.
pub fn load_module<M: ModuleSnapshot>(m: &mut M, path: &Path) -> Result<()> {
    load_module_from(m, path, |path| BurnpackStore::from_file(path).auto_extension(false))
}

fn load_module_from<M: ModuleSnapshot>(m: &mut M, path: &Path, open: impl FnOnce(&Path) -> BurnpackStore) -> Result<()> {
    if !path.is_file() {
        return Err(Error::format(path, "missing network file"));
    }
    let mut store = open(path);
    let result = m.load_from(&mut store).map_err(|e| Error::format(path, format!("cannot read network: {e}")))?;
    if !result.is_success() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(Error::format(path, format!(
            "network does not match its configuration: missing {:?}, unexpected {:?}, errors {:?}",
            result.missing, result.unused, result.errors
        )));
    }
    Ok(())
}
