//! A uniform cubic B-spline displacement field on a control-point grid, with ITK's
//! `BSplineTransform` conventions (so that it round-trips through a `.tfm` file).
//!
//! The displacement at world point `p` is `d(p) = Σ_k c_k · β(u₀ − k₀) β(u₁ − k₁) β(u₂ − k₂)`,
//! where `u` is the continuous control-grid index of `p` and `β` the cubic B-spline. As in
//! ITK, `d` is zero outside the grid's valid region (control index 1 to `size − 2` along every
//! axis): a grid made by [`BSplineField::covering`] has that region enclose the image.

use super::Settings;
use super::transform::{Affine, ParametricTransform, Transform};
use crate::volume::Geometry;
use crate::volume::mat3::{self, Mat3, Vec3};

/// The cubic B-spline `β₃(u)`.
pub fn cubic(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0
    } else if a < 2.0 {
        let b = 2.0 - a;
        b * b * b / 6.0
    } else {
        0.0
    }
}

/// The derivative `β₃'(u)`.
pub fn cubic_derivative(u: f64) -> f64 {
    let a = u.abs();
    let s = u.signum();
    if a < 1.0 {
        s * (-2.0 * a + 1.5 * a * a)
    } else if a < 2.0 {
        let b = 2.0 - a;
        -s * 0.5 * b * b
    } else {
        0.0
    }
}

/// The 4×4×4 control points a point depends on: the first one and the 1-D weights per axis.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    /// Control index of the first point of the support along each axis.
    pub start: [usize; 3],
    /// `weights[axis][i]`: the B-spline weight of control index `start[axis] + i`.
    pub weights: [[f64; 4]; 3],
}

/// Control-point grid and coefficients of a cubic B-spline displacement field.
#[derive(Debug, Clone, PartialEq)]
pub struct BSplineField {
    size: [usize; 3],
    origin: Vec3,
    spacing: Vec3,
    direction: Mat3,
    /// Displacement (mm) per control point, ITK's parameter order: every x component (control
    /// index x fastest, then y, then z), then every y component, then every z component.
    coefficients: Vec<f64>,
    /// World → continuous control index, `(direction · diag(spacing))⁻¹`.
    to_index: Mat3,
}

