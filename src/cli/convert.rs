//! `cta2mbf convert`: DICOM series → NIfTI, for a whole `3.sorted_dcm` folder or one series.

use super::print_report;
use cta2mbf::preprocess::convert::{convert_cohort, convert_series};
use super::args::JobsArg;
use std::path::PathBuf;

/// Arguments of `cta2mbf convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The `3.sorted_dcm` folder written by `extract`.
    #[arg(long = "in", requires = "out", conflicts_with_all = ["series", "output"], required_unless_present = "series")]
    pub input: Option<PathBuf>,
    /// The `3.sorted_nii` folder to fill.
    #[arg(long, requires = "input")]
    pub out: Option<PathBuf>,
    /// Convert this one series folder instead (its DICOM files, like dcm2niix).
    #[arg(long, requires = "output")]
    pub series: Option<PathBuf>,
    /// The NIfTI file to write for `--series` (`.nii` or `.nii.gz`).
    #[arg(long, requires = "series")]
    pub output: Option<PathBuf>,
    /// Refuse series whose slices do not form one volume (different orientations, two slices
    /// at one position) instead of stacking them as ITK's ImageSeriesReader does.
    #[arg(long)]
    pub strict: bool,
    /// Worker threads.
    #[command(flatten)]
    pub jobs: JobsArg,
}

/// Run `cta2mbf convert`.
pub fn run(args: ConvertArgs) -> cta2mbf::Result<()> {
    if let (Some(series), Some(output)) = (&args.series, &args.output) {
        let c = args.jobs.run(|| convert_series(series, output, args.strict))??;
        let mut text = format!("convert: {} -> {} ({}x{}x{}, {})\n", series.display(), c.output.display(), c.size[0], c.size[1], c.size[2], c.dtype.name());
        for w in &c.warnings {
            text.push_str(&format!("  warning: {w}\n"));
        }
        for (path, why) in &c.skipped {
            text.push_str(&format!("  skipped {}: {why}\n", path.display()));
        }
        print_report(text.trim_end());
        return Ok(());
    }
    let (input, out) = (args.input.as_ref().expect("clap requires --in"), args.out.as_ref().expect("clap requires --out"));
    let report = args.jobs.run(|| convert_cohort(input, out, args.strict))??;
    print_report(&report);
    match report.failed() {
        0 => Ok(()),
        n => Err(cta2mbf::Error::invalid(format!("convert: {n} series failed (see above)"))),
    }
}
