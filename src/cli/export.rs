//! `cta2mbf export`: write a generator, or the reference's chamber-segmentation network, as one
//! safetensors or burnpack file under the reference's PyTorch names.

use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::TrainedGenerator;
use cta2mbf::interop::{ExportFormat, StateDict, export_generator, export_segmentation, is_reference_segmentation, segmentation_from_state_dict, sniff_format};
use std::path::{Path, PathBuf};

/// Arguments of `cta2mbf export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A generator: a cta2mbf checkpoint folder (or run folder: its `latest`), a reference
    /// `.pth`, or an exported file; or the reference's chamber-segmentation network: its `.pth`
    /// (`conv3d_c1_1.weight`, …) or an exported file. Told apart by content.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// safetensors (loadable by PyTorch's `load_state_dict(strict=True)` in the reference
    /// layout) or burn (Burn's burnpack, same names).
    #[arg(long, default_value = "safetensors")]
    pub format: ExportFormat,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Run `cta2mbf export`.
pub fn run(args: ExportArgs) -> cta2mbf::Result<()> {
    let device = DeviceChoice::Cpu.device()?;
    if args.checkpoint.is_dir() && cta2mbf::store::segmentation::resolve_model(&args.checkpoint).is_ok() {
        return Err(cta2mbf::Error::format(
            &args.checkpoint,
            "a cta2mbf segmentation checkpoint: its U-Net (train-seg's) has no reference PyTorch layout to export; the folder itself (net_seg.bpk + state.json) is what segment --checkpoint takes",
        ));
    }
    if let Some(sd) = segmentation_state_dict(&args.checkpoint)? {
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
    let model = TrainedGenerator::load(&args.checkpoint, &device)?;
    let c = model.generator.config();
    export_generator(&model.generator, &model.settings, model.batches_tracked, args.format, &args.out)?;
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
