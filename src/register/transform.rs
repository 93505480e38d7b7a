//! The registration transform: an affine map after a B-spline displacement,
//! `T(p) = A·(p + d(p) − c) + c + t`, mapping CTA (fixed) world points to perfusion (moving)
//! world points, as ITK's resampling expects. Stored as an ITK transform file (`.tfm`):
//! a `CompositeTransform_double_3_3` holding an `AffineTransform_double_3_3` and then a
//! `BSplineTransform_double_3_3` (ITK applies a composite's last transform first).

use super::Settings;
use super::bspline::BSplineField;
use crate::error::{Error, Result};
use crate::volume::Geometry;
use crate::volume::mat3::{self, Mat3, Vec3};
use std::fmt::Write as _;
use std::path::Path;

/// `p ↦ A·(p − c) + c + t` (ITK's `AffineTransform`: parameters `A` row by row then `t`,
/// fixed parameters `c`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// The linear part `A`.
    pub matrix: Mat3,
    /// The translation `t`, mm.
    pub translation: Vec3,
    /// The centre `c` of rotation and scaling, world mm.
    pub center: Vec3,
}

impl Affine {
    /// The identity about `center`.
    pub fn identity(center: Vec3) -> Affine {
        Affine { matrix: mat3::IDENTITY, translation: [0.0; 3], center }
    }

    /// Apply to a world point.
    pub fn apply(&self, p: Vec3) -> Vec3 {
        mat3::add(mat3::add(mat3::mul_vec(&self.matrix, mat3::sub(p, self.center)), self.center), self.translation)
    }
}

/// Affine after an optional B-spline displacement (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// The affine part.
    pub affine: Affine,
    /// The B-spline part, applied first; `None` for an affine-only registration.
    pub bspline: Option<BSplineField>,
}

impl Transform {
    /// The identity (about `center`).
    pub fn identity(center: Vec3) -> Transform {
        Transform { affine: Affine::identity(center), bspline: None }
    }

    /// Fixed world point → moving world point.
    pub fn apply(&self, p: Vec3) -> Vec3 {
        match &self.bspline {
            Some(b) => self.affine.apply(mat3::add(p, b.displacement(p))),
            None => self.affine.apply(p),
        }
    }

    /// `det ∂T/∂p` at `p`.
    pub fn jacobian_determinant(&self, p: Vec3) -> f64 {
        let a = mat3::det(&self.affine.matrix);
        match &self.bspline {
            Some(b) => {
                let mut j = b.jacobian(p);
                for (i, row) in j.iter_mut().enumerate() {
                    row[i] += 1.0;
                }
                a * mat3::det(&j)
            }
            None => a,
        }
    }

    /// The smallest Jacobian determinant over the voxel centres of a grid, visiting every
    /// `step`-th voxel per axis (folding shows as a value ≤ 0).
    pub fn min_jacobian_determinant(&self, geometry: &Geometry, shape: [usize; 3], step: usize) -> f64 {
        use rayon::prelude::*;
        let step = step.max(1);
        (0..shape[0])
            .into_par_iter()
            .step_by(step)
            .map(|i| {
                let mut lo = f64::INFINITY;
                for j in (0..shape[1]).step_by(step) {
                    for k in (0..shape[2]).step_by(step) {
                        lo = lo.min(self.jacobian_determinant(geometry.index_to_world([i as f64, j as f64, k as f64])));
                    }
                }
                lo
            })
            .reduce(|| f64::INFINITY, f64::min)
    }

    /// The transform as the text of an ITK transform file.
    pub fn to_tfm(&self) -> String {
        let mut s = String::from("#Insight Transform File V1.0\n");
        let list = |s: &mut String, v: &mut dyn Iterator<Item = f64>| {
            let parts: Vec<String> = v.map(|x| format!("{x:?}")).collect();
            s.push_str(&parts.join(" "));
            s.push('\n');
        };
        s.push_str("#Transform 0\nTransform: CompositeTransform_double_3_3\n");
        s.push_str("#Transform 1\nTransform: AffineTransform_double_3_3\nParameters: ");
        let a = &self.affine;
        list(&mut s, &mut a.matrix.iter().flatten().copied().chain(a.translation));
        s.push_str("FixedParameters: ");
        list(&mut s, &mut a.center.into_iter());
        if let Some(b) = &self.bspline {
            s.push_str("#Transform 2\nTransform: BSplineTransform_double_3_3\nParameters: ");
            list(&mut s, &mut b.coefficients().iter().copied());
            s.push_str("FixedParameters: ");
            let size = b.size().map(|n| n as f64);
            list(&mut s, &mut size.into_iter().chain(b.origin()).chain(b.spacing()).chain(b.direction().iter().flatten().copied()));
        }
        s
    }

