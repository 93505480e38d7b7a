//! `cta2mbf segment`: chamber masks from CTA, for a `3.sorted_nii` folder or one volume, by
//! the network or imported from TotalSegmentator or another tool's label files.

use super::print_report;
use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::Segmenter;
use cta2mbf::preprocess::label_map::LabelMap;
use cta2mbf::preprocess::mask_import::{MaskFormat, MaskSource, import_cohort, import_file};
use cta2mbf::preprocess::segment::{segment_cohort, segment_file};
use super::args::QcArgs;
use std::path::{Path, PathBuf};

/// Arguments of `cta2mbf segment`.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// Segmentation network: a checkpoint folder, a run folder (its best/), a shipped model
    /// folder such as models/chamber_seg_phantom (trained on the phantom only), or the
    /// reference's network in one file: its PyTorch `.pth` (run on 256³, raw HU) or a file
    /// written by `cta2mbf export`.
    #[arg(long, required_unless_present_any = ["from_totalsegmentator", "labels"], conflicts_with = "import")]
    pub checkpoint: Option<PathBuf>,
    /// Import TotalSegmentator `-ta heartchambers_highres` output instead of running the network:
    /// with `--input`, the case's per-structure folder or `--ml` file; with `--in`, a folder
    /// holding `<pid>/` or `<pid>.nii.gz` per patient.
    #[arg(long, group = "import")]
    pub from_totalsegmentator: Option<PathBuf>,
    /// Import another tool's label files (with `--label-map`): with `--input`, the case's file
    /// (or a folder holding only it); with `--in`, a folder holding `<pid>.nii.gz` or `<pid>/` per patient.
    #[arg(long, group = "import", requires = "label_map")]
    pub labels: Option<PathBuf>,
    /// JSON label map of the imported label files: `{"labels": {"<source>": <0-7>, ...},
    /// "unmapped": "background"|"error"}` (with `--from-totalsegmentator`, it replaces the `--ml` labels).
    #[arg(long, requires = "import")]
    pub label_map: Option<PathBuf>,
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
    /// Backend of the network: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Quality control of the cohort's masks.
    #[command(flatten)]
    pub qc: QcArgs,
}

/// Where the masks come from: the network, or another tool's segmentations (path and format).
enum Masks<'a> {
    Network(Segmenter),
    Import(&'a Path, MaskFormat),
}

impl SegmentArgs {
    /// The network to load, or the segmentations to import.
    fn masks(&self) -> cta2mbf::Result<Masks<'_>> {
        if let Some(checkpoint) = &self.checkpoint {
            return Ok(Masks::Network(Segmenter::load(checkpoint, &self.device.device()?)?));
        }
        let label_map = self.label_map.as_deref().map(LabelMap::read).transpose()?;
        match (&self.from_totalsegmentator, &self.labels, label_map) {
            (Some(path), _, label_map) => Ok(Masks::Import(path, MaskFormat::TotalSegmentator { label_map })),
            (None, Some(path), Some(label_map)) => Ok(Masks::Import(path, MaskFormat::Labels { label_map })),
            _ => Err(cta2mbf::Error::invalid("segment: pass --checkpoint, --from-totalsegmentator, or --labels with --label-map")),
        }
    }
}

/// Run `cta2mbf segment`.
pub fn run(args: SegmentArgs) -> cta2mbf::Result<()> {
    let masks = args.masks()?;
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        let connected = args.connected.as_deref();
        let written = match &masks {
            Masks::Network(model) => segment_file(model, input, output, connected)?,
            Masks::Import(path, format) => import_file(&format.case(path)?, input, output, connected)?,
        };
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        print_report(format!("segment: {} -> {}", input.display(), names.join(", ")));
        return match (&args.qc_out, &args.connected) {
            (Some(qc_out), Some(connected)) => args.qc.check_file(connected, Some(output), qc_out),
            _ => Ok(()),
        };
    }
    let (input, out) = (args.input_root.as_ref().expect("clap requires --in"), args.out.as_ref().expect("clap requires --out"));
    let qc = args.qc.policy()?;
    let report = match masks {
        Masks::Network(model) => segment_cohort(&model, input, out, &qc)?,
        Masks::Import(root, format) => import_cohort(&MaskSource { format, root: root.to_path_buf() }, input, out, &qc)?,
    };
    print_report(&report);
    report.check()
}
