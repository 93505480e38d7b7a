//! The checkpoint folder layout every trained network shares (docs/design.md §8): a folder
//! per saved epoch under the run folder, written whole under a temporary name and renamed into
//! place, holding burnpack networks and optimizers and a `state.json` ([`RunState`]).

use crate::config::LrSchedule;
use crate::error::{Error, Result};
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Folder name of the checkpoint replaced after every epoch.
pub const LATEST: &str = "latest";
/// Progress and configuration.
pub const STATE: &str = "state.json";

/// Folder name of the checkpoint with the best monitored value so far.
pub const BEST: &str = "best";

/// Where a training run stands after an epoch: `state.json` of every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState<C> {
    /// Last finished epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub global_step: usize,
    /// The learning-rate schedule, with its state.
    pub schedule: LrSchedule,
    /// The best monitored value so far and its epoch (absent from generator checkpoints
    /// written before the training engine).
    #[serde(default)]
    pub best: Option<(f64, usize)>,
    /// The run's configuration.
    pub config: C,
}

/// Folder name of epoch `epoch`'s numbered checkpoint.
pub fn epoch_dir_name(epoch: usize) -> String {
    format!("epoch_{epoch:03}")
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
    // The last step's running statistics too (saved before the next forward pass applies them).
    crate::models::norm::settle_running_stats(m);
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

pub(crate) fn load_module_from<M: ModuleSnapshot>(m: &mut M, path: &Path, open: impl FnOnce(&Path) -> BurnpackStore) -> Result<()> {
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
