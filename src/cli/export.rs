//! `cta2mbf export`: write a generator as one safetensors or burnpack file under the
//! reference's PyTorch names.

use cta2mbf::device::DeviceChoice;
use cta2mbf::infer::TrainedGenerator;
use cta2mbf::interop::{ExportFormat, export_generator};
use std::path::PathBuf;

/// Arguments of `cta2mbf export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A cta2mbf checkpoint folder (or run folder: its `latest`), a reference `.pth`, or an
    /// exported file.
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
