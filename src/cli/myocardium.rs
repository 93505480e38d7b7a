//! `cta2mbf myocardium`: the myocardium MBF of every patient of a cohort (docs/design.md §3 step 6).

use super::print_report;
use cta2mbf::preprocess::myocardium::myocardium_cohort;
use super::args::JobsArg;
use std::path::PathBuf;

/// Arguments of `cta2mbf myocardium`.
#[derive(Debug, clap::Args)]
pub struct MyocardiumArgs {
    /// Cohort root: reads `4.registration_batch` and `3.sorted_mask`, writes `5.mbf_myocardium`.
    #[arg(long)]
    pub root: PathBuf,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// Run `cta2mbf myocardium`.
pub fn run(args: MyocardiumArgs) -> cta2mbf::Result<()> {
    let report = args.jobs.run(|| myocardium_cohort(&args.root))??;
    print_report(&report);
    report.check()
}
