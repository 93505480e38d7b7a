//! The images registration works on: a Gaussian pyramid of the fixed image, and the moving
//! image smoothed to a level's resolution with its world-space gradient, sampled trilinearly
//! ([`Trilinear`], inside the box of voxel centres only).

use crate::volume::mat3::{self, Mat3, Vec3};
use crate::volume::resample::{Boundary, Trilinear};
use crate::volume::{Geometry, Interpolation, Volume};

/// Gaussian sigma (mm, per axis) that takes an image of voxel size `own` to the resolution
/// of a grid of `target` mm: `½·√(target² − own²)`, zero where the image is already coarser.
pub fn smoothing_sigma(own: Vec3, target: f64) -> Vec3 {
    own.map(|s| if target > s { 0.5 * (target * target - s * s).sqrt() } else { 0.0 })
}

/// The fixed image at voxel size `spacing_mm` (never finer than its own): smoothed, then
/// resampled onto a grid covering the same box with the same direction.
pub fn fixed_level(fixed: &Volume, spacing_mm: f64) -> Volume {
    let own = fixed.geometry.spacing;
    let sigma = smoothing_sigma(own, spacing_mm);
    if sigma.iter().all(|&s| s == 0.0) {
        return fixed.clone();
    }
    let smooth = fixed.gaussian_blur(sigma);
    let shape = fixed.shape();
    let mut new_shape = [0usize; 3];
    let mut spacing = [0.0; 3];
    for a in 0..3 {
        let extent = shape[a] as f64 * own[a];
        new_shape[a] = ((extent / spacing_mm.max(own[a])).round() as usize).max(2);
        spacing[a] = extent / new_shape[a] as f64;
    }
    // Same outer box: the first voxel centre half a new voxel inside the old box's corner.
    let corner = fixed.geometry.index_to_world([-0.5; 3]);
    let g = Geometry { spacing, origin: corner, direction: fixed.geometry.direction };
    let origin = g.index_to_world([0.5; 3]);
    let geometry = Geometry { origin, ..g };
    smooth.resample_to_grid(new_shape, &geometry, Interpolation::Linear, 0.0)
}

/// A moving image ready for sampling: value and world gradient per voxel.
pub struct MovingImage {
    shape: [usize; 3],
    /// `[value, ∂/∂x, ∂/∂y, ∂/∂z]` per voxel (world gradient), standard layout.
    data: Vec<[f32; 4]>,
    to_index: Mat3,
    origin: Vec3,
}

impl MovingImage {
    /// The image smoothed for a level of `spacing_mm` (no smoothing for 0), with its gradient
    /// by central differences.
    pub fn new(volume: &Volume, spacing_mm: f64) -> MovingImage {
        let sigma = smoothing_sigma(volume.geometry.spacing, spacing_mm);
        let smooth = if sigma.iter().any(|&s| s > 0.0) { volume.gaussian_blur(sigma) } else { volume.clone() };
        let shape = smooth.shape();
        let v = smooth.data.as_standard_layout();
        let v = v.as_slice().expect("standard layout");
        let strides = [shape[1] * shape[2], shape[2], 1];
        let to_index = mat3::inverse(&volume.geometry.index_to_world_matrix()).expect("invertible geometry");
        let mut data = vec![[0f32; 4]; v.len()];
        use rayon::prelude::*;
        data.par_chunks_mut(strides[0]).enumerate().for_each(|(x, slab)| {
            for y in 0..shape[1] {
                for z in 0..shape[2] {
                    let idx = [x, y, z];
                    let at = x * strides[0] + y * strides[1] + z;
                    let mut g_index = [0.0f64; 3];
                    for a in 0..3 {
                        let (lo, hi) = (idx[a].saturating_sub(1), (idx[a] + 1).min(shape[a] - 1));
                        if hi > lo {
                            let base = at - idx[a] * strides[a];
                            g_index[a] = (v[base + hi * strides[a]] - v[base + lo * strides[a]]) as f64 / (hi - lo) as f64;
                        }
                    }
                    // ∂v/∂p = (∂idx/∂p)ᵀ ∂v/∂idx.
                    let g = [0, 1, 2].map(|r| (0..3).map(|a| to_index[a][r] * g_index[a]).sum::<f64>() as f32);
                    slab[y * strides[1] + z] = [v[at], g[0], g[1], g[2]];
                }
            }
        });
        MovingImage { shape, data, to_index, origin: volume.geometry.origin }
    }

