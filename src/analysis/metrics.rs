//! Image-similarity scores of a predicted MBF map against the measured one: MAE over the
//! block (the reference's `mae`), MAE inside the myocardium, PSNR and SSIM.

use crate::volume::Volume;
use serde::Serialize;

/// Standard deviation of SSIM's Gaussian window, in voxels (Wang et al. 2004, as MONAI and
/// scikit-image with `gaussian_weights=True`).
pub const SSIM_SIGMA_VOXELS: f64 = 1.5;
/// SSIM stabilising constants `K1`, `K2` (Wang et al. 2004).
pub const SSIM_K: (f64, f64) = (0.01, 0.03);

/// The scores of one case.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CaseScores {
    /// Mean |fake − real| over the whole block.
    pub mae: f64,
    /// Mean |fake − real| inside the mask; `None` when the mask is empty.
    pub mae_myocardium: Option<f64>,
    /// Peak signal-to-noise ratio over the block, dB, with the real map's value range as peak.
    pub psnr: f64,
    /// Mean structural similarity over the block (3-D Gaussian window, same value range).
    pub ssim: f64,
}

/// Whether an MBF voxel holds a measurement: the myocardium stage writes −1024 elsewhere and
/// drops values below 0 (docs/design.md §3 step 6).
pub fn is_measured(mbf: f32) -> bool {
    mbf > 0.0
}

/// Mean absolute difference of two equally shaped arrays.
pub fn mae(fake: &ndarray::Array3<f32>, real: &ndarray::Array3<f32>) -> f64 {
    assert_eq!(fake.dim(), real.dim(), "mae of arrays of different shapes");
    fake.iter().zip(real).map(|(f, r)| (f - r).abs() as f64).sum::<f64>() / fake.len().max(1) as f64
}

/// Mean absolute difference where `inside` holds; `None` when it never does.
pub fn masked_mae(fake: &ndarray::Array3<f32>, real: &ndarray::Array3<f32>, inside: &ndarray::Array3<bool>) -> Option<f64> {
    assert_eq!(fake.dim(), inside.dim(), "mask of a different shape");
    let (mut sum, mut n) = (0.0, 0usize);
    for ((f, r), &m) in fake.iter().zip(real).zip(inside) {
        if m {
            sum += (f - r).abs() as f64;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// PSNR in dB with peak `data_range`; infinite for identical arrays.
pub fn psnr(fake: &ndarray::Array3<f32>, real: &ndarray::Array3<f32>, data_range: f64) -> f64 {
    let mse = fake.iter().zip(real).map(|(f, r)| ((f - r) as f64).powi(2)).sum::<f64>() / fake.len().max(1) as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (data_range * data_range / mse).log10() }
}

/// Mean SSIM of two volumes on the same grid: local means, variances and covariance under a
/// Gaussian window of [`SSIM_SIGMA_VOXELS`] (borders repeated), constants from [`SSIM_K`]
/// and `data_range`.
pub fn ssim(fake: &Volume, real: &Volume, data_range: f64) -> f64 {
    let sigma_mm = fake.geometry.spacing.map(|s| s * SSIM_SIGMA_VOXELS);
    let blur = |data: ndarray::Array3<f32>| Volume::new(data, fake.geometry).gaussian_blur(sigma_mm).data;
    // Centre on the real map's mean so the second moments keep f32 precision.
    let offset = real.data.mean().unwrap_or(0.0);
    let x = fake.data.mapv(|v| v - offset);
    let y = real.data.mapv(|v| v - offset);
    let mu_x = blur(x.clone());
    let mu_y = blur(y.clone());
    let xx = blur(&x * &x);
    let yy = blur(&y * &y);
    let xy = blur(&x * &y);
    let c1 = (SSIM_K.0 * data_range).powi(2);
    let c2 = (SSIM_K.1 * data_range).powi(2);
    let mut total = 0.0;
    for i in 0..x.len() {
        let (mx, my) = (mu_x.as_slice().unwrap()[i] as f64, mu_y.as_slice().unwrap()[i] as f64);
        let vx = xx.as_slice().unwrap()[i] as f64 - mx * mx;
        let vy = yy.as_slice().unwrap()[i] as f64 - my * my;
        let cov = xy.as_slice().unwrap()[i] as f64 - mx * my;
        total += ((2.0 * mx * my + c1) * (2.0 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
    }
    total / x.len().max(1) as f64
}

/// All scores of `fake` against `real` (same grid), the myocardium given by `inside`.
pub fn score_case(fake: &Volume, real: &Volume, inside: &ndarray::Array3<bool>) -> CaseScores {
    let (lo, hi, _) = real.stats();
    let range = ((hi - lo) as f64).max(1e-6);
    CaseScores {
        mae: mae(&fake.data, &real.data),
        mae_myocardium: masked_mae(&fake.data, &real.data, inside),
        psnr: psnr(&fake.data, &real.data, range),
        ssim: ssim(fake, real, range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;
    use ndarray::Array3;

    fn vol(f: impl Fn(usize, usize, usize) -> f32) -> Volume {
        Volume::new(Array3::from_shape_fn((8, 9, 10), |(x, y, z)| f(x, y, z)), Geometry::default())
    }

    #[test]
    fn identical_volumes_score_perfectly() {
        let a = vol(|x, y, z| (x * 7 + y * 3 + z) as f32);
        let inside = a.data.mapv(|v| v > 20.0);
        let s = score_case(&a, &a, &inside);
        assert_eq!(s.mae, 0.0);
        assert_eq!(s.mae_myocardium, Some(0.0));
        assert!(s.psnr.is_infinite());
        assert!((s.ssim - 1.0).abs() < 1e-6);
    }

    #[test]
    fn hand_computed_mae_and_psnr() {
        let real = vol(|x, _, _| if x < 4 { 0.0 } else { 100.0 });
        let fake = vol(|x, _, _| if x < 4 { 10.0 } else { 100.0 });
        let inside = real.data.mapv(|v| v == 0.0);
        // Half the voxels are off by 10.
        assert!((mae(&fake.data, &real.data) - 5.0).abs() < 1e-9);
        assert_eq!(masked_mae(&fake.data, &real.data, &inside), Some(10.0));
        // MSE 50, peak 100: 10·log10(10000/50).
        assert!((psnr(&fake.data, &real.data, 100.0) - 10.0 * 200f64.log10()).abs() < 1e-9);
        assert_eq!(masked_mae(&fake.data, &real.data, &real.data.mapv(|_| false)), None);
    }

    #[test]
    fn ssim_drops_with_noise_and_is_symmetric() {
        let real = vol(|x, y, z| ((x as f32) * 0.7).sin() * 50.0 + (y + z) as f32);
        let noisy = vol(|x, y, z| real.data[[x, y, z]] + if (x + 2 * y + 3 * z) % 2 == 0 { 15.0 } else { -15.0 });
        let (lo, hi, _) = real.stats();
        let range = (hi - lo) as f64;
        let s = ssim(&noisy, &real, range);
        assert!(s < 0.9 && s > 0.0, "ssim {s}");
        assert!((s - ssim(&real, &noisy, range)).abs() < 1e-6);
    }
}
