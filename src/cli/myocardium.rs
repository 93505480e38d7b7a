//! `cta2mbf myocardium`: the myocardium MBF of every patient of a cohort (docs/design.md §3 step 6).

use super::print_report;
use cta2mbf::preprocess::myocardium::myocardium_cohort;
use cta2mbf::preprocess::stage::with_jobs;
use std::path::PathBuf;

/// Arguments of `cta2mbf myocardium`.
#[derive(Debug, clap::Args)]
pub struct MyocardiumArgs {
    /// Cohort root: reads `4.registration_batch` and `3.sorted_mask`, writes `5.mbf_myocardium`.
    #[arg(long)]
    pub root: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
}

/// Run `cta2mbf myocardium`.
pub fn run(args: MyocardiumArgs) -> cta2mbf::Result<()> {
    let report = with_jobs(args.jobs, || myocardium_cohort(&args.root))??;
    print_report(&report);
    report.check()
}
