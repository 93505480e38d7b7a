//! Separable Gaussian smoothing with spacing-aware sigmas.

use super::Volume;
use ndarray::Array3;
use rayon::prelude::*;

/// A normalised 1-D Gaussian kernel for `sigma` voxels (radius ⌈3σ⌉), or `None` for σ ≤ 0.
fn kernel(sigma: f64) -> Option<Vec<f32>> {
    if sigma <= 0.0 {
        return None;
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let mut k: Vec<f64> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    Some(k.into_iter().map(|v| v as f32).collect())
}

/// `data` convolved with `k` along `axis`, border voxels repeated. Each output value sums
/// `w_j · v_j` in tap order, so the result does not depend on how the work is split.
///
/// Along x and y the sum runs over whole contiguous rows (all later axes at once), so every
/// memory access is sequential; along z (contiguous lanes) one lane at a time.
fn convolve_axis(data: &Array3<f32>, axis: usize, k: &[f32]) -> Array3<f32> {
    let shape = data.shape();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let source = data.as_standard_layout();
    let source = source.as_slice().expect("standard layout");
    let radius = k.len() / 2;
    // Index of tap `j` for output `i` along the axis, clamped to the volume.
    let tap = |i: usize, j: usize| (i + j).saturating_sub(radius).min(n - 1);
    let mut out = vec![0f32; source.len()];
    if inner == 1 {
        out.par_chunks_mut(n).zip(source.par_chunks(n)).for_each(|(o, lane)| {
            for (i, v) in o.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for (j, &w) in k.iter().enumerate() {
                    acc += w * lane[tap(i, j)];
                }
                *v = acc;
            }
        });
    } else {
        // One output row (a fixed index along `axis` and before it) per task.
        out.par_chunks_mut(inner).with_min_len((1 << 14) / inner + 1).enumerate().for_each(|(row, o)| {
            let (block, i) = (row / n, row % n);
            for (j, &w) in k.iter().enumerate() {
                let from = &source[(block * n + tap(i, j)) * inner..][..inner];
                for (v, &x) in o.iter_mut().zip(from) {
                    *v += w * x;
                }
            }
        });
    }
    Array3::from_shape_vec(data.raw_dim(), out).expect("same shape")
}

impl Volume {
    /// Gaussian smoothing with standard deviation `sigma_mm` (millimetres, per axis),
    /// border voxels repeated. A zero sigma leaves that axis untouched.
    pub fn gaussian_blur(&self, sigma_mm: [f64; 3]) -> Volume {
        let mut data = self.data.clone();
        for a in 0..3 {
            if let Some(k) = kernel(sigma_mm[a] / self.geometry.spacing[a]) {
                data = convolve_axis(&data, a, &k);
            }
        }
        Volume { data, geometry: self.geometry }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;

    #[test]
    fn blur_preserves_constants_and_spreads_an_impulse() {
        let flat = Volume::filled([5, 6, 7], 3.0, Geometry::default());
        let b = flat.gaussian_blur([1.0, 2.0, 0.5]);
        assert!(b.data.iter().all(|v| (v - 3.0).abs() < 1e-5));
        let mut imp = Volume::filled([9, 9, 9], 0.0, Geometry::default());
        imp.data[[4, 4, 4]] = 1.0;
        let b = imp.gaussian_blur([1.0, 1.0, 0.0]);
        let total: f32 = b.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!(b.data[[4, 4, 4]] < 0.2 && b.data[[5, 4, 4]] > 0.05);
        assert_eq!(b.data[[4, 4, 5]], 0.0);
    }

    /// The lane-by-lane definition, kept as the reference.
    fn reference(data: &Array3<f32>, axis: usize, k: &[f32]) -> Array3<f32> {
        let radius = (k.len() / 2) as i64;
        let mut out = Array3::zeros(data.raw_dim());
        for (mut o, lane) in out.lanes_mut(ndarray::Axis(axis)).into_iter().zip(data.lanes(ndarray::Axis(axis))) {
            let n = lane.len() as i64;
            for x in 0..n {
                let mut acc = 0.0f32;
                for (j, &w) in k.iter().enumerate() {
                    acc += w * lane[(x + j as i64 - radius).clamp(0, n - 1) as usize];
                }
                o[x as usize] = acc;
            }
        }
        out
    }

    #[test]
    fn every_axis_equals_the_lane_by_lane_definition_bit_for_bit() {
        let data = Array3::from_shape_fn((13, 7, 9), |(x, y, z)| ((x * 31 + y * 17 + z * 7) % 23) as f32 * 1.7 - 9.0);
        for sigma in [0.4, 1.3, 4.0] {
            let k = kernel(sigma).unwrap();
            for axis in 0..3 {
                assert_eq!(convolve_axis(&data, axis, &k), reference(&data, axis, &k), "axis {axis} sigma {sigma}");
            }
        }
    }
}
