//! A generator in one file: what `cta2mbf export` writes (safetensors or burnpack, reference
//! tensor names, training settings in the metadata) and what `infer --checkpoint FILE` reads
//! (those, and the reference's `.pth` state dicts).

use super::generator_layout::{generator_from_state_dict, state_dict_from_generator};
use super::state_dict::StateDict;
use crate::data::IntensityMap;
use crate::error::{Error, Result};
use crate::models::{Generator, NormMode};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metadata key of the training settings in an exported file.
pub const SETTINGS_KEY: &str = "cta2mbf.settings";

/// How a generator was trained, as far as running it needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSettings {
    /// Image ↔ network intensity mapping.
    pub intensity: IntensityMap,
    /// Norm mode it was trained in.
    pub trained_norm_mode: NormMode,
    /// Training crop, the default inference block.
    pub crop_size: [usize; 3],
    /// Whether it is run by default with overlapping windows of `crop_size` over the whole
    /// case (trained on patches) rather than on one centred block.
    #[serde(default)]
    pub sliding_window: bool,
    /// Pad value of the training data (HU).
    pub pad_value: f32,
}

impl GeneratorSettings {
    /// What a reference `.pth` implies: raw HU in, MBF out, trained in train mode on
    /// 384×384×160 blocks padded with −1024.
    pub fn reference() -> Self {
        Self { intensity: IntensityMap::default(), trained_norm_mode: NormMode::Train, crop_size: [384, 384, 160], sliding_window: false, pad_value: -1024.0 }
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// safetensors with the reference's names and dtypes (PyTorch `load_state_dict` ready).
    Safetensors,
    /// Burn's burnpack with the same names.
    Burn,
    /// An ONNX model with the intensity mapping inside ([`super::onnx`]).
    Onnx,
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "safetensors" => Ok(ExportFormat::Safetensors),
            "burn" | "burnpack" => Ok(ExportFormat::Burn),
            "onnx" => Ok(ExportFormat::Onnx),
            other => Err(Error::invalid(format!("unknown export format '{other}' (safetensors, burn, onnx)"))),
        }
    }
}

/// Load the generator stored in one file (`.pth`, safetensors or burnpack, told apart by
/// content), with its settings: those in the file's metadata, else the reference's.
pub fn load_generator_file(path: &Path, device: &Device) -> Result<(Generator, GeneratorSettings)> {
    let sd = StateDict::read(path)?;
    let generator = generator_from_state_dict(&sd, path, device)?;
    let settings = match sd.metadata.get(SETTINGS_KEY) {
        Some(json) => serde_json::from_str(json).map_err(|e| Error::format(path, format!("unreadable {SETTINGS_KEY} metadata: {e}")))?,
        None => GeneratorSettings::reference(),
    };
    Ok((generator, settings))
}

/// Write `generator` to `out` in `format`, under the reference's names, with `settings` in
/// the metadata. `batches_tracked` fills the batch norms' `num_batches_tracked`. ONNX is
/// written in the norm mode the generator was trained in ([`super::onnx::write_generator`]
/// takes any).
pub fn export_generator(generator: &Generator, settings: &GeneratorSettings, batches_tracked: i64, format: ExportFormat, out: &Path) -> Result<()> {
    if format == ExportFormat::Onnx {
        return super::onnx::write_generator(generator, settings, settings.trained_norm_mode, out);
    }
    write_export(state_dict_from_generator(generator, batches_tracked)?, settings, format, out)
}

/// Write `sd` to `out` in `format` (safetensors or burnpack) with `settings` (JSON) under
/// [`SETTINGS_KEY`] in the metadata, marked as PyTorch tensors (`format: pt`).
pub(super) fn write_export(mut sd: StateDict, settings: &impl Serialize, format: ExportFormat, out: &Path) -> Result<()> {
    sd.metadata.insert(SETTINGS_KEY.into(), serde_json::to_string(settings).expect("settings serialise"));
    sd.metadata.insert("format".into(), "pt".into());
    match format {
        ExportFormat::Safetensors => sd.write_safetensors(out),
        ExportFormat::Burn => sd.write_burnpack(out),
        ExportFormat::Onnx => Err(Error::invalid(format!(
            "{}: ONNX export is written from a network, not from a state dict (the reference's chamber network has no ONNX export yet)",
            out.display()
        ))),
    }
}
