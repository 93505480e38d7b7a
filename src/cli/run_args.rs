//! The options every training command shares (`train`, `train-seg`): the config file, the
//! run folder, the devices and the overrides of the shared settings block.

use cta2mbf::config::RunSettings;
use cta2mbf::device::{DeviceChoice, DeviceSpec};
use cta2mbf::train::RunOptions;
use std::path::PathBuf;

/// Options of a training command; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// JSON config (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Folder of case folders (ROOT/5.mbf_myocardium for `train`, ROOT/3.sorted_mask for `train-seg`).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Epochs at the initial learning rate (the config's n_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Data-parallel training on several devices, comma-separated (e.g. `wgpu:0,wgpu:1`: the
    /// first two discrete GPUs; `wgpu:default`, `wgpu:cpu`, `wgpu:integrated:N`, `vulkan:N`):
    /// each step takes batch_size samples per device and averages the gradients, as PyTorch DDP.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    pub devices: Vec<DeviceSpec>,
    /// Run name (folder under --checkpoints-dir).
    #[arg(long)]
    pub name: Option<String>,
    /// Parent folder of runs.
    #[arg(long, default_value = "checkpoints")]
    pub checkpoints_dir: PathBuf,
    /// Resume the run from its latest checkpoint.
    #[arg(long)]
    pub continue_train: bool,
    /// Initial learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of initialization, order, augmentation (and dropout).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Held-out case ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub val_cases: Option<Vec<String>>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// Apply the overrides to the shared settings of a config.
    pub fn apply(&self, run: &mut RunSettings) {
        if let Some(v) = &self.data_root {
            run.data_root = Some(v.clone());
        }
        if let Some(v) = self.epochs {
            run.n_epochs = v;
        }
        if let Some(v) = &self.name {
            run.name = v.clone();
        }
        if let Some(v) = self.lr {
            run.lr = v;
        }
        if let Some(v) = self.seed {
            run.seed = v;
        }
        if let Some(v) = &self.val_cases {
            run.val_cases = v.clone();
        }
    }

    /// The run folder and reporting options.
    pub fn options(&self) -> RunOptions {
        RunOptions { checkpoints_dir: self.checkpoints_dir.clone(), continue_train: self.continue_train, quiet: self.quiet, tag: None, log: super::stderr_log() }
    }

    /// The data-parallel devices (empty without `--devices`).
    pub fn devices(&self) -> cta2mbf::Result<Vec<burn::tensor::Device>> {
        self.devices.iter().map(|d| d.device()).collect()
    }
}
