//! `cta2mbf train-seg`: train the chamber-segmentation U-Net from a JSON config.

use cta2mbf::device::{DeviceChoice, DeviceSpec};
use cta2mbf::train::{SegConfig, SegTrainOptions, train_seg};
use std::path::PathBuf;

/// Arguments of `cta2mbf train-seg`; each option overrides the config file.
#[derive(Debug, clap::Args)]
pub struct TrainSegArgs {
    /// JSON config (see configs/chamber_seg_phantom.json).
    #[arg(long)]
    pub config: PathBuf,
    /// Folder of case folders, e.g. ROOT/3.sorted_mask.
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Epochs (the config's n_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Data-parallel training on several devices, comma-separated (as `train --devices`).
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
    /// Seed of initialization, order, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Filters of the first U-Net level.
    #[arg(long)]
    pub base_n_filter: Option<usize>,
    /// Held-out case ids, comma-separated (instead of config/val.txt or val_count).
    #[arg(long, value_delimiter = ',')]
    pub val_cases: Option<Vec<String>>,
    /// Hold out the last N cases when no list names the validation cases.
    #[arg(long)]
    pub val_count: Option<usize>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// The config file with the command line's overrides applied.
pub fn effective_config(args: &TrainSegArgs) -> cta2mbf::Result<SegConfig> {
    let mut cfg = SegConfig::load(&args.config)?;
    if let Some(v) = &args.data_root {
        cfg.data_root = Some(v.clone());
    }
    if let Some(v) = args.epochs {
        cfg.n_epochs = v;
    }
    if let Some(v) = &args.name {
        cfg.name = v.clone();
    }
    if let Some(v) = args.lr {
        cfg.lr = v;
    }
    if let Some(v) = args.seed {
        cfg.seed = v;
    }
    if let Some(v) = args.base_n_filter {
        cfg.net.base_n_filter = v;
    }
    if let Some(v) = &args.val_cases {
        cfg.val_cases = v.clone();
    }
    if let Some(v) = args.val_count {
        cfg.val_count = v;
    }
    Ok(cfg)
}

/// Run `cta2mbf train-seg`.
pub fn run(args: TrainSegArgs) -> cta2mbf::Result<()> {
    let config = effective_config(&args)?;
    let opts = SegTrainOptions {
        config,
        device: args.device,
        devices: args.devices.iter().map(|d| d.device()).collect::<cta2mbf::Result<_>>()?,
        checkpoints_dir: args.checkpoints_dir.clone(),
        continue_train: args.continue_train,
        quiet: args.quiet,
    };
    let report = train_seg(&opts)?;
    println!(
        "train-seg: epochs {}..{} done in {:.1} s ({} training, {} validation cases); checkpoints in {}",
        report.start_epoch + 1,
        report.epoch,
        report.seconds,
        report.split.0.len(),
        report.split.1.len(),
        report.run_dir.display()
    );
    if let Some(m) = &report.last
        && let Some(mean) = m.val_mean_dice
    {
        let per: Vec<String> = m.val_dice.iter().enumerate().map(|(l, d)| format!("{}: {}", l + 1, d.map_or("-".into(), |d| format!("{d:.4}")))).collect();
        println!("train-seg: last epoch validation Dice {mean:.4} ({})", per.join(", "));
    }
    if let Some((dice, epoch)) = report.best {
        println!("train-seg: best mean validation Dice {dice:.4} at epoch {epoch} (best/)");
    }
    Ok(())
}
