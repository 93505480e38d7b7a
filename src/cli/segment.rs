//! `cta2mbf segment`: chamber masks from CTA, for a `3.sorted_nii` folder or one volume.

use super::print_report;
use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::Segmenter;
use cta2mbf::preprocess::segment::{segment_cohort, segment_file};
use super::args::QcArgs;
use cta2mbf::preprocess::mask_qc::check_files;
use std::path::{Path, PathBuf};

/// Arguments of `cta2mbf segment`.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Segmentation checkpoint: a checkpoint folder, a run folder (its best/), or a shipped
    /// model folder such as models/chamber_seg_phantom.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The `3.sorted_nii` folder (each `<pid>/CTA.nii.gz` is segmented).
    #[arg(long = "in", requires = "out", conflicts_with_all = ["input", "output"], required_unless_present = "input")]
    pub input_root: Option<PathBuf>,
    /// The `3.sorted_mask` folder to fill.
    #[arg(long, requires = "input_root")]
    pub out: Option<PathBuf>,
    /// Segment this one CTA file instead.
    #[arg(long, requires = "output")]
    pub input: Option<PathBuf>,
    /// The label map to write for `--input` (uint8 NIfTI).
    #[arg(long, requires = "input")]
    pub output: Option<PathBuf>,
    /// For `--input`: also write the largest-component version here.
    #[arg(long, requires = "input")]
    pub connected: Option<PathBuf>,
    /// For `--input --connected`: also check the connected mask and write its QC figures
    /// (JSON) here.
    #[arg(long, value_name = "JSON", requires = "connected")]
    pub qc_out: Option<PathBuf>,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Quality control of the cohort's masks.
    #[command(flatten)]
    pub qc: QcArgs,
}

/// Check the mask `mask` (with `raw`, the mask before the connected step) and write the
/// figures to `out`; print the verdict. A failing mask is an error unless accepted.
pub fn report_qc(mask: &Path, raw: Option<&Path>, out: &Path, args: &QcArgs) -> cta2mbf::Result<()> {
    let policy = args.policy()?;
    let qc = check_files(mask, raw, out, &policy.ranges)?;
    print_report(format!("qc: {} -> {}: {qc}", mask.display(), out.display()));
    if qc.passed() || policy.accept_failures {
        return Ok(());
    }
    Err(cta2mbf::Error::format(mask, format!("{} (pass --accept-qc-failures to use the mask anyway)", qc.verdict())))
}

/// Run `cta2mbf segment`.
pub fn run(args: SegmentArgs) -> cta2mbf::Result<()> {
    let model = Segmenter::load(&args.checkpoint, &args.device.device()?)?;
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        let written = segment_file(&model, input, output, args.connected.as_deref())?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        print_report(format!("segment: {} -> {}", input.display(), names.join(", ")));
        return match (&args.qc_out, &args.connected) {
            (Some(qc_out), Some(connected)) => report_qc(connected, Some(output), qc_out, &args.qc),
            _ => Ok(()),
        };
    }
    let (input, out) = (args.input_root.as_ref().expect("clap requires --in"), args.out.as_ref().expect("clap requires --out"));
    let report = segment_cohort(&model, input, out, &args.qc.policy()?)?;
    print_report(&report);
    report.check()
}
