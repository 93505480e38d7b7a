//! Similarity of the fixed samples and the moving image at their mapped points, and its
//! derivative with respect to each mapped point: Mattes mutual information (Parzen-window
//! joint histogram, cubic B-spline kernel on the moving side) or normalized cross-correlation.
//! Both are returned as costs to minimize (−MI, −NCC). Only samples whose mapped point lies
//! inside the moving image count, so the measure covers where both images have data.

use super::bspline::{cubic, cubic_derivative};
use super::image::{MovingImage, quantile_range};
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

/// Fraction of the intensity distribution cut off at each end to set the histogram range.
const RANGE_QUANTILE: f64 = 0.005;
/// Histogram bins at each end of the moving range that only the Parzen window reaches.
const PADDING: usize = 2;

/// The fixed side of a metric: the sample values, their histogram bins, the moving range.
pub struct Metric {
    kind: MetricKind,
    bins: usize,
    fixed: Vec<f64>,
    fixed_bin: Vec<usize>,
    moving_lo: f64,
    moving_width: f64,
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

impl Metric {
    /// Prepare `kind` for fixed sample values `fixed` against `moving` (`bins` histogram bins for MI).
    pub fn new(kind: MetricKind, bins: usize, fixed: &[f32], moving: &MovingImage) -> Metric {
        let bins = bins.max(PADDING * 2 + 4);
        let (flo, fhi) = quantile_range(fixed.to_vec(), RANGE_QUANTILE);
        let fwidth = ((fhi - flo) / bins as f64).max(1e-6);
        let fixed_bin = fixed.iter().map(|&f| (((f as f64 - flo) / fwidth).floor().max(0.0) as usize).min(bins - 1)).collect();
        let (mlo, mhi) = moving.intensity_range(RANGE_QUANTILE);
        let moving_width = ((mhi - mlo) / (bins - 2 * PADDING) as f64).max(1e-6);
        Metric { kind, bins, fixed: fixed.iter().map(|&f| f as f64).collect(), fixed_bin, moving_lo: mlo, moving_width }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.fixed.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty()
    }

    /// The cost and its derivatives at `mapped` (one world point per sample).
    pub fn evaluate(&self, moving: &MovingImage, mapped: &[Vec3]) -> Evaluation {
        let sampled: Vec<Option<(f64, Vec3)>> = mapped.par_iter().with_min_len(1024).map(|&y| moving.sample(y)).collect();
        let valid = sampled.iter().filter(|s| s.is_some()).count();
        if valid < 16 {
            return Evaluation { value: 0.0, gradient: vec![[0.0; 3]; mapped.len()], valid };
        }
        let dcost_dm = match self.kind {
            MetricKind::MattesMi => self.mattes(&sampled, valid),
            MetricKind::Ncc => self.ncc(&sampled),
        };
        let (value, dm) = dcost_dm;
        let gradient = sampled.iter().zip(&dm).map(|(s, &d)| s.map_or([0.0; 3], |(_, g)| g.map(|c| c * d))).collect();
        Evaluation { value, gradient, valid }
    }

    /// −MI and `∂(−MI)/∂m` per sample.
    fn mattes(&self, sampled: &[Option<(f64, Vec3)>], valid: usize) -> (f64, Vec<f64>) {
        let b = self.bins;
        let hi = (b - PADDING) as f64 - 1e-9;
        // Continuous moving bin of each sample and whether it was clamped.
        let bin_of = |m: f64| {
            let u = (m - self.moving_lo) / self.moving_width + PADDING as f64;
            if u < PADDING as f64 { (PADDING as f64, true) } else if u > hi { (hi, true) } else { (u, false) }
        };
        let mut joint = vec![0.0f64; b * b];
        for (s, &kappa) in sampled.iter().zip(&self.fixed_bin) {
            if let Some((m, _)) = s {
                let (u, _) = bin_of(*m);
                let first = u.floor() as usize - 1;
                for iota in first..first + 4 {
                    joint[kappa * b + iota] += cubic(iota as f64 - u);
                }
            }
        }
        let n = valid as f64;
        joint.iter_mut().for_each(|v| *v /= n);
        let mut pf = vec![0.0; b];
        let mut pm = vec![0.0; b];
        for k in 0..b {
            for i in 0..b {
                pf[k] += joint[k * b + i];
                pm[i] += joint[k * b + i];
            }
        }
        let mut mi = 0.0;
        let mut log_ratio = vec![0.0; b * b];
        for k in 0..b {
            for i in 0..b {
                let p = joint[k * b + i];
                if p > 1e-16 && pm[i] > 1e-16 {
                    mi += p * (p / (pf[k] * pm[i])).ln();
                    log_ratio[k * b + i] = (p / pm[i]).ln();
                }
            }
        }
        let scale = 1.0 / (n * self.moving_width);
        let d = sampled
            .par_iter()
            .zip(&self.fixed_bin)
            .map(|(s, &kappa)| match s {
                Some((m, _)) => {
                    let (u, clamped) = bin_of(*m);
                    if clamped {
                        return 0.0;
                    }
                    let first = u.floor() as usize - 1;
                    let mut dmi = 0.0;
                    for iota in first..first + 4 {
                        dmi -= cubic_derivative(iota as f64 - u) * log_ratio[kappa * b + iota];
                    }
                    -dmi * scale
                }
                None => 0.0,
            })
            .collect();
        (-mi, d)
    }

    /// −NCC and `∂(−NCC)/∂m` per sample.
    fn ncc(&self, sampled: &[Option<(f64, Vec3)>]) -> (f64, Vec<f64>) {
        let (mut n, mut sf, mut sm) = (0.0, 0.0, 0.0);
        for (s, &f) in sampled.iter().zip(&self.fixed) {
            if let Some((m, _)) = s {
                n += 1.0;
                sf += f;
                sm += m;
            }
        }
        let (fbar, mbar) = (sf / n, sm / n);
        let (mut sff, mut smm, mut sfm) = (0.0, 0.0, 0.0);
        for (s, &f) in sampled.iter().zip(&self.fixed) {
            if let Some((m, _)) = s {
                sff += (f - fbar) * (f - fbar);
                smm += (m - mbar) * (m - mbar);
                sfm += (f - fbar) * (m - mbar);
            }
        }
        let denom = (sff * smm).sqrt().max(1e-12);
        let ncc = sfm / denom;
        let d = sampled
            .iter()
            .zip(&self.fixed)
            .map(|(s, &f)| match s {
                Some((m, _)) => -((f - fbar) / denom - ncc * (m - mbar) / smm.max(1e-12)),
                None => 0.0,
            })
            .collect();
        (-ncc, d)
    }
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
            let metric = Metric::new(kind, 32, &values, &moving);
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
}
