//! Resampling moving images onto the fixed grid through a [`Transform`], all of them in one
//! pass. When the B-spline grid is aligned with the output grid (as registration makes it),
//! the displacement is evaluated separably: per x slab the control grid is reduced along x,
//! per row along y, per voxel along z, so each voxel costs 4 multiply-adds per component
//! instead of 64.

use super::bspline::BSplineField;
use super::transform::Transform;
use crate::error::{Error, Result};
use crate::volume::mat3;
use crate::volume::resample::{Boundary, Trilinear};
use crate::volume::{Geometry, Volume};
use ndarray::Array3;
use rayon::prelude::*;

/// The separable B-spline weights of one output axis: for each output index, the first
/// control index and 4 weights, or `None` outside the valid region (zero displacement).
type AxisWeights = Vec<Option<(usize, [f64; 4])>>;

/// Resample each `(image, fill)` onto (`shape`, `geometry`) through `transform`, by trilinear
/// interpolation (ITK's linear interpolator: points within half a voxel of the image count as
/// inside, with border voxels repeated); points outside an image get its `fill`. All images
/// must share one grid.
pub fn resample_all(transform: &Transform, shape: [usize; 3], geometry: &Geometry, images: &[(&Volume, f32)]) -> Result<Vec<Volume>> {
    let Some((first, _)) = images.first() else {
        return Ok(Vec::new());
    };
    if images.iter().any(|(v, _)| !v.same_grid(first, 1e-4)) {
        return Err(Error::invalid("the images to resample do not share one voxel grid"));
    }
    // moving index = M⁻¹·(A·(p + d − c) + c + t − o) with p = O + F·index: linear in the
    // output index and in d, so K = M⁻¹A, L = K·F and base = K·(O − c) + M⁻¹(c + t − o).
    let m_inv = mat3::inverse(&first.geometry.index_to_world_matrix()).ok_or_else(|| Error::invalid("singular image direction"))?;
    let a = &transform.affine;
    let kd = mat3::mul(&m_inv, &a.matrix);
    let l = mat3::mul(&kd, &geometry.index_to_world_matrix());
    let base = mat3::add(
        mat3::mul_vec(&kd, mat3::sub(geometry.origin, a.center)),
        mat3::mul_vec(&m_inv, mat3::sub(mat3::add(a.center, a.translation), first.geometry.origin)),
    );
    let separable = transform.bspline.as_ref().and_then(|b| axis_weights(b, shape, geometry));
    let n = shape[1] * shape[2];
    let mut outputs: Vec<Vec<f32>> = images.iter().map(|_| vec![0f32; shape[0] * n]).collect();
    let sources: Vec<&[f32]> = images.iter().map(|(v, _)| v.data.as_slice().expect("standard layout")).collect();
    let fills: Vec<f32> = images.iter().map(|(_, f)| *f).collect();
    let src_shape = first.shape();
    // Per x slab, one mutable slice per output.
    let mut slabs: Vec<Vec<&mut [f32]>> = (0..shape[0]).map(|_| Vec::with_capacity(images.len())).collect();
    for out in outputs.iter_mut() {
        for (slab, chunk) in slabs.iter_mut().zip(out.chunks_mut(n)) {
            slab.push(chunk);
        }
    }
    slabs.into_par_iter().enumerate().for_each(|(i, mut slab)| {
        // Displacement of every voxel of the slab, row by row.
        let bspline = transform.bspline.as_ref();
        let reduced_x = match (&separable, bspline) {
            (Some((wx, _, _)), Some(b)) => wx[i].map(|(s, w)| reduce_x(b, s, &w)),
            _ => None,
        };
        let mut row_d = vec![[0.0f64; 3]; shape[2]];
        for j in 0..shape[1] {
            match (&separable, bspline) {
                (Some((_, wy, wz)), Some(b)) => {
                    let size = b.size();
                    row_d.iter_mut().for_each(|d| *d = [0.0; 3]);
                    if let (Some(rx), Some((sy, w))) = (&reduced_x, wy[j]) {
                        // Reduce along y: one line of control points along z.
                        let mut line = vec![[0.0f64; 3]; size[2]];
                        for (b_, &wb) in w.iter().enumerate() {
                            let yy = sy + b_;
                            for (kc, l) in line.iter_mut().enumerate() {
                                let v = rx[yy + size[1] * kc];
                                for c in 0..3 {
                                    l[c] += wb * v[c];
                                }
                            }
                        }
                        for (k, d) in row_d.iter_mut().enumerate() {
                            if let Some((sz, wzk)) = wz[k] {
                                for (c_, &wc) in wzk.iter().enumerate() {
                                    let v = line[sz + c_];
                                    for c in 0..3 {
                                        d[c] += wc * v[c];
                                    }
                                }
                            }
                        }
                    }
                }
                (None, Some(b)) => {
                    for (k, d) in row_d.iter_mut().enumerate() {
                        *d = b.displacement(geometry.index_to_world([i as f64, j as f64, k as f64]));
                    }
                }
                _ => {}
            }
            // Moving index of voxel (i, j, k) displaced by d: L·(i, j, k) + K·d + base.
            let row0 = [0, 1, 2].map(|r| base[r] + l[r][0] * i as f64 + l[r][1] * j as f64);
            for (k, d) in row_d.iter().enumerate() {
                let u = [0, 1, 2].map(|r| row0[r] + l[r][2] * k as f64 + kd[r][0] * d[0] + kd[r][1] * d[1] + kd[r][2] * d[2]);
                let at = j * shape[2] + k;
                match Trilinear::locate(u, src_shape, Boundary::HalfVoxel) {
                    Some(cell) => {
                        let (corners, weights) = cell.weights();
                        let offsets = corners.map(|[x, y, z]| (x * src_shape[1] + y) * src_shape[2] + z);
                        for (out, src) in slab.iter_mut().zip(&sources) {
                            let mut acc = 0.0f64;
                            for (&c, &w) in offsets.iter().zip(&weights) {
                                if w != 0.0 {
                                    acc += w * src[c] as f64;
                                }
                            }
                            out[at] = acc as f32;
                        }
                    }
                    None => {
                        for (out, &fill) in slab.iter_mut().zip(&fills) {
                            out[at] = fill;
                        }
                    }
                }
            }
        }
    });
    Ok(outputs
        .into_iter()
        .map(|data| Volume::new(Array3::from_shape_vec(shape, data).expect("shape matches"), *geometry))
        .collect())
}

