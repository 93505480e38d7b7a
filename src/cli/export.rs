//! `cta2mbf export`: write a generator as one safetensors or burnpack file under the
//! reference's PyTorch names, or a generator or segmentation network as an ONNX model.

use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::TrainedGenerator;
use cta2mbf::interop::{ExportFormat, export_generator, onnx};
use cta2mbf::models::NormMode;
use std::path::PathBuf;

/// Arguments of `cta2mbf export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A cta2mbf checkpoint folder (or run folder: its `latest`), a reference `.pth`, or an
    /// exported file; for ONNX also a segmentation checkpoint (folder or run folder).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// safetensors (loadable by PyTorch's `load_state_dict(strict=True)` in the reference
    /// layout), burn (Burn's burnpack, same names) or onnx (HU in, image units out).
    #[arg(long, default_value = "safetensors")]
    pub format: ExportFormat,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// ONNX only: the generator's normalization baked into the graph, train (each volume's
    /// own statistics) or eval (the running statistics); default the mode it was trained in.
    #[arg(long)]
    pub norm_mode: Option<NormMode>,
}

/// Run `cta2mbf export`.
pub fn run(args: ExportArgs) -> cta2mbf::Result<()> {
    let device = DeviceChoice::Cpu.device()?;
    if args.format == ExportFormat::Onnx && cta2mbf::store::segmentation::resolve_model(&args.checkpoint).is_ok() {
        return export_segmentation_onnx(&args, &device);
    }
    if args.norm_mode.is_some() && args.format != ExportFormat::Onnx {
        return Err(cta2mbf::Error::invalid("--norm-mode applies to --format onnx only"));
    }
    let model = TrainedGenerator::load(&args.checkpoint, &device)?;
    let c = model.generator.config();
    let mode = args.norm_mode.unwrap_or(model.settings.trained_norm_mode);
    match args.format {
        ExportFormat::Onnx => onnx::write_generator(&model.generator, &model.settings, mode, &args.out)?,
        _ => export_generator(&model.generator, &model.settings, model.batches_tracked, args.format, &args.out)?,
    }
    let depth = match c.kind {
        cta2mbf::models::GeneratorKind::Resnet => format!("{} blocks", c.n_blocks),
        cta2mbf::models::GeneratorKind::Unet => format!("{} levels", c.levels),
    };
    println!(
        "export: {} ({:?}, ngf {}, {depth}, {:?} norm, {:?} up-sampling) → {} ({:?})",
        model.source.display(),
        c.kind,
        c.ngf,
        c.norm,
        c.upsample,
        args.out.display(),
        args.format
    );
    if args.format == ExportFormat::Onnx {
        println!("export: ONNX opset {}, {mode} norm mode, input 'cta' (HU), output 'mbf'", onnx::OPSET);
    }
    Ok(())
}

/// `--format onnx` of a segmentation checkpoint: the U-Net with its resampling and CTA mapping.
fn export_segmentation_onnx(args: &ExportArgs, device: &burn::tensor::Device) -> cta2mbf::Result<()> {
    let (net, state) = cta2mbf::store::segmentation::load(&args.checkpoint, device)?;
    onnx::write_segmentation(&net, &state.config.intensity, &args.out)?;
    let c = &net.config;
    let mode = match args.norm_mode {
        Some(m) => format!("; --norm-mode {m} changes nothing: its norms are instance norms"),
        None => String::new(),
    };
    println!(
        "export: {} (segmentation U-Net, base_n_filter {}, {} classes, grid {:?}) → {} (ONNX opset {}, input 'cta' (HU), outputs 'logits', 'labels'{mode})",
        args.checkpoint.display(),
        c.base_n_filter,
        c.classes,
        c.input_size,
        args.out.display(),
        onnx::OPSET
    );
    Ok(())
}