impl BSplineField {
    /// A zero field on the given control grid (`size` points per axis, at least 4).
    pub fn new(size: [usize; 3], origin: Vec3, spacing: Vec3, direction: Mat3) -> Option<BSplineField> {
        let grid = Geometry { spacing, origin, direction };
        let to_index = mat3::inverse(&grid.index_to_world_matrix())?;
        if size.iter().any(|&n| n < 4) || spacing.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            return None;
        }
        let n = size.iter().product::<usize>();
        Some(BSplineField { size, origin, spacing, direction, coefficients: vec![0.0; 3 * n], to_index })
    }

    /// A zero field whose valid region is the image's box (voxel centres ± half a voxel),
    /// with control points about `grid_spacing_mm` apart (exactly the box size divided by a
    /// whole number of mesh cells), aligned with the image axes.
    pub fn covering(geometry: &Geometry, shape: [usize; 3], grid_spacing_mm: f64) -> BSplineField {
        let corner = geometry.index_to_world([-0.5; 3]);
        let mut spacing = [0.0; 3];
        let mut size = [0; 3];
        for a in 0..3 {
            let extent = shape[a] as f64 * geometry.spacing[a];
            let mesh = (extent / grid_spacing_mm).ceil().max(1.0);
            spacing[a] = extent / mesh;
            size[a] = mesh as usize + 3;
        }
        let m = Geometry { spacing, origin: corner, direction: geometry.direction }.index_to_world_matrix();
        let origin = mat3::sub(corner, mat3::mul_vec(&m, [1.0; 3]));
        BSplineField::new(size, origin, spacing, geometry.direction).expect("a volume's direction is invertible")
    }

    /// Control points per axis.
    pub fn size(&self) -> [usize; 3] {
        self.size
    }

    /// World position of control point (0, 0, 0).
    pub fn origin(&self) -> Vec3 {
        self.origin
    }

    /// Distance between control points along each grid axis, mm.
    pub fn spacing(&self) -> Vec3 {
        self.spacing
    }

    /// Direction cosines of the grid axes (columns).
    pub fn direction(&self) -> Mat3 {
        self.direction
    }

    /// Number of control points.
    pub fn points(&self) -> usize {
        self.size.iter().product()
    }

    /// The coefficients in ITK's parameter order (see the field's docs).
    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    /// Replace the coefficients (same length and order as [`coefficients`](Self::coefficients)).
    pub fn set_coefficients(&mut self, c: &[f64]) {
        assert_eq!(c.len(), self.coefficients.len(), "B-spline coefficient count");
        self.coefficients.copy_from_slice(c);
    }

    /// Linear index of control point `(i, j, k)`.
    pub fn point_index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.size[0] * (j + self.size[1] * k)
    }

    /// Continuous control index of world point `p`.
    pub fn continuous_index(&self, p: Vec3) -> Vec3 {
        mat3::mul_vec(&self.to_index, mat3::sub(p, self.origin))
    }

    /// The support of the control-grid position `u` along one axis of `n` points, or `None`
    /// outside the valid region `[1, n − 2)`.
    pub fn axis_support(u: f64, n: usize) -> Option<(usize, [f64; 4])> {
        if !(u >= 1.0 && u < n as f64 - 2.0) {
            return None;
        }
        let start = (u - 1.0).floor();
        let t = u - start;
        Some((start as usize, [cubic(t), cubic(t - 1.0), cubic(t - 2.0), cubic(t - 3.0)]))
    }

    /// The support of world point `p`, or `None` where the field is zero (outside the valid region).
    pub fn support(&self, p: Vec3) -> Option<Support> {
        let u = self.continuous_index(p);
        let mut start = [0; 3];
        let mut weights = [[0.0; 4]; 3];
        for a in 0..3 {
            let (s, w) = Self::axis_support(u[a], self.size[a])?;
            start[a] = s;
            weights[a] = w;
        }
        Some(Support { start, weights })
    }

    /// The 64 control points of a support with their weights: `(point index, weight)`.
    pub fn support_points<'a>(&'a self, s: &'a Support) -> impl Iterator<Item = (usize, f64)> + 'a {
        (0..4).flat_map(move |c| {
            (0..4).flat_map(move |b| {
                let wbc = s.weights[1][b] * s.weights[2][c];
                let base = self.point_index(s.start[0], s.start[1] + b, s.start[2] + c);
                s.weights[0].iter().enumerate().map(move |(a, &wa)| (base + a, wa * wbc))
            })
        })
    }

    /// The displacement for a known support.
    pub fn displacement_at(&self, s: &Support) -> Vec3 {
        let n = self.points();
        let mut d = [0.0; 3];
        for (point, w) in self.support_points(s) {
            for (comp, dc) in d.iter_mut().enumerate() {
                *dc += w * self.coefficients[comp * n + point];
            }
        }
        d
    }

    /// The displacement at world point `p` (mm).
    pub fn displacement(&self, p: Vec3) -> Vec3 {
        self.support(p).map_or([0.0; 3], |s| self.displacement_at(&s))
    }

    /// The spatial derivative `∂d/∂p` at world point `p` (`[component][world axis]`).
    pub fn jacobian(&self, p: Vec3) -> Mat3 {
        let u = self.continuous_index(p);
        let mut start = [0usize; 3];
        let mut w = [[0.0; 4]; 3];
        let mut dw = [[0.0; 4]; 3];
        for a in 0..3 {
            let Some((s, weights)) = Self::axis_support(u[a], self.size[a]) else {
                return [[0.0; 3]; 3];
            };
            start[a] = s;
            w[a] = weights;
            let t = u[a] - s as f64;
            dw[a] = [0, 1, 2, 3].map(|i| cubic_derivative(t - i as f64));
        }
        let n = self.points();
        // Derivative with respect to the control index u, then chained to world coordinates.
        let mut du = [[0.0; 3]; 3];
        for c in 0..4 {
            for b in 0..4 {
                for a in 0..4 {
                    let idx = self.point_index(start[0] + a, start[1] + b, start[2] + c);
                    let g = [dw[0][a] * w[1][b] * w[2][c], w[0][a] * dw[1][b] * w[2][c], w[0][a] * w[1][b] * dw[2][c]];
                    for (comp, row) in du.iter_mut().enumerate() {
                        let coef = self.coefficients[comp * n + idx];
                        for (axis, v) in row.iter_mut().enumerate() {
                            *v += coef * g[axis];
                        }
                    }
                }
            }
        }
        mat3::mul(&du, &self.to_index)
    }

    /// The same field on a grid of half the spacing (exact dyadic refinement of a uniform
    /// cubic B-spline): new control point `2j − 1` sits on old point `j`.
    pub fn refined(&self) -> BSplineField {
        let new_size = self.size.map(|n| 2 * n - 3);
        let spacing = self.spacing.map(|s| s / 2.0);
        // Old point 1 (the valid region's start) is new point 1: origin moves by half a spacing.
        let grid = Geometry { spacing, origin: self.origin, direction: self.direction };
        let origin = mat3::add(self.origin, mat3::mul_vec(&grid.index_to_world_matrix(), [1.0; 3]));
        let mut out = BSplineField::new(new_size, origin, spacing, self.direction).expect("refined grid is valid");
        let mut comp_data = Vec::with_capacity(3 * out.points());
        let n = self.points();
        for comp in 0..3 {
            let mut data = self.coefficients[comp * n..(comp + 1) * n].to_vec();
            let mut shape = self.size;
            for axis in 0..3 {
                data = refine_axis(&data, shape, axis);
                shape[axis] = new_size[axis];
            }
            comp_data.extend(data);
        }
        out.coefficients = comp_data;
        out
    }

    /// The bending energy of the control grid, `mean over points of Σ (∂²d/∂a∂b)²` with the
    /// second derivatives taken as second differences of the coefficients (mm⁻¹), and its
    /// gradient with respect to the coefficients.
    pub fn bending_energy(&self) -> (f64, Vec<f64>) {
        let n = self.points();
        let [nx, ny, nz] = self.size;
        let h = self.spacing;
        let mut energy = 0.0;
        let mut grad = vec![0.0; 3 * n];
        let strides = [1usize, nx, nx * ny];
        for comp in 0..3 {
            let c = &self.coefficients[comp * n..(comp + 1) * n];
            let g = &mut grad[comp * n..(comp + 1) * n];
            for k in 0..nz {
                for j in 0..ny {
                    for i in 0..nx {
                        let idx = [i, j, k];
                        let at = i + nx * (j + ny * k);
                        for a in 0..3 {
                            for b in a..3 {
                                // Second difference along a and b, centred; skip at the border.
                                let (taps, scale): (Vec<(usize, f64)>, f64) = if a == b {
                                    if idx[a] == 0 || idx[a] + 1 >= self.size[a] {
                                        continue;
                                    }
                                    (vec![(at - strides[a], 1.0), (at, -2.0), (at + strides[a], 1.0)], 1.0 / (h[a] * h[a]))
                                } else {
                                    if idx[a] + 1 >= self.size[a] || idx[b] + 1 >= self.size[b] {
                                        continue;
                                    }
                                    let (sa, sb) = (strides[a], strides[b]);
                                    (vec![(at, 1.0), (at + sa, -1.0), (at + sb, -1.0), (at + sa + sb, 1.0)], 1.0 / (h[a] * h[b]))
                                };
                                let weight = if a == b { 1.0 } else { 2.0 };
                                let v: f64 = taps.iter().map(|&(t, w)| w * c[t]).sum::<f64>() * scale;
                                energy += weight * v * v;
                                for &(t, w) in &taps {
                                    g[t] += weight * 2.0 * v * w * scale;
                                }
                            }
                        }
                    }
                }
            }
        }
        let norm = (n as f64).max(1.0);
        grad.iter_mut().for_each(|v| *v /= norm);
        (energy / norm, grad)
    }
}

