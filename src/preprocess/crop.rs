//! Cropping CTA, myocardium MBF and mask to the heart (DESIGN §3 step 7).

use super::require_same_grid;
use crate::error::{Error, Result};
use crate::volume::Volume;

/// The four cropped volumes of `5.mbf_myocardium/<pid>/`.
#[derive(Debug, Clone)]
pub struct HeartCrop {
    /// CTA inside the heart's bounding box.
    pub cta: Volume,
    /// Myocardium MBF inside the box (−1024 outside the myocardium).
    pub mbf: Volume,
    /// Chamber mask inside the box.
    pub mask: Volume,
    /// `mbf > 0` as 0/1.
    pub mbf_mask: Volume,
}

/// Crop the three volumes to the inclusive bounding box of `mask > 0`. The crop keeps
/// spacing and direction and moves the origin to the first kept voxel.
pub fn crop_to_heart(cta: &Volume, mbf: &Volume, mask: &Volume) -> Result<HeartCrop> {
    require_same_grid(cta, "CTA", mask, "mask")?;
    require_same_grid(mbf, "myocardium MBF", mask, "mask")?;
    let (lo, hi) = mask
        .bounding_box(|v| v > 0.0)
        .ok_or_else(|| Error::invalid("the mask is empty: no heart to crop"))?;
    let size = [0, 1, 2].map(|a| hi[a] - lo[a] + 1);
    let mbf = mbf.crop(lo, size)?;
    let mbf_mask = mbf.map(|v| if v > 0.0 { 1.0 } else { 0.0 });
    Ok(HeartCrop { cta: cta.crop(lo, size)?, mbf, mask: mask.crop(lo, size)?, mbf_mask })
}
