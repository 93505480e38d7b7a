//! Similarity of the fixed samples and the moving image at their mapped points, as a cost to
//! minimize, and its derivative with respect to each mapped point. A measure implements
//! [`Similarity`] on the moving values alone (its file: [`mattes`](super::mattes),
//! [`ncc`](super::ncc)); [`Similarity::evaluate`] samples the moving image and chains the
//! derivative through its gradient. Only samples whose mapped point lies inside the moving
//! image count, so the measure covers where both images have data.
//!
//! Adding a measure: a file implementing [`Similarity`], a variant of [`MetricKind`] and its
//! line in [`MetricKind::similarity`].

use super::image::MovingImage;
use super::mattes::MattesMi;
use super::ncc::Ncc;
use crate::volume::mat3::Vec3;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The similarity measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Mattes mutual information: for images of different contrast (default).
    MattesMi,
    /// Normalized cross-correlation: for images whose intensities are linearly related.
    Ncc,
}

impl MetricKind {
    /// The measure for fixed sample values `fixed` against `moving` (`bins` histogram bins for MI).
    pub fn similarity(self, bins: usize, fixed: &[f32], moving: &MovingImage) -> Box<dyn Similarity> {
        match self {
            MetricKind::MattesMi => Box::new(MattesMi::new(bins, fixed, moving)),
            MetricKind::Ncc => Box::new(Ncc::new(fixed)),
        }
    }
}

/// Fewest samples inside the moving image for a measure to be computed (fewer: cost 0, no gradient).
const MIN_VALID: usize = 16;

/// A similarity measure over a fixed set of samples, prepared with their fixed-image values.
pub trait Similarity: Sync {
    /// The cost (lower is more similar) and `∂cost/∂mᵢ` for the moving-image value `mᵢ` at
    /// each sample (`None`: outside the moving image, derivative 0); `valid` counts the
    /// values present, at least 16.
    fn cost(&self, moving: &[Option<f64>], valid: usize) -> (f64, Vec<f64>);

    /// The cost and its derivatives at `mapped` (one world point per sample).
    fn evaluate(&self, moving: &MovingImage, mapped: &[Vec3]) -> Evaluation {
        let sampled: Vec<Option<(f64, Vec3)>> = mapped.par_iter().with_min_len(1024).map(|&y| moving.sample(y)).collect();
        let valid = sampled.iter().filter(|s| s.is_some()).count();
        if valid < MIN_VALID {
            return Evaluation { value: 0.0, gradient: vec![[0.0; 3]; mapped.len()], valid };
        }
        let values: Vec<Option<f64>> = sampled.iter().map(|s| s.map(|(m, _)| m)).collect();
        let (value, dm) = self.cost(&values, valid);
        let gradient = sampled.iter().zip(&dm).map(|(s, &d)| s.map_or([0.0; 3], |(_, g)| g.map(|c| c * d))).collect();
        Evaluation { value, gradient, valid }
    }
}

/// A metric's value and derivatives at one set of mapped points.
pub struct Evaluation {
    /// The cost (−MI or −NCC).
    pub value: f64,
    /// `∂cost/∂y` for each sample's mapped point (zero for samples outside the moving image).
    pub gradient: Vec<Vec3>,
    /// Samples whose mapped point was inside the moving image.
    pub valid: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Volume};
    use ndarray::Array3;

    /// A smooth 3-D test image.
    fn blob(shift: f64) -> Volume {
        let data = Array3::from_shape_fn([24, 24, 24], |(i, j, k)| {
            let (x, y, z) = (i as f64 - 11.5 - shift, j as f64 - 12.0, k as f64 - 11.0);
            (100.0 * (-(x * x + 2.0 * y * y + z * z) / 40.0).exp() + 20.0 * ((x + y) / 5.0).sin()) as f32
        });
        Volume::new(data, Geometry::axial([1.0; 3], [0.0; 3]))
    }

    #[test]
    fn gradients_match_finite_differences_and_the_optimum_is_at_the_truth() {
        let fixed = blob(0.0);
        let moving = MovingImage::new(&blob(1.5), 0.0);
        let points: Vec<Vec3> = (0..3000).map(|i| [3.0 + (i % 17) as f64 * 1.03, 3.0 + (i / 17 % 17) as f64 * 1.07, 3.0 + (i / 289) as f64 * 1.6]).collect();
        let values: Vec<f32> = points.iter().map(|p| fixed.sample(*p, crate::volume::Interpolation::Linear, 0.0)).collect();
        for kind in [MetricKind::MattesMi, MetricKind::Ncc] {
            let metric = kind.similarity(32, &values, &moving);
            let at = |t: f64| -> Vec<Vec3> { points.iter().map(|p| [p[0] + t, p[1], p[2]]).collect() };
            let cost = |t: f64| metric.evaluate(&moving, &at(t)).value;
            // The cost is lowest at the true shift (1.5 voxels) among nearby shifts.
            assert!(cost(1.5) < cost(0.5) && cost(1.5) < cost(2.5), "{kind:?}");
            // Analytic derivative along x vs. central differences of the cost.
            let e = metric.evaluate(&moving, &at(1.0));
            let analytic: f64 = e.gradient.iter().map(|g| g[0]).sum();
            let fd = (cost(1.0 + 1e-3) - cost(1.0 - 1e-3)) / 2e-3;
            assert!((analytic - fd).abs() < 0.05 * fd.abs() + 1e-6, "{kind:?}: analytic {analytic} vs fd {fd}");
        }
    }

    #[test]
    fn cost_derivatives_in_the_moving_values_match_central_differences() {
        let moving = MovingImage::new(&blob(0.0), 0.0);
        let n = 2000;
        let fixed: Vec<f32> = (0..n).map(|i| (50.0 + 40.0 * (i as f64 * 0.37).sin() + 10.0 * (i as f64 * 0.011).cos()) as f32).collect();
        // Moving values related to the fixed ones, inside the histogram's range, a few samples outside the image.
        let values: Vec<Option<f64>> = (0..n).map(|i| (i % 97 != 0).then(|| 0.6 * fixed[i] as f64 + 15.0 * (i as f64 * 0.05).sin() + 10.0)).collect();
        let valid = values.iter().filter(|v| v.is_some()).count();
        for kind in [MetricKind::MattesMi, MetricKind::Ncc] {
            let metric = kind.similarity(32, &fixed, &moving);
            let (_, d) = metric.cost(&values, valid);
            let h = 1e-4;
            let mut worst = 0.0f64;
            let scale = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                let mut v = values.clone();
                let Some(m) = v[i] else {
                    assert_eq!(d[i], 0.0);
                    continue;
                };
                v[i] = Some(m + h);
                let up = metric.cost(&v, valid).0;
                v[i] = Some(m - h);
                let down = metric.cost(&v, valid).0;
                worst = worst.max(((up - down) / (2.0 * h) - d[i]).abs() / scale);
            }
            eprintln!("{kind:?}: worst relative error {worst:.2e}");
            assert!(scale > 0.0 && worst < 1e-5, "{kind:?}: {worst}");
        }
    }
}
