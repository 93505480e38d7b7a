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
