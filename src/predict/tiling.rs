//! Fitting a case to the network's block: a centred crop-or-pad (the reference's inference),
//! or overlapping windows blended with Gaussian weights so that a case larger than the block
//! keeps all its anatomy.

use super::volume::predict_volume;
use crate::data::IntensityMap;
use crate::models::{Generator, NormMode};
use crate::volume::Volume;
use burn::tensor::Device;

/// How a case is fitted to the block.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tiling {
    /// One block, centred on the case: cropped where the case is larger, padded where smaller.
    Centred,
    /// Windows of the block's size overlapping by this fraction (0 ≤ overlap < 1), blended
    /// with Gaussian weights (σ = block/8 per axis, as MONAI's sliding-window inference); the
    /// case is only padded, never cropped.
    SlidingWindow {
        /// Fraction of the block shared by neighbouring windows.
        overlap: f64,
    },
}

/// The grid a case is predicted on: the block itself (centred), or the case padded up to the
/// block where it is smaller (sliding window). Voxels keep their world positions.
pub fn fit_to_block(volume: &Volume, block: [usize; 3], tiling: Tiling, pad_value: f32) -> Volume {
    match tiling {
        Tiling::Centred => volume.center_crop_or_pad(block, pad_value),
        Tiling::SlidingWindow { .. } => {
            let shape = volume.shape();
            volume.center_crop_or_pad([0, 1, 2].map(|a| shape[a].max(block[a])), pad_value)
        }
    }
}

/// Start indices of the windows along one axis of length `len ≥ block`: the first at 0, the
/// last flush with the end, evenly spread so that neighbours share at least `overlap`.
pub fn window_starts(len: usize, block: usize, overlap: f64) -> Vec<usize> {
    assert!(len >= block && block > 0, "axis shorter than the block");
    let step = ((block as f64) * (1.0 - overlap)).floor().max(1.0) as usize;
    let span = len - block;
    let n = span.div_ceil(step) + 1;
    if n == 1 {
        return vec![0];
    }
    (0..n).map(|i| ((i * span) as f64 / (n - 1) as f64).round() as usize).collect()
}

/// The Gaussian importance of each voxel of a window (σ = block/8 per axis), at least 1e-3
/// of the peak so the window edges still count where nothing else covers them.
pub fn gaussian_importance(block: [usize; 3]) -> ndarray::Array3<f32> {
    let profile = |n: usize| -> Vec<f64> {
        let sigma = (n as f64 / 8.0).max(1e-6);
        let c = (n as f64 - 1.0) / 2.0;
        (0..n).map(|i| (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp()).collect()
    };
    let (px, py, pz) = (profile(block[0]), profile(block[1]), profile(block[2]));
    ndarray::Array3::from_shape_fn(block, |(x, y, z)| ((px[x] * py[y] * pz[z]) as f32).max(1e-3))
}

/// Predict `src` (already fitted with [`fit_to_block`]) with `g` in `mode`, window by window;
/// the result has `src`'s grid. In train mode each window is normalized with its own batch
/// statistics, and the running statistics of `g` change: pass a copy to keep a model intact.
pub fn predict_tiled(
    g: &Generator,
    src: &Volume,
    block: [usize; 3],
    tiling: Tiling,
    mode: NormMode,
    intensity: &IntensityMap,
    device: &Device,
) -> Volume {
    let overlap = match tiling {
        Tiling::Centred => return predict_volume(g, src, mode, intensity, device),
        Tiling::SlidingWindow { overlap } => overlap,
    };
    let shape = src.shape();
    if shape == block {
        return predict_volume(g, src, mode, intensity, device);
    }
    let weight = gaussian_importance(block);
    let mut sum = ndarray::Array3::<f32>::zeros(shape);
    let mut total = ndarray::Array3::<f32>::zeros(shape);
    let starts = [0, 1, 2].map(|a| window_starts(shape[a], block[a], overlap));
    for &x in &starts[0] {
        for &y in &starts[1] {
            for &z in &starts[2] {
                let start = [x, y, z];
                let window = src.extract(start.map(|v| v as i64), block, 0.0);
                let pred = predict_volume(g, &window, mode, intensity, device);
                let region = ndarray::s![x..x + block[0], y..y + block[1], z..z + block[2]];
                ndarray::Zip::from(sum.slice_mut(region)).and(&pred.data).and(&weight).for_each(|s, &p, &w| *s += p * w);
                ndarray::Zip::from(total.slice_mut(region)).and(&weight).for_each(|t, &w| *t += w);
            }
        }
    }
    sum.zip_mut_with(&total, |s, &t| *s /= t);
    Volume::new(sum, src.geometry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;

    #[test]
    fn windows_cover_the_axis_with_the_requested_overlap() {
        assert_eq!(window_starts(32, 32, 0.5), vec![0]);
        assert_eq!(window_starts(48, 32, 0.5), vec![0, 16]);
        assert_eq!(window_starts(50, 32, 0.5), vec![0, 9, 18]);
        for (len, block, overlap) in [(100, 24, 0.25), (57, 16, 0.5), (33, 32, 0.0)] {
            let s = window_starts(len, block, overlap);
            assert_eq!(s[0], 0);
            assert_eq!(*s.last().unwrap(), len - block);
            let step = (block as f64 * (1.0 - overlap)).floor() as usize;
            assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= step), "{s:?}");
        }
    }

    #[test]
    fn importance_peaks_in_the_centre() {
        let w = gaussian_importance([8, 8, 8]);
        assert!(w[[3, 3, 3]] > 0.6 && w[[3, 3, 3]] == w[[4, 4, 4]] && w[[3, 3, 3]] > w[[2, 3, 3]]);
        assert!(w[[0, 0, 0]] >= 1e-3 && w[[0, 0, 0]] < 0.01);
    }

    #[test]
    fn fitting_pads_only_for_sliding_windows() {
        let v = Volume::filled([40, 20, 8], 1.0, Geometry::axial([1.0, 1.0, 2.0], [0.0; 3]));
        let centred = fit_to_block(&v, [32, 32, 8], Tiling::Centred, -1024.0);
        assert_eq!(centred.shape(), [32, 32, 8]);
        assert_eq!(centred.geometry.origin, [4.0, -6.0, 0.0]);
        let tiled = fit_to_block(&v, [32, 32, 8], Tiling::SlidingWindow { overlap: 0.5 }, -1024.0);
        assert_eq!(tiled.shape(), [40, 32, 8]);
        assert_eq!(tiled.geometry.origin, [0.0, -6.0, 0.0]);
        assert_eq!(tiled.data[[0, 0, 0]], -1024.0);
        assert_eq!(tiled.data[[0, 6, 0]], 1.0);
    }
}
