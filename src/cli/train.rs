//! `cta2mbf train`: train a CTA→MBF generator from a JSON config.

use super::parse_size;
use cta2mbf::device::{DeviceChoice, DeviceSpec};
use cta2mbf::models::NormMode;
use cta2mbf::train::{TrainConfig, TrainOptions, train};
use std::path::PathBuf;

/// Arguments of `cta2mbf train`; each option overrides the config file.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// JSON experiment config (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Folder of case folders, e.g. ROOT/5.mbf_myocardium.
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Normalization mode while training: train (batch statistics) or eval (running statistics).
    #[arg(long)]
    pub norm_mode: Option<NormMode>,
    /// Epochs at the initial learning rate (the config's n_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Training crop X,Y,Z (multiples of 8).
    #[arg(long, value_parser = parse_size)]
    pub crop_size: Option<[usize; 3]>,
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
    /// Train with the L1 terms only.
    #[arg(long)]
    pub no_discriminator: bool,
    /// Initial learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of initialization, order and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generator filters of the first layer.
    #[arg(long)]
    pub ngf: Option<usize>,
    /// Held-out case ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub val_cases: Option<Vec<String>>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// The config file with the command line's overrides applied.
pub fn effective_config(args: &TrainArgs) -> cta2mbf::Result<TrainConfig> {
    let mut cfg = TrainConfig::load(&args.config)?;
    if let Some(v) = &args.data_root {
        cfg.data_root = Some(v.clone());
    }
    if let Some(v) = args.norm_mode {
        cfg.norm_mode = v;
    }
    if let Some(v) = args.epochs {
        cfg.n_epochs = v;
    }
    if let Some(v) = args.crop_size {
        cfg.crop_size = v;
    }
    if let Some(v) = &args.name {
        cfg.name = v.clone();
    }
    if args.no_discriminator {
        cfg.discriminator = None;
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.seed {
        cfg.seed = v;
    }
    if let Some(v) = args.ngf {
        cfg.generator.ngf = v;
    }
    if let Some(v) = &args.val_cases {
        cfg.val_cases = v.clone();
    }
    Ok(cfg)
}

/// Run `cta2mbf train`.
pub fn run(args: TrainArgs) -> cta2mbf::Result<()> {
    let config = effective_config(&args)?;
    let opts = TrainOptions {
        tag: None,
        config,
        device: args.device,
        devices: args.devices.iter().map(|d| d.device()).collect::<cta2mbf::Result<_>>()?,
        checkpoints_dir: args.checkpoints_dir.clone(),
        continue_train: args.continue_train,
        quiet: args.quiet,
    };
    let report = train(&opts)?;
    println!(
        "train: epochs {}..{} done; checkpoints in {}",
        report.start_epoch + 1,
        report.epoch,
        report.run_dir.display()
    );
    if let Some(m) = report.last {
        for (mode, v) in [("train", m.val_train_mode), ("eval", m.val_eval_mode)] {
            if let Some(v) = v {
                let mask = v.mae_mask.map(|x| format!(", inside the mask {x:.3}")).unwrap_or_default();
                println!("train: held-out MAE in {mode} norm mode {:.3}{mask}", v.mae);
            }
        }
    }
    Ok(())
}