    /// Continuous voxel index of a world point.
    pub fn index_of(&self, p: Vec3) -> Vec3 {
        mat3::mul_vec(&self.to_index, mat3::sub(p, self.origin))
    }

    /// True when world point `p` lies within `margin` voxels of the grid's box of voxel centres.
    pub fn contains(&self, p: Vec3, margin: f64) -> bool {
        let u = self.index_of(p);
        (0..3).all(|a| u[a] >= -margin && u[a] <= self.shape[a] as f64 - 1.0 + margin)
    }

    /// Value and world gradient at `p` by trilinear interpolation, or `None` outside the box
    /// of voxel centres (where interpolation would need voxels that do not exist).
    pub fn sample(&self, p: Vec3) -> Option<(f64, Vec3)> {
        let cell = Trilinear::locate(self.index_of(p), self.shape, Boundary::VoxelCentres)?;
        let (sy, sx) = (self.shape[2], self.shape[1] * self.shape[2]);
        let acc = cell.blend(|[x, y, z]| self.data[x * sx + y * sy + z]);
        Some((acc[0], [acc[1], acc[2], acc[3]]))
    }

    /// Robust intensity range: the `q` and `1 − q` quantiles of (up to 200 000 evenly spaced) voxel values.
    pub fn intensity_range(&self, q: f64) -> (f64, f64) {
        let step = (self.data.len() / 200_000).max(1);
        let values: Vec<f32> = self.data.iter().step_by(step).map(|v| v[0]).collect();
        quantile_range(values, q)
    }
}

/// The `q` and `1 − q` quantiles of `values`.
pub fn quantile_range(mut values: Vec<f32>, q: f64) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    values.sort_by(f32::total_cmp);
    let at = |f: f64| values[((values.len() - 1) as f64 * f).round() as usize] as f64;
    (at(q), at(1.0 - q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn gradient_of_a_linear_image_is_exact_on_an_oblique_grid() {
        let g = Geometry { spacing: [1.0, 2.0, 0.5], origin: [1.0, 2.0, 3.0], direction: mat3::rotation([0.3, 0.1, 1.0], 0.4) };
        let f = |p: Vec3| 2.0 * p[0] - p[1] + 0.5 * p[2];
        let data = Array3::from_shape_fn([9, 8, 10], |(i, j, k)| f(g.index_to_world([i as f64, j as f64, k as f64])) as f32);
        let m = MovingImage::new(&Volume::new(data, g), 0.0);
        let p = g.index_to_world([3.3, 4.6, 5.2]);
        let (v, grad) = m.sample(p).unwrap();
        assert!((v - f(p)).abs() < 1e-3);
        for (a, e) in grad.iter().zip([2.0, -1.0, 0.5]) {
            assert!((a - e).abs() < 1e-4, "{grad:?}");
        }
        assert!(m.sample(g.index_to_world([-0.1, 1.0, 1.0])).is_none());
    }

    #[test]
    fn a_fixed_level_covers_the_same_box() {
        let g = Geometry::axial([1.0, 1.0, 2.0], [0.0, 0.0, 0.0]);
        let v = Volume::filled([40, 30, 10], 5.0, g);
        let l = fixed_level(&v, 4.0);
        assert_eq!(l.shape(), [10, 8, 5]);
        let a = v.geometry.index_to_world([-0.5; 3]);
        let b = l.geometry.index_to_world([-0.5; 3]);
        assert!(mat3::norm(mat3::sub(a, b)) < 1e-9);
        assert!(l.data.iter().all(|&x| (x - 5.0).abs() < 1e-4));
    }
}
