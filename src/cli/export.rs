//! `cta2mbf export`: write a generator, or the reference's chamber-segmentation network, as one
//! safetensors or burnpack file under the reference's PyTorch names, or a generator or a
//! segmentation checkpoint as an ONNX model.

use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::TrainedGenerator;
use cta2mbf::interop::{ExportFormat, StateDict, export_generator, export_segmentation, is_reference_segmentation, onnx, segmentation_from_state_dict, sniff_format};
use cta2mbf::models::NormMode;
use std::path::{Path, PathBuf};

/// Arguments of `cta2mbf export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A generator: a cta2mbf checkpoint folder (or run folder: its `latest`), a reference
    /// `.pth`, or an exported file; the reference's chamber-segmentation network: its `.pth`
    /// (`conv3d_c1_1.weight`, …) or an exported file; for ONNX also a segmentation checkpoint
    /// (folder or run folder). Told apart by content.
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
    if args.checkpoint.is_dir() && cta2mbf::store::segmentation::resolve_model(&args.checkpoint).is_ok() {
        return Err(cta2mbf::Error::format(
            &args.checkpoint,
            "a cta2mbf segmentation checkpoint: its U-Net (train-seg's) has no reference PyTorch layout to export (it exports with --format onnx); the folder itself (net_seg.bpk + state.json) is what segment --checkpoint takes",
        ));
    }
    if let Some(sd) = segmentation_state_dict(&args.checkpoint)? {
        if args.format == ExportFormat::Onnx {
            return Err(cta2mbf::Error::format(&args.checkpoint, "the reference's chamber network has no ONNX export yet (safetensors or burn; ONNX exports a train-seg checkpoint)"));
        }
        let (net, settings) = segmentation_from_state_dict(&sd, &args.checkpoint, &device)?;
        export_segmentation(&net, &settings.intensity, args.format, &args.out)?;
        let (c, w) = (&net.config, &settings.intensity);
        println!(
            "export: {} (reference segmentation U-Net, in_channels {}, base_n_filter {}, {} classes; grid {:?}, CTA clip {:?} offset {} scale {}) → {} ({:?})",
            args.checkpoint.display(),
            c.in_channels,
            c.base_n_filter,
            c.classes,
            c.input_size,
            w.clip,
            w.offset,
            w.scale,
            args.out.display(),
            args.format
        );
        return Ok(());
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

/// The state dict of `path` when it is one file holding the reference segmentation network.
fn segmentation_state_dict(path: &Path) -> cta2mbf::Result<Option<StateDict>> {
    if !path.is_file() || sniff_format(path)?.is_none() {
        return Ok(None);
    }
    let sd = StateDict::read(path)?;
    Ok(is_reference_segmentation(&sd).then_some(sd))
}
