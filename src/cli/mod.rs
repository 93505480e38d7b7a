//! The `cta2mbf` command line: a thin layer over the library, one file per subcommand.

mod analyze;
mod args;
mod bench;
mod connected;
mod convert;
mod crop;
mod demo;
mod export;
mod extract;
mod infer;
mod info;
mod myocardium;
mod phantom;
mod pipeline;
mod register;
mod run_args;
mod segment;
mod slicemap;
mod sort;
mod train;
mod train_seg;

use clap::{Parser, Subcommand};

/// The lines of long-running library calls (training epochs, demo stages), on stderr.
pub fn stderr_log() -> cta2mbf::train::progress::Log {
    cta2mbf::train::progress::Log::new(|line| eprintln!("{line}"))
}

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
    /// The whole system on a phantom cohort: train twice, three inference variants, scores, slice maps.
    Demo(demo::DemoArgs),
    /// Generate a synthetic cardiac cohort (CTA, misaligned perfusion, masks, crops, truth).
    Phantom(phantom::PhantomArgs),
    /// Describe a NIfTI file or a DICOM series folder: shape, spacing, origin, direction, values.
    Info(info::InfoArgs),
    /// Train a CTA→MBF generator (pix2pix-style) from a JSON config.
    Train(train::TrainArgs),
    /// Run a trained generator (cta2mbf checkpoint, reference .pth, exported file) over a folder of cases or one volume, in train or eval norm mode.
    Infer(infer::InferArgs),
    /// Write a generator, or the reference's segmentation network, as one safetensors or burnpack file with the reference's PyTorch names.
    Export(export::ExportArgs),
    /// Score inference folders (MAE, MAE in the myocardium, PSNR, SSIM) and compare variants.
    Analyze(analyze::AnalyzeArgs),
    /// PNG slice maps, montages and a browser page of inference folders.
    Slicemap(slicemap::SlicemapArgs),
    /// Time generator inference and one training step; GFLOP/s and peak memory.
    Bench(bench::BenchArgs),
    /// Sort a raw DICOM dump by patient and SeriesInstanceUID into `0.ori_3`.
    Sort(sort::SortArgs),
    /// From a raw DICOM dump to training pairs: sort → extract → convert → register → segment → connected → myocardium → crop, resumable.
    Pipeline(pipeline::PipelineArgs),
    /// Register the perfusion MIP to the CTA (affine + B-spline) and move AVG and BF along (→ `4.registration_batch`).
    Register(register::RegisterArgs),
    /// Pick each patient's CTA, BF, AVG and MIP series from `0.ori_3` into `3.sorted_dcm`.
    Extract(extract::ExtractArgs),
    /// Convert DICOM series to NIfTI (`3.sorted_dcm` → `3.sorted_nii`, or one series).
    Convert(convert::ConvertArgs),
    /// Train the chamber-segmentation U-Net from a JSON config.
    TrainSeg(train_seg::TrainSegArgs),
    /// Chamber masks from CTA (`3.sorted_nii` → `3.sorted_mask`, or one volume), by the network or imported from TotalSegmentator or another tool.
    Segment(segment::SegmentArgs),
    /// Keep the largest face-connected component of each listed label (one mask or a cohort).
    Connected(connected::ConnectedArgs),
    /// Myocardium MBF from registered BF and the chamber mask (→ `5.mbf_myocardium`).
    Myocardium(myocardium::MyocardiumArgs),
    /// Crop CTA, myocardium MBF and mask to the heart (→ `5.mbf_myocardium/cropped_*`).
    Crop(crop::CropArgs),
}

/// Run the parsed command line. Under an MPI launcher (`mpirun -np N`, `srun`) `train`,
/// `train-seg` and `pipeline` run as one job over the ranks; any other command is refused there
/// (each process would do the whole work). A rank that fails prints its error and ends every
/// rank of the job; a failure every rank reaches together (the pipeline's failed patients)
/// ends each rank by itself, with exit status 1.
pub fn run(cli: Cli) -> cta2mbf::Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    let world = cta2mbf::distributed::world(&command)?;
    let group = world.group();
    let result = if group.is_distributed() && !matches!(cli.command, Command::Train(_) | Command::TrainSeg(_) | Command::Pipeline(_)) {
        Err(cta2mbf::Error::invalid(format!("{command} does not run across processes (launched as {} MPI ranks): only train, train-seg and pipeline do", group.size())))
    } else {
        run_command(cli.command, &group)
    };
    match result {
        // An end every rank reached together: each rank ends with it by itself.
        Ok(together) => together,
        Err(e) => {
            if group.is_distributed() {
                eprintln!("cta2mbf: error: rank {} of {}: {e}", group.rank(), group.size());
                group.abort(1);
            }
            Err(e)
        }
    }
}

/// Run one command: `Err` is a failure of this process alone (under MPI it ends the job),
/// `Ok(Err)` one that every rank of the job reached together (the pipeline's agreed setup
/// errors and failed patients).
fn run_command(command: Command, group: &cta2mbf::distributed::Group) -> cta2mbf::Result<cta2mbf::Result<()>> {
    let alone = match command {
        Command::Demo(args) => demo::run(args),
        Command::Phantom(args) => phantom::run(args),
        Command::Info(args) => info::run(args),
        Command::Train(args) => train::run(args, group),
        Command::Infer(args) => infer::run(args),
        Command::Export(args) => export::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Slicemap(args) => slicemap::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Sort(args) => sort::run(args),
        Command::Pipeline(args) => return pipeline::run(args, group),
        Command::Register(args) => register::run(args),
        Command::Extract(args) => extract::run(args),
        Command::Convert(args) => convert::run(args),
        Command::TrainSeg(args) => train_seg::run(args, group),
        Command::Segment(args) => segment::run(args),
        Command::Connected(args) => connected::run(args),
        Command::Myocardium(args) => myocardium::run(args),
        Command::Crop(args) => crop::run(args),
    };
    alone.map(Ok)
}

/// The end of a command that went on past failing cases: an error (exit status 1) when
/// `failed` of the `total` cases failed, after everything else was written.
pub fn cases_failed(command: &str, failed: usize, total: usize) -> cta2mbf::Result<()> {
    match failed {
        0 => Ok(()),
        n => Err(cta2mbf::Error::invalid(format!("{command}: {n} of {total} cases failed (see above)"))),
    }
}

/// Print a stage's report on standard output (a closed pipe is not an error).
pub fn print_report(report: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{report}");
}

/// Parse `X,Y,Z` (or `XxYxZ`) into three positive values; `what` names them in errors.
fn parse_xyz<T: std::str::FromStr + PartialOrd + Default + Copy>(s: &str, what: &str) -> Result<[T; 3], String> {
    let parts: Vec<&str> = s.split([',', 'x']).collect();
    if parts.len() != 3 {
        return Err(format!("expected X,Y,Z (three {what}s), got '{s}'"));
    }
    let mut out = [T::default(); 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.trim().parse().map_err(|_| format!("'{p}' is not a positive {what}"))?;
        if !(*o > T::default()) {
            return Err("sizes must be positive".into());
        }
    }
    Ok(out)
}

/// Parse `X,Y,Z` into three positive integers.
pub fn parse_size(s: &str) -> Result<[usize; 3], String> {
    parse_xyz(s, "integer")
}

/// Parse one positive number.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

/// Parse `X,Y,Z` into three positive numbers (millimetres).
pub fn parse_mm(s: &str) -> Result<[f64; 3], String> {
    parse_xyz(s, "number")
}