/// The B-spline part of a transform as a level optimizes it: the coefficients (mm) are the
/// parameters, the affine part is held fixed, and the cost gains `bending_weight` × the
/// bending energy.
pub struct BSplineLevel {
    field: BSplineField,
    affine: Affine,
    /// `Aᵀ`: `∂y/∂d = A`, so `∂cost/∂d = Aᵀ·∂cost/∂y`.
    affine_transposed: Mat3,
    bending_weight: f64,
}

impl ParametricTransform for BSplineLevel {
    /// The point and its support (`None`: zero displacement there).
    type Sample = (Vec3, Option<Support>);

    fn start(transform: &Transform, _points: &[Vec3], settings: &Settings) -> BSplineLevel {
        let field = transform.bspline.clone().expect("a B-spline level needs a B-spline field");
        let affine = transform.affine;
        BSplineLevel { field, affine, affine_transposed: mat3::transpose(&affine.matrix), bending_weight: settings.bending_weight }
    }

    fn sample(&self, p: Vec3) -> Self::Sample {
        (p, self.field.support(p))
    }

    fn parameters(&self) -> Vec<f64> {
        self.field.coefficients().to_vec()
    }

    fn set_parameters(&mut self, x: &[f64]) {
        self.field.set_coefficients(x);
    }

    fn apply(&self, (p, s): &Self::Sample) -> Vec3 {
        self.affine.apply(s.as_ref().map_or(*p, |s| mat3::add(*p, self.field.displacement_at(s))))
    }

    fn add_gradient(&self, (_, s): &Self::Sample, g: Vec3, acc: &mut [f64]) {
        let Some(s) = s else { return };
        let v = mat3::mul_vec(&self.affine_transposed, g);
        if v == [0.0; 3] {
            return;
        }
        let n = self.field.points();
        for (point, w) in self.field.support_points(s) {
            for comp in 0..3 {
                acc[comp * n + point] += w * v[comp];
            }
        }
    }

    fn regularizer(&self) -> Option<(f64, Vec<f64>)> {
        (self.bending_weight > 0.0).then(|| {
            let (energy, gradient) = self.field.bending_energy();
            (self.bending_weight * energy, gradient.into_iter().map(|b| self.bending_weight * b).collect())
        })
    }

