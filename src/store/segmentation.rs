//! Segmentation checkpoints, in the shared folder layout ([`super::folder`]):
//!
//! ```text
//! <checkpoints-dir>/<name>/
//!   config.json        the effective configuration
//!   latest/            the last finished epoch
//!   best/              the epoch with the highest mean validation Dice so far
//!   epoch_<NNN>/       every `save_epoch_freq` epochs
//!     net_seg.bpk      the U-Net (burnpack)
//!     optim_seg.bpk    Adam state (absent from a shipped model)
//!     state.json       epoch, step, schedule, best Dice, and the configuration (network,
//!                      fixed grid, CTA clip + normalization)
//! ```
//! A shipped model (`models/<name>/`) is such a folder with `net_seg.bpk` and `state.json`.

use super::folder::{BEST, LATEST, RunState, STATE, load_module, read_json, save_folder, save_module, save_optim, write_json};
use crate::config::SegConfig;
use crate::error::{Error, Result};
use crate::models::UNet3d;
use crate::models::init::Initializer;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// The network file.
pub const NET: &str = "net_seg.bpk";
/// The optimizer state file.
pub const OPTIM: &str = "optim_seg.bpk";

/// Where segmentation training stands after an epoch.
pub type SegState = RunState<SegConfig>;

/// Write `run_dir/label` with the network, its optimizer state (when given) and `state`.
pub fn save(run_dir: &Path, label: &str, net: &UNet3d, optim: Option<&ModuleOptimizer>, state: &SegState) -> Result<PathBuf> {
    save_folder(run_dir, label, |tmp| {
        save_module(net, &tmp.join(NET))?;
        if let Some(o) = optim {
            save_optim(o, &tmp.join(OPTIM))?;
        }
        write_json(&tmp.join(STATE), state)
    })
}

/// The segmentation checkpoint a path names: a checkpoint folder itself, or a run folder
/// (its `best/`, else its `latest/`).
pub fn resolve_model(path: &Path) -> Result<PathBuf> {
    for candidate in [path.to_path_buf(), path.join(BEST), path.join(LATEST), path.join(format!(".old-{LATEST}"))] {
        if candidate.join(STATE).is_file() && candidate.join(NET).is_file() {
            return Ok(candidate);
        }
    }
    if !path.exists() {
        return Err(Error::format(path, "no such checkpoint"));
    }
    Err(Error::format(path, format!("not a segmentation checkpoint: no {STATE} and {NET} here or in best/ or latest/")))
}

/// Load the network and state of a checkpoint folder (or run folder) onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<(UNet3d, SegState)> {
    let dir = resolve_model(path)?;
    let state: SegState = read_json(&dir.join(STATE))?;
    state.config.net.validate().map_err(|e| Error::format(dir.join(STATE), e.to_string()))?;
    // A state.json describing a network far larger than its parameter file is refused before
    // the network is allocated.
    let net_path = dir.join(NET);
    let stored = std::fs::metadata(&net_path).map_err(|e| Error::io(&net_path, e))?.len();
    if (stored / 4) < state.config.net.largest_kernel_floats() as u64 {
        return Err(Error::format(
            dir.join(STATE),
            format!("describes a network (base_n_filter {}) larger than the {stored} bytes of {NET}", state.config.net.base_n_filter),
        ));
    }
    let mut net = state.config.net.init(&mut Initializer::new(0, device));
    load_module(&mut net, &dir.join(NET))?;
    Ok((net, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_describing_a_network_larger_than_its_file_is_refused_before_allocating() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/chamber_seg_phantom");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(shipped.join(NET), dir.path().join(NET)).unwrap();
        let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(shipped.join(STATE)).unwrap()).unwrap();
        state["config"]["net"]["base_n_filter"] = 100_000.into();
        std::fs::write(dir.path().join(STATE), state.to_string()).unwrap();
        let err = load(dir.path(), &Device::flex()).map(drop).unwrap_err().to_string();
        assert!(err.contains("base_n_filter 100000) larger than the"), "{err}");
    }
}