    /// Write the transform as an ITK `.tfm` file (atomically).
    pub fn write_tfm(&self, path: &Path) -> Result<()> {
        crate::io::atomic::write_bytes_atomically(path, self.to_tfm().as_bytes())
    }

    /// Read an ITK `.tfm` file holding an affine transform, a B-spline transform, or a
    /// composite of an affine and then a B-spline one (as [`write_tfm`](Self::write_tfm) writes).
    pub fn read_tfm(path: &Path) -> Result<Transform> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Transform::parse_tfm(&text).map_err(|m| Error::format(path, m))
    }

    /// Parse the text of an ITK transform file (see [`read_tfm`](Self::read_tfm)).
    pub fn parse_tfm(text: &str) -> std::result::Result<Transform, String> {
        if !text.starts_with("#Insight Transform File") {
            return Err("not an ITK transform file (no '#Insight Transform File' header)".into());
        }
        // (type, parameters, fixed parameters) of each transform in file order.
        let mut parts: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let numbers = |rest: &str| -> std::result::Result<Vec<f64>, String> {
                rest.split_whitespace().map(|t| t.parse::<f64>().map_err(|_| format!("'{t}' is not a number"))).collect()
            };
            if let Some(rest) = line.strip_prefix("Transform:") {
                parts.push((rest.trim().to_string(), Vec::new(), Vec::new()));
            } else if let Some(rest) = line.strip_prefix("Parameters:") {
                parts.last_mut().ok_or("Parameters before any Transform line")?.1 = numbers(rest)?;
            } else if let Some(rest) = line.strip_prefix("FixedParameters:") {
                parts.last_mut().ok_or("FixedParameters before any Transform line")?.2 = numbers(rest)?;
            }
        }
        let kind = |t: &str| t.strip_suffix("_double_3_3").or_else(|| t.strip_suffix("_float_3_3")).map(str::to_string);
        let mut affine = None;
        let mut bspline = None;
        for (name, params, fixed) in &parts {
            match kind(name).as_deref() {
                Some("CompositeTransform") => continue,
                Some("AffineTransform") | Some("MatrixOffsetTransformBase") => {
                    if affine.is_some() || bspline.is_some() {
                        return Err("only one affine transform, before the B-spline one, is supported".into());
                    }
                    if params.len() != 12 || fixed.len() != 3 {
                        return Err(format!("{name}: expected 12 parameters and 3 fixed parameters, got {} and {}", params.len(), fixed.len()));
                    }
                    let m = [[params[0], params[1], params[2]], [params[3], params[4], params[5]], [params[6], params[7], params[8]]];
                    affine = Some(Affine { matrix: m, translation: [params[9], params[10], params[11]], center: [fixed[0], fixed[1], fixed[2]] });
                }
                Some("BSplineTransform") => {
                    if bspline.is_some() {
                        return Err("only one B-spline transform is supported".into());
                    }
                    if fixed.len() != 18 {
                        return Err(format!("{name}: expected 18 fixed parameters (size, origin, spacing, direction), got {}", fixed.len()));
                    }
                    let size = [0, 1, 2].map(|a| fixed[a]);
                    if size.iter().any(|&n| !(n >= 4.0 && n.fract() == 0.0 && n <= 1e5)) {
                        return Err(format!("{name}: invalid control grid size {size:?}"));
                    }
                    let size = size.map(|n| n as usize);
                    let dir = [[fixed[9], fixed[10], fixed[11]], [fixed[12], fixed[13], fixed[14]], [fixed[15], fixed[16], fixed[17]]];
                    let mut b = BSplineField::new(size, [fixed[3], fixed[4], fixed[5]], [fixed[6], fixed[7], fixed[8]], dir)
                        .ok_or_else(|| format!("{name}: invalid control grid (spacing or direction)"))?;
                    if params.len() != b.coefficients().len() {
                        return Err(format!("{name}: expected {} parameters for a {size:?} grid, got {}", b.coefficients().len(), params.len()));
                    }
                    b.set_coefficients(params);
                    bspline = Some(b);
                }
                _ => return Err(format!("unsupported transform type '{name}' (AffineTransform and BSplineTransform are)")),
            }
        }
        if affine.is_none() && bspline.is_none() {
            return Err("the file holds no transform".into());
        }
        if parts.iter().any(|(n, p, _)| !n.starts_with("Composite") && p.iter().any(|v| !v.is_finite())) {
            return Err("a parameter is not finite".into());
        }
        Ok(Transform { affine: affine.unwrap_or(Affine::identity([0.0; 3])), bspline })
    }

    /// A short description for logs: the affine's rotation/scale and translation, the grid.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let t = self.affine.translation;
        let _ = write!(s, "affine det {:.4}, translation ({:.2}, {:.2}, {:.2}) mm", mat3::det(&self.affine.matrix), t[0], t[1], t[2]);
        if let Some(b) = &self.bspline {
            let sp = b.spacing();
            let _ = write!(s, "; B-spline grid {:?} at ({:.1}, {:.1}, {:.1}) mm", b.size(), sp[0], sp[1], sp[2]);
        }
        s
    }
}

