//! `cta2mbf extract`: pick each patient's CTA, BF, AVG and MIP series into `3.sorted_dcm`.

use super::print_report;
use cta2mbf::preprocess::annotation::Annotation;
use cta2mbf::preprocess::extract::{DEFAULT_MIN_FILES, ExtractOptions, extract_modalities};
use super::args::JobsArg;
use std::path::PathBuf;

/// Arguments of `cta2mbf extract`.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// The `0.ori_3` folder written by `sort`.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The `3.sorted_dcm` folder to fill.
    #[arg(long)]
    pub out: PathBuf,
    /// Annotation table (CSV or .xlsx) naming each patient's CTA, MIP, AVG and BF series.
    #[arg(long)]
    pub annotation: Option<PathBuf>,
    /// Series with fewer files are ignored when choosing by ImageType.
    #[arg(long, default_value_t = DEFAULT_MIN_FILES)]
    pub min_files: usize,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// Run `cta2mbf extract`.
pub fn run(args: ExtractArgs) -> cta2mbf::Result<()> {
    let annotation = args.annotation.as_deref().map(Annotation::read).transpose()?;
    let options = ExtractOptions { annotation, min_files: args.min_files };
    let report = args.jobs.run(|| extract_modalities(&args.input, &args.out, &options))??;
    print_report(&report);
    match report.skipped() {
        0 => Ok(()),
        n => Err(cta2mbf::Error::invalid(format!("extract: {n} of {} patients skipped (see above)", report.patients.len()))),
    }
}
