//! A rigid transform as a level optimizes it: 6 parameters, a rotation about the transform's
//! centre (the fixed image's centre) by Euler angles `R = Rz·Ry·Rx` (scaled by the samples'
//! radius so that a unit change moves points by about a millimetre) applied after the level's
//! start, and the change of the translation (mm). The result is stored as the affine part.

use super::Settings;
use super::affine::{after_bspline, radius};
use super::bspline::BSplineField;
use super::transform::{Affine, ParametricTransform, Transform};
use crate::volume::mat3::{self, Mat3, Vec3};

/// Rotations about x, y, z by angle `a` and their derivatives.
fn axis_rotation(axis: usize, a: f64) -> (Mat3, Mat3) {
    let (s, c) = a.sin_cos();
    let (i, j) = [(1, 2), (2, 0), (0, 1)][axis];
    let mut r = mat3::IDENTITY;
    let mut d = [[0.0; 3]; 3];
    (r[i][i], r[i][j], r[j][i], r[j][j]) = (c, -s, s, c);
    (d[i][i], d[i][j], d[j][i], d[j][j]) = (-s, -c, c, -s);
    (r, d)
}

/// The rigid part of a transform, about the level's start.
pub struct RigidLevel {
    start: Affine,
    radius: f64,
    bspline: Option<BSplineField>,
    x: Vec<f64>,
    current: Affine,
    /// `∂R/∂xᵢ · A₀` for the three angle parameters.
    d_matrix: [Mat3; 3],
}

impl ParametricTransform for RigidLevel {
    type Sample = Vec3;

    fn start(transform: &Transform, points: &[Vec3], _settings: &Settings) -> RigidLevel {
        let start = transform.affine;
        let mut level = RigidLevel { start, radius: radius(points, start.center), bspline: transform.bspline.clone(), x: vec![0.0; 6], current: start, d_matrix: [[[0.0; 3]; 3]; 3] };
        level.set_parameters(&[0.0; 6]);
        level
    }

    fn sample(&self, p: Vec3) -> Vec3 {
        after_bspline(&self.bspline, p)
    }

    fn parameters(&self) -> Vec<f64> {
        self.x.clone()
    }

    fn set_parameters(&mut self, x: &[f64]) {
        let [(rx, dx), (ry, dy), (rz, dz)] = [0, 1, 2].map(|a| axis_rotation(a, x[a] / self.radius));
        let rotation = mat3::mul(&rz, &mat3::mul(&ry, &rx));
        let d = [mat3::mul(&rz, &mat3::mul(&ry, &dx)), mat3::mul(&rz, &mat3::mul(&dy, &rx)), mat3::mul(&dz, &mat3::mul(&ry, &rx))];
        self.d_matrix = d.map(|m| mat3::mul(&m, &self.start.matrix).map(|row| row.map(|v| v / self.radius)));
        self.current = Affine {
            matrix: mat3::mul(&rotation, &self.start.matrix),
            translation: mat3::add(self.start.translation, [x[3], x[4], x[5]]),
            center: self.start.center,
        };
        self.x.copy_from_slice(x);
    }

    fn apply(&self, p: &Vec3) -> Vec3 {
        self.current.apply(*p)
    }

    fn add_gradient(&self, p: &Vec3, g: Vec3, acc: &mut [f64]) {
        let rel = mat3::sub(*p, self.start.center);
        for (a, m) in self.d_matrix.iter().enumerate() {
            acc[a] += mat3::dot(g, mat3::mul_vec(m, rel));
        }
        for r in 0..3 {
            acc[3 + r] += g[r];
        }
    }

    fn store(&self, transform: &mut Transform) {
        transform.affine = self.current;
    }
}
