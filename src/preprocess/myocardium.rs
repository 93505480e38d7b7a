//! Myocardial blood flow from the registered BF map (DESIGN §3 step 6).

use super::require_same_grid;
use crate::error::Result;
use crate::volume::Volume;

/// The LV myocardium label of the chamber mask.
pub const MYOCARDIUM_LABEL: u8 = 6;
/// The value stored outside the myocardium (as the reference does).
pub const OUTSIDE: f32 = -1024.0;

/// Registered BF kept where `mask == label` and BF ≥ 0; every other voxel is −1024.
/// Both volumes must be on the same (CTA) grid.
pub fn extract_myocardium_mbf(bf: &Volume, mask: &Volume, label: u8) -> Result<Volume> {
    require_same_grid(bf, "registered BF", mask, "mask")?;
    let mut out = bf.clone();
    ndarray::Zip::from(&mut out.data).and(&mask.data).for_each(|v, &m| {
        if m.round() != label as f32 || *v < 0.0 {
            *v = OUTSIDE;
        }
    });
    Ok(out)
}
