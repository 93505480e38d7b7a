//! Trilinear resizing of `[batch, channel, x, y, z]` tensors, differentiable.
//!
//! Burn's `interpolate` is 2-D only. Trilinear interpolation is separable, so it is done
//! one axis at a time: gather the two neighbouring planes with `select` and blend them with
//! per-plane weights. Both operations carry gradients, so the result is differentiable with
//! respect to the input on an autodiff device.

use burn::tensor::{Int, Tensor, TensorData};

/// Where output sample `i` of `n_out` falls on an input axis of `n_in` samples.
///
/// `align_corners = true` maps the first and last samples onto each other (PyTorch's
/// `align_corners=True`); `false` maps voxel centres of equal-width cells (PyTorch's
/// default, with the source index clamped at 0).
fn source_coordinate(i: usize, n_in: usize, n_out: usize, align_corners: bool) -> f64 {
    if align_corners {
        if n_out <= 1 { 0.0 } else { i as f64 * (n_in - 1) as f64 / (n_out - 1) as f64 }
    } else {
        let scale = n_in as f64 / n_out as f64;
        ((i as f64 + 0.5) * scale - 0.5).max(0.0)
    }
}

/// For each of the `n_out` output samples along an axis of `n_in`, the two input samples it
/// lies between and the weight of the upper one: output = a + (b − a) · w.
pub(crate) fn interpolation_table(n_in: usize, n_out: usize, align_corners: bool) -> Vec<(usize, usize, f32)> {
    (0..n_out)
        .map(|i| {
            let s = source_coordinate(i, n_in, n_out, align_corners).min((n_in - 1) as f64);
            let i0 = s.floor() as usize;
            (i0, (i0 + 1).min(n_in - 1), (s - i0 as f64) as f32)
        })
        .collect()
}

/// `x` linearly interpolated along `axis` (2, 3 or 4) to `n_out` samples.
fn resize_axis(x: Tensor<5>, axis: usize, n_out: usize, align_corners: bool) -> Tensor<5> {
    let n_in = x.dims()[axis];
    assert!((2..5).contains(&axis) && n_out > 0, "resize to {n_out} on axis {axis}");
    if n_in == n_out {
        return x;
    }
    let device = x.device();
    let table = interpolation_table(n_in, n_out, align_corners);
    let lower = table.iter().map(|t| t.0 as i64).collect();
    let upper = table.iter().map(|t| t.1 as i64).collect();
    let weight = table.iter().map(|t| t.2).collect();
    let lo: Tensor<1, Int> = Tensor::from_data(TensorData::new(lower, [n_out]), &device);
    let hi: Tensor<1, Int> = Tensor::from_data(TensorData::new(upper, [n_out]), &device);
    let mut shape = [1usize; 5];
    shape[axis] = n_out;
    let w: Tensor<5> = Tensor::<1>::from_data(TensorData::new(weight, [n_out]), &device).reshape(shape);
    let a = x.clone().select(axis, lo);
    let b = x.select(axis, hi);
    a.clone() + (b - a) * w
}

/// Resize `x` (`[batch, channel, x, y, z]`) to the spatial `size` by trilinear interpolation.
pub fn resize_trilinear(x: Tensor<5>, size: [usize; 3], align_corners: bool) -> Tensor<5> {
    let mut out = x;
    for (k, &n) in size.iter().enumerate() {
        out = resize_axis(out, 2 + k, n, align_corners);
    }
    out
}

/// Double every spatial axis by repeating each voxel (nearest-neighbour ×2 up-sampling).
pub fn upsample_nearest2(x: Tensor<5>) -> Tensor<5> {
    let [b, c, nx, ny, nz] = x.dims();
    x.reshape([b, c, nx, 1, ny, 1, nz, 1])
        .expand([b, c, nx, 2, ny, 2, nz, 2])
        .reshape([b, c, 2 * nx, 2 * ny, 2 * nz])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn values(t: Tensor<5>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn align_corners_keeps_end_points_and_is_linear() {
        let device = Device::flex();
        // A linear ramp stays a linear ramp, ends fixed.
        let x: Tensor<5> = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 3.0, 6.0], [3]), &device)
            .reshape([1, 1, 3, 1, 1]);
        let y = values(resize_trilinear(x, [7, 2, 1], true));
        let expect: Vec<f32> = (0..7).flat_map(|i| [i as f32, i as f32]).collect();
        assert_eq!(y.len(), 14);
        for (a, b) in y.iter().zip(&expect) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn half_pixel_matches_pytorch_upsample_by_two() {
        // torch.nn.functional.interpolate(torch.tensor([0.,1.,2.,3.]).view(1,1,4,1,1),
        //   size=(8,1,1), mode='trilinear', align_corners=False)
        let device = Device::flex();
        let x: Tensor<5> = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0], [4]), &device)
            .reshape([1, 1, 4, 1, 1]);
        let y = values(resize_trilinear(x, [8, 1, 1], false));
        let expect = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn nearest_doubling_repeats_voxels() {
        let device = Device::flex();
        let x: Tensor<5> = Tensor::<1>::from_data(TensorData::new((0..8).map(|v| v as f32).collect::<Vec<_>>(), [8]), &device)
            .reshape([1, 1, 2, 2, 2]);
        let y = upsample_nearest2(x.clone());
        assert_eq!(y.dims(), [1, 1, 4, 4, 4]);
        let yv = values(y);
        let xv = values(x);
        for i in 0..4 {
            for j in 0..4 {
                for k in 0..4 {
                    assert_eq!(yv[i * 16 + j * 4 + k], xv[(i / 2) * 4 + (j / 2) * 2 + k / 2]);
                }
            }
        }
    }

    #[test]
    fn gradient_flows_through_the_resize() {
        let device = Device::flex().autodiff();
        let x: Tensor<5> = Tensor::ones([1, 1, 3, 3, 3], &device).require_grad();
        let y = resize_trilinear(x.clone(), [5, 4, 6], true);
        let grads = y.sum().backward();
        let g = x.grad(&grads).unwrap();
        // Interpolation weights along each axis sum to the output length.
        let total: f32 = g.into_data().try_to_vec::<f32>().unwrap().iter().sum();
        assert!((total - 120.0).abs() < 1e-3, "{total}");
    }
}
