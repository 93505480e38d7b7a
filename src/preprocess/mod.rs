//! Cohort preprocessing stages (docs/design.md §3), each a library module: the DICOM stages
//! (sort, extract, convert) and the volume stages (chamber segmentation or imported masks,
//! connected components, myocardium MBF, crop).

pub mod annotation;
pub mod connected;
pub mod convert;
pub mod crop;
pub mod extract;
pub mod mask_qc;
pub mod label_map;
pub mod mask_import;
pub mod myocardium;
pub mod segment;
pub mod sort;
pub mod stage;

use crate::error::{Error, Result};
use crate::volume::Volume;

/// Error unless `a` and `b` share one voxel grid (shape, and geometry within 1e-3 mm).
pub(crate) fn require_same_grid(a: &Volume, a_name: &str, b: &Volume, b_name: &str) -> Result<()> {
    if !a.same_grid(b, 1e-3) {
        return Err(Error::invalid(format!(
            "{a_name} (size {:?}, origin {:?}) and {b_name} (size {:?}, origin {:?}) are not on the same grid",
            a.shape(),
            a.geometry.origin,
            b.shape(),
            b.geometry.origin
        )));
    }
    Ok(())
}

/// Error unless `mask` is a label map: integer values in 0..=255 (the file is named).
pub(crate) fn require_label_map(mask: &Volume, path: &std::path::Path) -> Result<()> {
    if let Some(v) = mask.data.iter().find(|&&v| !(0.0..=255.0).contains(&v) || v.fract() != 0.0) {
        return Err(Error::format(path, format!("holds the value {v}: not a label map (integers 0-255)")));
    }
    Ok(())
}

/// Read a file that must exist, saying which input it is when it is missing.
pub(crate) fn read_input(path: &std::path::Path, what: &str) -> Result<Volume> {
    if !path.is_file() {
        return Err(Error::format(path, format!("missing {what}")));
    }
    crate::io::read_nifti(path)
}
