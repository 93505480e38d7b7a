//! The most likely class of every voxel of a large grid, from class scores on a small one:
//! the argmax of the trilinearly resized scores, computed on the CPU without ever holding
//! the resized score volumes. A 512×512×300 segmentation needs eight such volumes (2.5 GB);
//! this needs a few coarse planes per thread.
//!
//! The arithmetic is that of [`resize_trilinear`](super::resize_trilinear): axes resized in
//! the order x, y, z, each as `a + (b − a) · w` in f32 with the same weights, so the labels
//! equal the argmax of the tensor resize.

use super::resize::interpolation_table;
use ndarray::Array3;
use rayon::prelude::*;

/// Labels (`0..classes`, as f32; the first class wins a tie) on the grid `size` from the
/// scores `scores` of shape `[classes, x, y, z]` (standard layout), resized trilinearly.
pub fn argmax_of_resized(scores: &[f32], [classes, sx, sy, sz]: [usize; 4], size: [usize; 3], align_corners: bool) -> Array3<f32> {
    assert_eq!(scores.len(), classes * sx * sy * sz, "scores of shape {:?}", [classes, sx, sy, sz]);
    let [nx, ny, nz] = size;
    let tx = interpolation_table(sx, nx, align_corners);
    let ty = interpolation_table(sy, ny, align_corners);
    let tz = interpolation_table(sz, nz, align_corners);
    let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
    let mut labels = vec![0f32; nx * ny * nz];
    if labels.is_empty() || classes == 0 {
        return Array3::from_shape_vec(size, labels).expect("shape");
    }
    // One output x plane ([y][z], contiguous) per task.
    labels.par_chunks_mut(ny * nz).zip(&tx).for_each(|(plane, &(x0, x1, wx))| {
        // The scores resized along x at this x: [classes][sy][sz].
        let at = |c: usize, x: usize| &scores[(c * sx + x) * sy * sz..][..sy * sz];
        let px: Vec<f32> = (0..classes).flat_map(|c| at(c, x0).iter().zip(at(c, x1)).map(move |(&a, &b)| lerp(a, b, wx))).collect();
        let mut pxy = vec![0f32; classes * sz];
        let mut best = vec![0f32; classes];
        for (y, &(y0, y1, wy)) in ty.iter().enumerate() {
            // ... then along y: [classes][sz].
            for c in 0..classes {
                let (r0, r1) = (&px[(c * sy + y0) * sz..][..sz], &px[(c * sy + y1) * sz..][..sz]);
                for ((v, &a), &b) in pxy[c * sz..][..sz].iter_mut().zip(r0).zip(r1) {
                    *v = lerp(a, b, wy);
                }
            }
            // ... then along z, and the argmax over classes.
            for (label, &(z0, z1, wz)) in plane[y * nz..][..nz].iter_mut().zip(&tz) {
                for (c, v) in best.iter_mut().enumerate() {
                    *v = lerp(pxy[c * sz + z0], pxy[c * sz + z1], wz);
                }
                let mut arg = 0;
                for (c, &v) in best.iter().enumerate().skip(1) {
                    if v > best[arg] {
                        arg = c;
                    }
                }
                *label = arg as f32;
            }
        }
    });
    Array3::from_shape_vec(size, labels).expect("length is the product of the shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::resize_trilinear;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    #[test]
    fn equals_the_argmax_of_the_tensor_resize() {
        let device = Device::flex();
        let shape = [5, 4, 3, 6];
        let mut state = 11u64;
        let scores: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        for (size, align) in [([13, 9, 17], true), ([13, 9, 17], false), ([4, 2, 6], true), ([3, 7, 5], false)] {
            let got = argmax_of_resized(&scores, shape, size, align);
            let x: Tensor<5> = Tensor::<1>::from_data(TensorData::new(scores.clone(), [scores.len()]), &device).reshape([1, shape[0], shape[1], shape[2], shape[3]]);
            let want: Tensor<5, Int> = resize_trilinear(x, size, align).argmax(1);
            let want: Vec<f32> = want.into_data().convert::<i64>().try_to_vec::<i64>().unwrap().into_iter().map(|v| v as f32).collect();
            assert_eq!(got.shape(), &size[..]);
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want, "{size:?} align_corners {align}");
        }
    }

    #[test]
    fn a_tie_goes_to_the_first_class() {
        let labels = argmax_of_resized(&[1.0, 3.0, 3.0, 2.0], [4, 1, 1, 1], [2, 2, 2], true);
        assert!(labels.iter().all(|&l| l == 1.0));
    }
}
