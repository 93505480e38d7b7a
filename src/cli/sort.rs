//! `cta2mbf sort`: raw DICOM dump → `0.ori_3/<pid>/<SeriesInstanceUID>/<n>.dcm`.

use super::print_report;
use cta2mbf::preprocess::sort::sort_dicom;
use super::args::JobsArg;
use std::path::PathBuf;

/// Arguments of `cta2mbf sort`.
#[derive(Debug, clap::Args)]
pub struct SortArgs {
    /// The raw dump: one folder per patient, DICOM files at any depth.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The `0.ori_3` folder to fill.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// Run `cta2mbf sort`.
pub fn run(args: SortArgs) -> cta2mbf::Result<()> {
    let report = args.jobs.run(|| sort_dicom(&args.input, &args.out))??;
    print_report(&report);
    match report.failed() {
        0 => Ok(()),
        n => Err(cta2mbf::Error::invalid(format!("sort: {n} of {} patients failed (see above)", report.patients.len()))),
    }
}
