//! A reference chamber-segmentation network in one file: what `segment --checkpoint FILE`
//! reads (the reference's `.pth`, or a safetensors / burnpack file `cta2mbf export` wrote) and
//! what `export` writes (the reference's tensor names, the settings below in the metadata).
//!
//! A `.pth` stores weights only. The settings it is run with are then
//! [`SegmentationSettings::reference`]: the reference's fixed grid of 256³ (docs/design.md §5)
//! and raw HU in ([`ClipNormalize::raw_hu`]: the network is not invariant to the input's
//! scale — level 1's skip is not normalized —, so a window would change its answers).

use super::generator_file::{ExportFormat, SETTINGS_KEY, write_export};
use super::segmentation_layout::{reference_unet_from_state_dict, state_dict_from_reference_unet};
use super::state_dict::StateDict;
use crate::data::ClipNormalize;
use crate::error::{Error, Result};
use crate::models::ReferenceUNet3d;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a reference segmentation network is run: what its weights do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationSettings {
    /// The grid (x, y, z) every CTA is resampled to; multiples of 16.
    pub input_size: [usize; 3],
    /// CTA (HU) → network input.
    pub intensity: ClipNormalize,
}

impl SegmentationSettings {
    /// What a `.pth` is run with: 256³, raw HU.
    pub fn reference() -> Self {
        Self { input_size: [256; 3], intensity: ClipNormalize::raw_hu() }
    }
}

/// The reference segmentation network a state dict read from `path` holds, with its settings:
/// those in the file's metadata, else [`SegmentationSettings::reference`].
pub fn segmentation_from_state_dict(sd: &StateDict, path: &Path, device: &Device) -> Result<(ReferenceUNet3d, SegmentationSettings)> {
    let settings = match sd.metadata.get(SETTINGS_KEY) {
        Some(json) => {
            let s: SegmentationSettings = serde_json::from_str(json).map_err(|e| Error::format(path, format!("unreadable {SETTINGS_KEY} metadata: {e}")))?;
            s.intensity.validate().map_err(|e| Error::format(path, format!("{SETTINGS_KEY} metadata: {e}")))?;
            s
        }
        None => SegmentationSettings::reference(),
    };
    let net = reference_unet_from_state_dict(sd, path, settings.input_size, device)?;
    Ok((net, settings))
}

/// Load the reference segmentation network stored in one file (`.pth`, safetensors or
/// burnpack, told apart by content), with its settings.
pub fn load_segmentation_file(path: &Path, device: &Device) -> Result<(ReferenceUNet3d, SegmentationSettings)> {
    segmentation_from_state_dict(&StateDict::read(path)?, path, device)
}

/// Write `net` to `out` in `format` under the reference's names, its grid and `intensity` in
/// the metadata (so the file is run exactly as `net` was, and PyTorch's
/// `load_state_dict(strict=True)` accepts its tensors).
pub fn export_segmentation(net: &ReferenceUNet3d, intensity: &ClipNormalize, format: ExportFormat, out: &Path) -> Result<()> {
    let settings = SegmentationSettings { input_size: net.config.input_size, intensity: *intensity };
    write_export(state_dict_from_reference_unet(net)?, &settings, format, out)
}
