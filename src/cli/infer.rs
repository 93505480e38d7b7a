//! `cta2mbf infer`: run a trained generator over a folder of cases, or over one volume
//! (`--input`/`--output`), in a chosen norm mode.

use super::parse_size;
use cta2mbf::data::PairPattern;
use cta2mbf::device::DeviceChoice;
use cta2mbf::cohort::inference_folder_name;
use cta2mbf::infer::{InferJob, Tiling, TrainedGenerator, infer_cohort};
use cta2mbf::models::NormMode;
use cta2mbf::train::progress::Progress;
use burn::tensor::Device;
use cta2mbf::infer::predict_case;
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use std::path::{Path, PathBuf};

/// Arguments of `cta2mbf infer`.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// A cta2mbf checkpoint folder (or a run folder: its `latest`), a reference PyTorch
    /// `.pth` state dict, or a safetensors / burnpack file from `cta2mbf export`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Folder of case folders, e.g. ROOT/5.mbf_myocardium.
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    pub data_root: Option<PathBuf>,
    /// One input CTA (NIfTI) instead of a folder of cases; needs --output.
    #[arg(long, requires = "output")]
    pub input: Option<PathBuf>,
    /// Where to write the prediction for --input (NIfTI, float32, the input's grid unless
    /// --block is given).
    #[arg(long, requires = "input")]
    pub output: Option<PathBuf>,
    /// Normalization mode of the forward passes: train (the block's own statistics) or eval
    /// (the running statistics).
    #[arg(long)]
    pub norm_mode: NormMode,
    /// Block each case is fitted to, X,Y,Z (default: the checkpoint's training crop).
    #[arg(long, value_parser = parse_size)]
    pub block: Option<[usize; 3]>,
    /// Output folder (default: ROOT/6.inference_<block>_<mode> beside the data root).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Predict cases larger than the block with overlapping windows blended by Gaussian
    /// weights instead of cropping them.
    #[arg(long)]
    pub sliding_window: bool,
    /// Overlap of neighbouring windows (with --sliding-window).
    #[arg(long, default_value_t = 0.5)]
    pub overlap: f64,
    /// Input file name in each case folder.
    #[arg(long, default_value = "cropped_cta.nii.gz")]
    pub src: String,
    /// Target file name in each case folder.
    #[arg(long, default_value = "cropped_mbf.nii.gz")]
    pub dst: String,
    /// Only these cases (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub cases: Option<Vec<String>>,
    /// Backend: cpu (Burn's flex), ndarray, wgpu, vulkan.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `cta2mbf infer`.
pub fn run(args: InferArgs) -> cta2mbf::Result<()> {
    if !(0.0..1.0).contains(&args.overlap) {
        return Err(cta2mbf::Error::invalid(format!("--overlap must be in [0, 1), got {}", args.overlap)));
    }
    let device = args.device.device()?;
    let model = TrainedGenerator::load(&args.checkpoint, &device)?;
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        return run_single(&model, input, output, &args, &device);
    }
    let data_root = args.data_root.clone().expect("clap requires --data-root without --input");
    let block = args.block.unwrap_or(model.settings.crop_size);
    let out = args.out.clone().unwrap_or_else(|| {
        let root = data_root.parent().unwrap_or(std::path::Path::new("."));
        root.join(inference_folder_name(block, Some(&args.norm_mode.to_string())))
    });
    let job = InferJob {
        data_root,
        pattern: PairPattern { src: args.src.clone(), dst: args.dst.clone(), mask: None },
        out: out.clone(),
        block,
        mode: args.norm_mode,
        tiling: if args.sliding_window || (model.settings.sliding_window && args.block.is_none()) {
            Tiling::SlidingWindow { overlap: args.overlap }
        } else {
            Tiling::Centred
        },
        cases: args.cases.clone(),
    };
    let mut bar: Option<Progress> = None;
    let report = infer_cohort(&model, &job, &device, |done, total, pid| {
        let bar = bar.get_or_insert_with(|| Progress::new(total as u64, 0, args.quiet, super::stderr_log()));
        bar.step(format!("case {pid}"));
        if !args.quiet {
            bar.line(&format!("infer: {done}/{total} {pid}"));
        }
        if done == total {
            bar.finish();
        }
    })?;
    super::print_report(&report);
    println!("infer: {} ({} norm mode, block {}x{}x{}) → {}", model.source.display(), args.norm_mode, block[0], block[1], block[2], out.display());
    if report.written.is_empty() {
        return Err(cta2mbf::Error::invalid("infer: no case could be predicted"));
    }
    super::cases_failed("infer", report.failed.len(), report.failed.len() + report.written.len())
}

/// `infer --input CTA --output FAKE`: one volume in, its prediction out.
fn run_single(model: &TrainedGenerator, input: &Path, output: &Path, args: &InferArgs, device: &Device) -> cta2mbf::Result<()> {
    if args.sliding_window {
        return Err(cta2mbf::Error::invalid("--sliding-window applies to folders of cases, not to --input"));
    }
    let cta = read_nifti(input)?;
    let fake = predict_case(model, &cta, args.norm_mode, args.block, device);
    write_nifti(output, &fake, NiftiDtype::F32)?;
    let s = fake.shape();
    println!("infer: {} ({} norm mode) {} → {} ({}x{}x{})", model.source.display(), args.norm_mode, input.display(), output.display(), s[0], s[1], s[2]);
    Ok(())
}
