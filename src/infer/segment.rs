//! A trained chamber-segmentation network loaded from its checkpoint, ready to label CTA
//! volumes (the labelling itself: [`crate::predict::segment_volume`]).

use crate::data::ClipNormalize;
use crate::models::UNet3d;
use crate::predict::segment_volume;
use crate::volume::Volume;
use burn::tensor::Device;

/// A trained segmentation network ready to label CTA volumes.
#[derive(Debug)]
pub struct Segmenter {
    /// The network (inference device, dropout off).
    pub net: UNet3d,
    /// The CTA mapping it was trained with.
    pub intensity: ClipNormalize,
    /// Where it runs.
    pub device: Device,
}

impl Segmenter {
    /// Load a segmentation checkpoint (a checkpoint folder, a run folder, or a shipped model
    /// folder) onto `device`.
    pub fn load(path: &std::path::Path, device: &Device) -> crate::Result<Self> {
        let (net, state) = crate::store::segmentation::load(path, device)?;
        Ok(Self { net, intensity: state.config.intensity, device: device.clone() })
    }

    /// The label map of `cta` on its grid.
    pub fn segment(&self, cta: &Volume) -> Volume {
        segment_volume(&self.net, cta, &self.intensity, &self.device)
    }
}
