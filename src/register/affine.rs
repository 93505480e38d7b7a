//! The affine part of the transform as a level optimizes it: 12 parameters, the change of the
//! linear part (row by row, scaled by the samples' radius so that a unit change moves points
//! by about a millimetre) and of the translation (mm), from the level's start.

use super::Settings;
use super::bspline::BSplineField;
use super::transform::{Affine, ParametricTransform, Transform};
use crate::volume::mat3::{self, Vec3};

/// The RMS distance (mm, at least 1) of `points` from `center`: the lever arm that makes a
/// change of the linear part comparable with a translation.
pub fn radius(points: &[Vec3], center: Vec3) -> f64 {
    let s: f64 = points.iter().map(|p| mat3::dot(mat3::sub(*p, center), mat3::sub(*p, center))).sum();
    (s / points.len().max(1) as f64).sqrt().max(1.0)
}

/// A fixed point after the transform's B-spline displacement (held fixed on linear levels),
/// where the linear part acts.
pub fn after_bspline(bspline: &Option<BSplineField>, p: Vec3) -> Vec3 {
    bspline.as_ref().map_or(p, |b| mat3::add(p, b.displacement(p)))
}

/// The affine part of a transform, about the level's start (see the module docs).
pub struct AffineLevel {
    start: Affine,
    radius: f64,
    bspline: Option<BSplineField>,
    x: Vec<f64>,
    current: Affine,
}

impl ParametricTransform for AffineLevel {
    type Sample = Vec3;

    fn start(transform: &Transform, points: &[Vec3], _settings: &Settings) -> AffineLevel {
        let start = transform.affine;
        AffineLevel { start, radius: radius(points, start.center), bspline: transform.bspline.clone(), x: vec![0.0; 12], current: start }
    }

    fn sample(&self, p: Vec3) -> Vec3 {
        after_bspline(&self.bspline, p)
    }

    fn parameters(&self) -> Vec<f64> {
        self.x.clone()
    }

    fn set_parameters(&mut self, x: &[f64]) {
        let mut a = self.start;
        for r in 0..3 {
            for k in 0..3 {
                a.matrix[r][k] += x[3 * r + k] / self.radius;
            }
            a.translation[r] += x[9 + r];
        }
        self.x.copy_from_slice(x);
        self.current = a;
    }

    fn apply(&self, p: &Vec3) -> Vec3 {
        self.current.apply(*p)
    }

    fn add_gradient(&self, p: &Vec3, g: Vec3, acc: &mut [f64]) {
        let rel = mat3::sub(*p, self.start.center);
        for r in 0..3 {
            for k in 0..3 {
                acc[3 * r + k] += g[r] * rel[k] / self.radius;
            }
            acc[9 + r] += g[r];
        }
    }

    fn store(&self, transform: &mut Transform) {
        transform.affine = self.current;
    }
}
