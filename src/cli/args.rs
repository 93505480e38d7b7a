//! Argument groups that several subcommands flatten into their own arguments.

use cta2mbf::preprocess::stage::with_jobs;

/// `--jobs`: how many worker threads a stage uses.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JobsArg {
    /// Worker threads (default: one per core).
    #[arg(long = "jobs")]
    pub jobs: Option<usize>,
}

impl JobsArg {
    /// Run `f` on a pool of this many threads (the global pool without `--jobs`).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> cta2mbf::Result<T> {
        with_jobs(self.jobs, f)
    }
}

/// Mask quality control: the ranges and whether a failing mask may go on.
#[derive(Debug, Clone, clap::Args)]
pub struct QcArgs {
    /// Use masks that fail quality control anyway (their figures are still written and shown).
    #[arg(long)]
    pub accept_qc_failures: bool,
    /// QC ranges as JSON (every field of the defaults in docs/design.md §3) instead of the
    /// adult defaults.
    #[arg(long, value_name = "JSON")]
    pub qc_ranges: Option<std::path::PathBuf>,
}

impl QcArgs {
    /// The library's policy for these arguments.
    pub fn policy(&self) -> cta2mbf::Result<cta2mbf::preprocess::mask_qc::QcPolicy> {
        cta2mbf::preprocess::mask_qc::QcPolicy::new(self.qc_ranges.as_deref(), self.accept_qc_failures)
    }

    /// Check the mask file `mask` (with `raw`, the mask before the connected step), write the
    /// figures to `out` and print the verdict; a failing mask is an error unless accepted.
    pub fn check_file(&self, mask: &std::path::Path, raw: Option<&std::path::Path>, out: &std::path::Path) -> cta2mbf::Result<()> {
        let policy = self.policy()?;
        let qc = cta2mbf::preprocess::mask_qc::check_files(mask, raw, out, &policy.ranges)?;
        super::print_report(format!("qc: {} -> {}: {qc}", mask.display(), out.display()));
        policy.enforce(&qc, mask)
    }
}
