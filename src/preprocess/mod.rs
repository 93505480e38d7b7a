//! Cohort preprocessing stages (DESIGN §3), each a library module: the DICOM stages
//! (sort, extract, convert) and the volume stages (connected components, myocardium MBF, crop).

pub mod annotation;
pub mod connected;
pub mod convert;
pub mod crop;
pub mod extract;
pub mod myocardium;
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
