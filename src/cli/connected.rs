//! `cta2mbf connected`: keep the largest face-connected component of each listed label, for
//! one mask or every patient of a `3.sorted_mask` folder.

use super::print_report;
use cta2mbf::preprocess::connected::{DEFAULT_LABELS, connected_cohort, connected_file, sorted_mask_folder};
use super::args::{JobsArg, QcArgs};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `cta2mbf connected`.
#[derive(Debug, clap::Args)]
pub struct ConnectedArgs {
    /// The label map to clean.
    #[arg(long = "in", requires = "out", conflicts_with = "root", required_unless_present = "root")]
    pub input: Option<PathBuf>,
    /// The cleaned label map to write (uint8).
    #[arg(long, requires = "input")]
    pub out: Option<PathBuf>,
    /// A cohort root (or its `3.sorted_mask`): every `<pid>/CTA/CTA_MASK.nii.gz` becomes
    /// `CTA_MASK_connected.nii.gz`.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The labels to clean; other labels are copied unchanged.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_LABELS)]
    pub labels: Vec<u8>,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
    /// Quality control of the cohort's masks.
    #[command(flatten)]
    pub qc: QcArgs,
    /// For `--in`: also check the cleaned mask and write its QC figures (JSON) here, with
    /// `--in` as the raw mask.
    #[arg(long, value_name = "JSON", requires = "input")]
    pub qc_out: Option<PathBuf>,
}

/// Run `cta2mbf connected`.
pub fn run(args: ConnectedArgs) -> cta2mbf::Result<()> {
    if let Some(root) = &args.root {
        let folder = sorted_mask_folder(root);
        let qc = args.qc.policy()?;
        let report = args.jobs.run(|| connected_cohort(&folder, &args.labels, &qc))??;
        print_report(&report);
        return report.check();
    }
    let (input, out) = (args.input.as_ref().expect("clap requires --in"), args.out.as_ref().expect("clap requires --out"));
    let start = Instant::now();
    let components = connected_file(input, out, &args.labels)?;
    print_report(format!(
        "connected: {} -> {} (labels {:?}): components in {:.3} s, {:.3} s with reading and writing",
        input.display(),
        out.display(),
        args.labels,
        components.as_secs_f64(),
        start.elapsed().as_secs_f64()
    ));
    match &args.qc_out {
        Some(path) => args.qc.check_file(out, Some(input), path),
        None => Ok(()),
    }
}
