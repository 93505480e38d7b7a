//! `cta2mbf train-seg`: train the chamber-segmentation U-Net from a JSON config.

use cta2mbf::config::RunConfig as _;
use super::run_args::RunArgs;
use cta2mbf::train::{SegConfig, SegTrainOptions, train_seg};

/// Arguments of `cta2mbf train-seg`; each option overrides the config file.
#[derive(Debug, clap::Args)]
pub struct TrainSegArgs {
    /// The options every training command has.
    #[command(flatten)]
    pub run: RunArgs,
    /// Filters of the first U-Net level.
    #[arg(long)]
    pub base_n_filter: Option<usize>,
    /// Hold out the last N cases when no list names the validation cases.
    #[arg(long)]
    pub val_count: Option<usize>,
}

/// The config file with the command line's overrides applied.
pub fn effective_config(args: &TrainSegArgs) -> cta2mbf::Result<SegConfig> {
    let mut cfg = SegConfig::load(&args.run.config)?;
    args.run.apply(&mut cfg.run);
    if let Some(v) = args.base_n_filter {
        cfg.net.base_n_filter = v;
    }
    if let Some(v) = args.val_count {
        cfg.val_count = v;
    }
    Ok(cfg)
}

/// Run `cta2mbf train-seg`.
pub fn run(args: TrainSegArgs, group: &cta2mbf::distributed::Group) -> cta2mbf::Result<()> {
    let opts = SegTrainOptions { config: effective_config(&args)?, device: args.run.device, devices: args.run.devices()?, run: args.run.options(), group: group.clone() };
    let report = train_seg(&opts)?;
    if !group.is_root() {
        return Ok(());
    }
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
        && let Some(mean) = m.metrics.val_mean_dice
    {
        let per: Vec<String> = m.metrics.val_dice.iter().enumerate().map(|(l, d)| format!("{}: {}", l + 1, d.map_or("-".into(), |d| format!("{d:.4}")))).collect();
        println!("train-seg: last epoch validation Dice {mean:.4} ({})", per.join(", "));
    }
    if let Some((dice, epoch)) = report.best {
        println!("train-seg: best mean validation Dice {dice:.4} at epoch {epoch} (best/)");
    }
    Ok(())
}
