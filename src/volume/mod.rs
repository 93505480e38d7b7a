//! `Volume`: a 3-D voxel array with its world geometry, and the operations that keep
//! every voxel's world position right (crop, pad, flip, resample).

pub mod filter;
pub mod geometry;
pub mod mat3;
mod region;
pub mod resample;

pub use geometry::Geometry;
pub use resample::Interpolation;

use ndarray::Array3;

/// A scalar 3-D image: `data[[x, y, z]]` (x = first NIfTI/ITK axis), plus its geometry.
///
/// Values are `f32` whatever the file's datatype; integer files up to 24 bits of
/// precision (all of uint8, int8, int16, uint16) are represented exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxel values, indexed `[x, y, z]`, standard (row-major) layout, so z varies fastest in memory.
    pub data: Array3<f32>,
    /// Where the grid sits in the world.
    pub geometry: Geometry,
}

impl Volume {
    /// A volume from data and geometry.
    pub fn new(data: Array3<f32>, geometry: Geometry) -> Self {
        Volume { data, geometry }
    }

    /// A volume of `shape` filled with `value`.
    pub fn filled(shape: [usize; 3], value: f32, geometry: Geometry) -> Self {
        Volume { data: Array3::from_elem(shape, value), geometry }
    }

    /// The grid size `[nx, ny, nz]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the volume has no voxels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Minimum, maximum and mean of the voxel values (NaN-free input assumed).
    pub fn stats(&self) -> (f32, f32, f64) {
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        let mut sum = 0.0f64;
        for &v in self.data.iter() {
            lo = lo.min(v);
            hi = hi.max(v);
            sum += v as f64;
        }
        (lo, hi, sum / self.data.len().max(1) as f64)
    }

    /// A volume with the same grid and values mapped through `f`.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Volume {
        Volume { data: self.data.mapv(f), geometry: self.geometry }
    }

    /// True when `other` has the same shape and a geometry equal within `tol`.
    pub fn same_grid(&self, other: &Volume, tol: f64) -> bool {
        self.shape() == other.shape() && self.geometry.max_abs_diff(&other.geometry) <= tol
    }
}