    fn store(&self, transform: &mut Transform) {
        transform.bspline = Some(self.field.clone());
    }
}

/// Refine one axis of a coefficient block (x fastest layout) by the cubic B-spline
/// two-scale relation: even new points `(c_j + c_{j+1}) / 2`, odd ones `(c_{j−1} + 6c_j + c_{j+1}) / 8`.
fn refine_axis(data: &[f64], shape: [usize; 3], axis: usize) -> Vec<f64> {
    let n = shape[axis];
    let m = 2 * n - 3;
    let mut new_shape = shape;
    new_shape[axis] = m;
    let strides = [1, shape[0], shape[0] * shape[1]];
    let new_strides = [1, new_shape[0], new_shape[0] * new_shape[1]];
    let mut out = vec![0.0; new_shape.iter().product()];
    for k in 0..new_shape[2] {
        for j in 0..new_shape[1] {
            for i in 0..new_shape[0] {
                let mut idx = [i, j, k];
                let q = idx[axis];
                let old = |idx: &[usize; 3], t: usize| {
                    let mut id = *idx;
                    id[axis] = t;
                    data[id[0] * strides[0] + id[1] * strides[1] + id[2] * strides[2]]
                };
                let v = if q % 2 == 0 {
                    let jj = q / 2;
                    0.5 * (old(&idx, jj) + old(&idx, jj + 1))
                } else {
                    let jj = q.div_ceil(2);
                    (old(&idx, jj - 1) + 6.0 * old(&idx, jj) + old(&idx, jj + 1)) / 8.0
                };
                idx[axis] = q;
                out[idx[0] * new_strides[0] + idx[1] * new_strides[1] + idx[2] * new_strides[2]] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_field() -> BSplineField {
        let g = Geometry { spacing: [1.5, 2.0, 3.0], origin: [-20.0, 10.0, 5.0], direction: mat3::rotation([0.2, 1.0, -0.3], 0.3) };
        let mut f = BSplineField::covering(&g, [30, 20, 12], 12.0);
        let c: Vec<f64> = (0..f.coefficients().len()).map(|i| ((i * 7919) % 97) as f64 / 20.0 - 2.4).collect();
        f.set_coefficients(&c);
        f
    }

    #[test]
    fn weights_sum_to_one_and_derivative_matches() {
        for t in [1.0, 1.3, 1.999] {
            let w: f64 = [t, t - 1.0, t - 2.0, t - 3.0].map(cubic).iter().sum();
            assert!((w - 1.0).abs() < 1e-12);
        }
        for u in [-1.7, -0.4, 0.2, 1.3] {
            let fd = (cubic(u + 1e-6) - cubic(u - 1e-6)) / 2e-6;
            assert!((fd - cubic_derivative(u)).abs() < 1e-6);
        }
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        let f = random_field();
        let p = [-5.0, 25.0, 20.0];
        let j = f.jacobian(p);
        for axis in 0..3 {
            let mut a = p;
            let mut b = p;
            a[axis] += 1e-4;
            b[axis] -= 1e-4;
            let (da, db) = (f.displacement(a), f.displacement(b));
            for comp in 0..3 {
                let fd = (da[comp] - db[comp]) / 2e-4;
                assert!((fd - j[comp][axis]).abs() < 1e-6, "{comp} {axis}: {fd} vs {}", j[comp][axis]);
            }
        }
    }

    #[test]
    fn refinement_keeps_the_field() {
        let f = random_field();
        let r = f.refined();
        let g = Geometry { spacing: [1.5, 2.0, 3.0], origin: [-20.0, 10.0, 5.0], direction: f.direction() };
        for idx in [[0.0, 0.0, 0.0], [29.0, 19.0, 11.0], [13.3, 7.7, 4.1], [-0.4, 19.4, 0.2]] {
            let p = g.index_to_world(idx);
            let (a, b) = (f.displacement(p), r.displacement(p));
            assert!(mat3::norm(a) > 0.0);
            assert!(mat3::norm(mat3::sub(a, b)) < 1e-9, "{idx:?}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn bending_energy_gradient_matches_finite_differences() {
        let mut f = random_field();
        let (_, g) = f.bending_energy();
        let c0 = f.coefficients().to_vec();
        for t in [5usize, 200, c0.len() - 9] {
            let mut c = c0.clone();
            c[t] += 1e-4;
            f.set_coefficients(&c);
            let up = f.bending_energy().0;
            c[t] -= 2e-4;
            f.set_coefficients(&c);
            let down = f.bending_energy().0;
            assert!(((up - down) / 2e-4 - g[t]).abs() < 1e-7 * (1.0 + g[t].abs()));
        }
    }
}
