//! A trained chamber-segmentation network loaded from its checkpoint, ready to label CTA
//! volumes (the labelling itself: [`crate::predict::segment_volume`]): cta2mbf's own U-Net
//! from a checkpoint folder, or the reference's network from one file (docs/design.md §5).

use crate::data::ClipNormalize;
use crate::error::{Error, Result};
use crate::models::{ReferenceUNet3d, UNet3d};
use crate::predict::{SegmentationNetwork, segment_volume};
use crate::store::segmentation as checkpoint;
use crate::volume::Volume;
use burn::tensor::Device;
use std::path::Path;

/// Which segmentation network a [`Segmenter`] runs.
#[derive(Debug)]
pub enum SegmentationNet {
    /// cta2mbf's U-Net ([`UNet3d`]), from a `train-seg` checkpoint folder or a shipped model.
    Trained(UNet3d),
    /// The reference's network ([`ReferenceUNet3d`]), from a `.pth` or an exported file.
    Reference(ReferenceUNet3d),
}

impl SegmentationNet {
    /// The network behind the common interface.
    pub fn network(&self) -> &dyn SegmentationNetwork {
        match self {
            SegmentationNet::Trained(n) => n,
            SegmentationNet::Reference(n) => n,
        }
    }
}

/// A trained segmentation network ready to label CTA volumes.
#[derive(Debug)]
pub struct Segmenter {
    /// The network (inference, dropout off).
    pub net: SegmentationNet,
    /// The CTA mapping it was trained with (a `.pth`: raw HU, [`ClipNormalize::raw_hu`]).
    pub intensity: ClipNormalize,
    /// Where it runs.
    pub device: Device,
}

impl Segmenter {
    /// Load a segmentation network onto `device`: a checkpoint folder, a run folder, a shipped
    /// model folder (or the `net_seg.bpk` inside one), or one file holding the reference's
    /// network (a PyTorch `.pth` state dict, or a safetensors / burnpack file written by
    /// `cta2mbf export`), told apart by content.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let in_folder = path.file_name().is_some_and(|n| n == checkpoint::NET) && path.with_file_name(crate::store::STATE).is_file();
        if !path.is_file() || in_folder {
            let folder = if in_folder { path.parent().unwrap_or(path) } else { path };
            let (net, state) = checkpoint::load(folder, device)?;
            return Ok(Self { net: SegmentationNet::Trained(net), intensity: state.config.intensity, device: device.clone() });
        }
        let (net, settings) = crate::interop::load_segmentation_file(path, device)?;
        let c = &net.config;
        if c.in_channels != 1 {
            return Err(Error::format(path, format!("the network takes {} input channels; segment feeds it one CTA", c.in_channels)));
        }
        if c.classes > 256 {
            return Err(Error::format(path, format!("the network has {} classes; label maps are stored as uint8 (at most 256)", c.classes)));
        }
        Ok(Self { net: SegmentationNet::Reference(net), intensity: settings.intensity, device: device.clone() })
    }

    /// The label map of `cta` on its grid.
    pub fn segment(&self, cta: &Volume) -> Volume {
        segment_volume(self.net.network(), cta, &self.intensity, &self.device)
    }
}