/// Per-axis weights when the control grid's axes are the output grid's axes (same
/// direction), so that control index `u_a` depends on output index `i_a` alone.
fn axis_weights(b: &BSplineField, shape: [usize; 3], geometry: &Geometry) -> Option<(AxisWeights, AxisWeights, AxisWeights)> {
    let same = (0..3).all(|r| (0..3).all(|c| (b.direction()[r][c] - geometry.direction[r][c]).abs() < 1e-9));
    if !same {
        return None;
    }
    let u0 = b.continuous_index(geometry.origin);
    let size = b.size();
    let axis = |a: usize| -> AxisWeights {
        let scale = geometry.spacing[a] / b.spacing()[a];
        (0..shape[a]).map(|i| BSplineField::axis_support(u0[a] + scale * i as f64, size[a])).collect()
    };
    Some((axis(0), axis(1), axis(2)))
}

/// The control grid reduced along x at one slab: `[y + ny·z]` → displacement components.
fn reduce_x(b: &BSplineField, start: usize, w: &[f64; 4]) -> Vec<[f64; 3]> {
    let [_, ny, nz] = b.size();
    let n = b.points();
    let c = b.coefficients();
    let mut out = vec![[0.0; 3]; ny * nz];
    for kc in 0..nz {
        for jc in 0..ny {
            let o = &mut out[jc + ny * kc];
            for (a, &wa) in w.iter().enumerate() {
                let idx = b.point_index(start + a, jc, kc);
                for comp in 0..3 {
                    o[comp] += wa * c[comp * n + idx];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::transform::Affine;
    use crate::volume::Interpolation;

    #[test]
    fn one_pass_resampling_equals_point_by_point_resampling() {
        let g = Geometry { spacing: [2.0, 1.5, 3.0], origin: [-20.0, -10.0, 5.0], direction: mat3::rotation([0.0, 0.3, 1.0], 0.2) };
        let shape = [20, 24, 10];
        let mut b = BSplineField::covering(&g, shape, 12.0);
        let c: Vec<f64> = (0..b.coefficients().len()).map(|i| 3.0 * ((i * 37 % 101) as f64 / 101.0 - 0.5)).collect();
        b.set_coefficients(&c);
        let t = Transform { affine: Affine { matrix: mat3::rotation([1.0, 0.0, 0.2], 0.05), translation: [2.0, -1.0, 0.5], center: [0.0, 0.0, 20.0] }, bspline: Some(b) };
        let mg = Geometry::axial([2.5, 2.5, 4.0], [-30.0, -25.0, 0.0]);
        let moving = Volume::new(Array3::from_shape_fn([20, 20, 10], |(i, j, k)| ((i * 7 + j * 3 + k * 11) % 17) as f32 * 10.0), mg);
        let other = moving.map(|v| 2.0 * v + 1.0);
        let out = resample_all(&t, shape, &g, &[(&moving, -1024.0), (&other, 0.0)]).unwrap();
        let expect = moving.resample(shape, &g, |p| t.apply(p), Interpolation::Linear, -1024.0);
        let expect2 = other.resample(shape, &g, |p| t.apply(p), Interpolation::Linear, 0.0);
        let max = |a: &Volume, b: &Volume| a.data.iter().zip(b.data.iter()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max(&out[0], &expect) < 1e-3, "{}", max(&out[0], &expect));
        assert!(max(&out[1], &expect2) < 1e-3);
        assert!(out[0].data.iter().any(|&v| v == -1024.0) && out[0].data.iter().any(|&v| v > 0.0));
    }
}
