//! `cta2mbf crop`: crop CTA, myocardium MBF and mask to the heart for every patient of a
//! cohort (docs/design.md §3 step 7).

use super::print_report;
use cta2mbf::preprocess::crop::crop_cohort;
use super::args::JobsArg;
use std::path::PathBuf;

/// Arguments of `cta2mbf crop`.
#[derive(Debug, clap::Args)]
pub struct CropArgs {
    /// Cohort root: reads `4.registration_batch`, `3.sorted_mask` and the myocardium MBF of
    /// `5.mbf_myocardium`, writes the cropped volumes into `5.mbf_myocardium`.
    #[arg(long)]
    pub root: PathBuf,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// Run `cta2mbf crop`.
pub fn run(args: CropArgs) -> cta2mbf::Result<()> {
    let report = args.jobs.run(|| crop_cohort(&args.root))??;
    print_report(&report);
    report.check()
}
