//! `cta2mbf demo`: the whole system on a synthetic cohort, in one command.

use cta2mbf::config::RunConfig as _;
use super::parse_size;
use cta2mbf::demo::{DemoOptions, run_demo};
use cta2mbf::device::DeviceChoice;
use cta2mbf::train::TrainConfig;
use std::path::PathBuf;

/// Arguments of `cta2mbf demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Cohort root to create: absent, empty, or an earlier demo's output (replaced).
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Phantom patients (default 30).
    #[arg(long)]
    pub cases: Option<usize>,
    /// Patients held out of training and predicted, the last ids (default 6).
    #[arg(long)]
    pub held_out: Option<usize>,
    /// Phantom CTA grid X,Y,Z (default 64,64,48).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<[usize; 3]>,
    /// Phantom field of view X,Y,Z in mm (default 128,128,96: centred on the heart).
    #[arg(long, value_parser = super::parse_mm)]
    pub fov: Option<[f64; 3]>,
    /// Phantom seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Training config (default: the built-in configs/phantom_demo.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Epochs of each training run (overrides the config).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `cta2mbf demo`.
pub fn run(args: DemoArgs) -> cta2mbf::Result<()> {
    let mut opts = DemoOptions::new(&args.out);
    opts.cases = args.cases.unwrap_or(opts.cases);
    opts.held_out = args.held_out.unwrap_or(opts.held_out);
    opts.size = args.size.unwrap_or(opts.size);
    opts.fov_mm = args.fov.unwrap_or(opts.fov_mm);
    opts.seed = args.seed;
    opts.device = args.device;
    opts.quiet = args.quiet;
    opts.log = super::stderr_log();
    if let Some(path) = &args.config {
        opts.config = TrainConfig::load(path)?;
    }
    if let Some(e) = args.epochs {
        opts.config.run.n_epochs = e;
    }
    let report = run_demo(&opts)?;
    println!("\nHeld-out cases {}; three variants of docs/design.md §6 (trained → inferred norm mode):\n", report.held_out.join(", "));
    print!("{}", report.table);
    for csv in &report.csvs {
        println!("csv: {}", csv.display());
    }
    println!("slice maps: open {}", report.index.display());
    println!("demo finished in {:.1} s", report.seconds);
    Ok(())
}
