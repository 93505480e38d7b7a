//! The `cta2mbf` command line: a thin layer over the library, one file per subcommand.

mod bench;
mod info;
mod phantom;
mod train;

use clap::{Parser, Subcommand};

/// cta2mbf: cardiac CTA → myocardial blood flow. Preprocessing stages and 3-D networks in Burn.
#[derive(Debug, Parser)]
#[command(name = "cta2mbf", version, about, long_about = None)]
pub struct Cli {
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic cardiac cohort (CTA, misaligned perfusion, masks, crops, truth).
    Phantom(phantom::PhantomArgs),
    /// Describe a NIfTI file: shape, datatype, spacing, origin, direction, value range.
    Info(info::InfoArgs),
    /// Train a CTA→MBF generator (pix2pix-style) from a JSON config.
    Train(train::TrainArgs),
    /// Time generator inference and one training step; GFLOP/s and peak memory.
    Bench(bench::BenchArgs),
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> cta2mbf::Result<()> {
    match cli.command {
        Command::Phantom(args) => phantom::run(args),
        Command::Info(args) => info::run(args),
        Command::Train(args) => train::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Parse `X,Y,Z` into three positive integers.
pub fn parse_size(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split([',', 'x']).collect();
    if parts.len() != 3 {
        return Err(format!("expected X,Y,Z (three integers), got '{s}'"));
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.trim().parse().map_err(|_| format!("'{p}' is not a positive integer"))?;
        if *o == 0 {
            return Err("sizes must be positive".into());
        }
    }
    Ok(out)
}