/// A part of the [`Transform`] that a registration level optimizes, seen as a parameter
/// vector: the level's optimizer ([`stages::optimize`](super::stages::optimize)) maps every
/// sample through [`apply`](Self::apply), asks the similarity for `∂cost/∂y` at each mapped
/// point, and turns those into `∂cost/∂parameters` with [`add_gradient`](Self::add_gradient).
///
/// Adding a transform: one file implementing this trait (see [`rigid`](super::rigid)), and
/// for a linear one a variant of [`TransformKind`](super::stages::TransformKind).
pub trait ParametricTransform: Sync + Sized {
    /// What the level keeps per fixed sample between evaluations (e.g. the point after the
    /// parts of the transform this level holds fixed).
    type Sample: Send + Sync;

    /// The parametrization of `transform`'s part for a level whose fixed samples are `points`;
    /// its [`parameters`](Self::parameters) describe `transform` as it is.
    fn start(transform: &Transform, points: &[Vec3], settings: &Settings) -> Self;

    /// Prepare fixed sample point `p` (world).
    fn sample(&self, p: Vec3) -> Self::Sample;

    /// The current parameter vector.
    fn parameters(&self) -> Vec<f64>;

    /// Set the parameters (same length and order as [`parameters`](Self::parameters)).
    fn set_parameters(&mut self, x: &[f64]);

    /// The moving world point of a sample under the whole transform.
    fn apply(&self, sample: &Self::Sample) -> Vec3;

    /// The Jacobian-transpose product: add `(∂y/∂parameters)ᵀ · dcost_dy` of one sample into `acc`.
    fn add_gradient(&self, sample: &Self::Sample, dcost_dy: Vec3, acc: &mut [f64]);

    /// A penalty added to the cost (e.g. the B-spline's weighted bending energy) and its
    /// gradient with respect to the parameters; `None` when there is none.
    fn regularizer(&self) -> Option<(f64, Vec<f64>)> {
        None
    }

    /// Write the current parameters back into `transform`.
    fn store(&self, transform: &mut Transform);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfm_round_trip_is_exact() {
        let g = Geometry { spacing: [1.0, 1.5, 2.0], origin: [3.0, -4.0, 5.0], direction: mat3::rotation([0.0, 0.0, 1.0], 0.1) };
        let mut b = BSplineField::covering(&g, [20, 16, 10], 10.0);
        let c: Vec<f64> = (0..b.coefficients().len()).map(|i| (i as f64 * 0.37).sin()).collect();
        b.set_coefficients(&c);
        let t = Transform {
            affine: Affine { matrix: mat3::rotation([1.0, 2.0, 3.0], 0.05), translation: [1.0 / 3.0, -2.5, 7.0], center: [1.0, 2.0, 3.0] },
            bspline: Some(b),
        };
        let back = Transform::parse_tfm(&t.to_tfm()).unwrap();
        assert_eq!(back, t);
        assert!(Transform::parse_tfm("hello").is_err());
        assert!(Transform::parse_tfm("#Insight Transform File V1.0\nTransform: Euler3DTransform_double_3_3\nParameters: 0 0 0 0 0 0\nFixedParameters: 0 0 0\n").is_err());
    }
}
