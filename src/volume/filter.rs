//! Separable Gaussian smoothing with spacing-aware sigmas.

use super::Volume;
use ndarray::{Array3, Axis, Zip};

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

fn convolve_axis(data: &Array3<f32>, axis: usize, k: &[f32]) -> Array3<f32> {
    let radius = (k.len() / 2) as i64;
    let mut out = Array3::zeros(data.raw_dim());
    Zip::from(out.lanes_mut(Axis(axis))).and(data.lanes(Axis(axis))).par_for_each(|mut o, i| {
        let n = i.len() as i64;
        for x in 0..n {
            let mut acc = 0.0f32;
            for (j, &w) in k.iter().enumerate() {
                // Border voxels are repeated (no darkening at the edges).
                let src = (x + j as i64 - radius).clamp(0, n - 1);
                acc += w * i[src as usize];
            }
            o[x as usize] = acc;
        }
    });
    out
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
}
