//! Mattes mutual information: a joint histogram of fixed and moving values with a cubic
//! B-spline Parzen window on the moving side (so the cost is smooth in the moving values),
//! returned as −MI.

use super::bspline::{cubic, cubic_derivative};
use super::image::{MovingImage, quantile_range};
use super::metric::Similarity;
use rayon::prelude::*;

/// Fraction of the intensity distribution cut off at each end to set the histogram range.
const RANGE_QUANTILE: f64 = 0.005;
/// Histogram bins at each end of the moving range that only the Parzen window reaches.
const PADDING: usize = 2;
/// Joint or marginal probabilities below this count as empty bins.
const EMPTY: f64 = 1e-16;

/// The fixed side of Mattes MI: the samples' fixed bins and the moving histogram range.
pub struct MattesMi {
    bins: usize,
    fixed_bin: Vec<usize>,
    moving_lo: f64,
    moving_width: f64,
}

impl MattesMi {
    /// Prepare for fixed sample values `fixed` against `moving`, with `bins` histogram bins.
    pub fn new(bins: usize, fixed: &[f32], moving: &MovingImage) -> MattesMi {
        let bins = bins.max(PADDING * 2 + 4);
        let (flo, fhi) = quantile_range(fixed.to_vec(), RANGE_QUANTILE);
        let fwidth = ((fhi - flo) / bins as f64).max(1e-6);
        let fixed_bin = fixed.iter().map(|&f| (((f as f64 - flo) / fwidth).floor().max(0.0) as usize).min(bins - 1)).collect();
        let (mlo, mhi) = moving.intensity_range(RANGE_QUANTILE);
        let moving_width = ((mhi - mlo) / (bins - 2 * PADDING) as f64).max(1e-6);
        MattesMi { bins, fixed_bin, moving_lo: mlo, moving_width }
    }
}

impl Similarity for MattesMi {
    /// −MI and `∂(−MI)/∂m` per sample.
    fn cost(&self, sampled: &[Option<f64>], valid: usize) -> (f64, Vec<f64>) {
        let b = self.bins;
        let hi = (b - PADDING) as f64 - 1e-9;
        // Continuous moving bin of each sample and whether it was clamped.
        let bin_of = |m: f64| {
            let u = (m - self.moving_lo) / self.moving_width + PADDING as f64;
            if u < PADDING as f64 { (PADDING as f64, true) } else if u > hi { (hi, true) } else { (u, false) }
        };
        let mut joint = vec![0.0f64; b * b];
        for (s, &kappa) in sampled.iter().zip(&self.fixed_bin) {
            if let Some(m) = s {
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
                if p > EMPTY && pm[i] > EMPTY {
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
                Some(m) => {
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
}
