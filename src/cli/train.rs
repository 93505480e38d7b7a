//! `cta2mbf train`: train a CTA→MBF generator from a JSON config.

use cta2mbf::config::RunConfig as _;
use super::parse_size;
use super::run_args::RunArgs;
use cta2mbf::distributed::Group;
use cta2mbf::models::NormMode;
use cta2mbf::train::{TrainConfig, TrainOptions, train};

/// Arguments of `cta2mbf train`; each option overrides the config file.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The options every training command has.
    #[command(flatten)]
    pub run: RunArgs,
    /// Normalization mode while training: train (batch statistics) or eval (running statistics).
    #[arg(long)]
    pub norm_mode: Option<NormMode>,
    /// Training crop X,Y,Z (multiples of 8).
    #[arg(long, value_parser = parse_size)]
    pub crop_size: Option<[usize; 3]>,
    /// Train with the L1 terms only.
    #[arg(long)]
    pub no_discriminator: bool,
    /// Generator filters of the first layer.
    #[arg(long)]
    pub ngf: Option<usize>,
}

/// The config file with the command line's overrides applied.
pub fn effective_config(args: &TrainArgs) -> cta2mbf::Result<TrainConfig> {
    let mut cfg = TrainConfig::load(&args.run.config)?;
    args.run.apply(&mut cfg.run);
    if let Some(v) = args.norm_mode {
        cfg.norm_mode = v;
    }
    if let Some(v) = args.crop_size {
        cfg.crop_size = v;
    }
    if args.no_discriminator {
        cfg.discriminator = None;
    }
    if let Some(v) = args.ngf {
        cfg.generator.ngf = v;
    }
    Ok(cfg)
}

/// Run `cta2mbf train`.
pub fn run(args: TrainArgs, group: &Group) -> cta2mbf::Result<()> {
    let opts = TrainOptions { config: effective_config(&args)?, device: args.run.device, devices: args.run.devices()?, run: args.run.options(), group: group.clone() };
    let report = train(&opts)?;
    if !group.is_root() {
        return Ok(());
    }
    println!(
        "train: epochs {}..{} done; checkpoints in {}",
        report.start_epoch + 1,
        report.epoch,
        report.run_dir.display()
    );
    if let Some(m) = report.last {
        for (mode, v) in [("train", m.metrics.val_train_mode), ("eval", m.metrics.val_eval_mode)] {
            if let Some(v) = v {
                let mask = v.mae_mask.map(|x| format!(", inside the mask {x:.3}")).unwrap_or_default();
                println!("train: held-out MAE in {mode} norm mode {:.3}{mask}", v.mae);
            }
        }
    }
    Ok(())
}
