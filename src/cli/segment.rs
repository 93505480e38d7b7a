//! `cta2mbf segment`: chamber masks from CTA, for a `3.sorted_nii` folder or one volume.

use super::print_report;
use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::Segmenter;
use cta2mbf::preprocess::segment::{segment_cohort, segment_file};
use std::path::PathBuf;

/// Arguments of `cta2mbf segment`.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Segmentation network: a checkpoint folder, a run folder (its best/), a shipped model
    /// folder such as models/chamber_seg_phantom (trained on the phantom only), or the
    /// reference's network in one file: its PyTorch `.pth` (run on 256³, raw HU) or a file
    /// written by `cta2mbf export`.
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
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

/// Run `cta2mbf segment`.
pub fn run(args: SegmentArgs) -> cta2mbf::Result<()> {
    let model = Segmenter::load(&args.checkpoint, &args.device.device()?)?;
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        let written = segment_file(&model, input, output, args.connected.as_deref())?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        print_report(format!("segment: {} -> {}", input.display(), names.join(", ")));
        return Ok(());
    }
    let (input, out) = (args.input_root.as_ref().expect("clap requires --in"), args.out.as_ref().expect("clap requires --out"));
    let report = segment_cohort(&model, input, out)?;
    print_report(&report);
    report.check()
}
