//! The optimization stages of one pyramid level: choosing samples, the coarse translation
//! search, and one level optimizer for any [`ParametricTransform`] (affine, rigid, B-spline):
//! it minimizes a [`Similarity`] (plus the transform's regularizer, the bending energy for the
//! B-spline) over a fixed set of samples with L-BFGS.

use super::Settings;
use super::affine::AffineLevel;
use super::image::MovingImage;
use super::lbfgs::{self, Options};
use super::metric::Similarity;
use super::rigid::RigidLevel;
use super::transform::{ParametricTransform, Transform};
use crate::volume::Volume;
use crate::volume::mat3::{self, Vec3};
use rand::Rng;
use rand::SeedableRng;
use clap::ValueEnum;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Fixed-image sample points (world) and their values.
pub struct Samples {
    /// World positions.
    pub points: Vec<Vec3>,
    /// Fixed-image values there.
    pub values: Vec<f32>,
}

/// Up to `count` voxel centres of `level` (chosen at random with `seed`, in random order) whose mapped point
/// under `transform` lies inside the moving image or within `margin` voxels of it.
pub fn choose_samples(level: &Volume, moving: &MovingImage, transform: &Transform, count: usize, margin: f64, seed: u64) -> Samples {
    let [nx, ny, nz] = level.shape();
    let g = level.geometry;
    let candidates: Vec<(Vec3, f32)> = (0..nx)
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut out = Vec::new();
            for j in 0..ny {
                for k in 0..nz {
                    let p = g.index_to_world([i as f64, j as f64, k as f64]);
                    if moving.contains(transform.apply(p), margin) {
                        out.push((p, level.data[[i, j, k]]));
                    }
                }
            }
            out
        })
        .collect();
    // A partial Fisher–Yates shuffle: the chosen samples come in random order.
    let mut chosen = candidates;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in 0..count.min(chosen.len()) {
        let j = rng.random_range(i..chosen.len());
        chosen.swap(i, j);
    }
    chosen.truncate(count);
    Samples { points: chosen.iter().map(|c| c.0).collect(), values: chosen.iter().map(|c| c.1).collect() }
}

/// The cost of `transform` on the samples (for the search and for reports).
pub fn cost(metric: &dyn Similarity, moving: &MovingImage, samples: &Samples, transform: &Transform) -> (f64, usize) {
    let mapped: Vec<Vec3> = samples.points.par_iter().map(|&p| transform.apply(p)).collect();
    let e = metric.evaluate(moving, &mapped);
    (e.value, e.valid)
}

/// A search offset counts only when at least 1/this of the samples map inside the moving image.
const SEARCH_MIN_VALID_PART: usize = 4;

/// The best translation on a grid of `step` mm within ± `radius` mm of the current one (an
/// exhaustive search, robust to the large offsets between the two studies' tables).
pub fn translation_search(metric: &dyn Similarity, moving: &MovingImage, samples: &Samples, transform: &mut Transform, radius: f64, step: f64) -> f64 {
    let n = (radius / step).floor() as i64;
    let base = transform.affine.translation;
    let min_valid = samples.points.len() / SEARCH_MIN_VALID_PART;
    let mut best = (cost(metric, moving, samples, transform).0, base);
    let offsets: Vec<Vec3> = (-n..=n)
        .flat_map(|i| (-n..=n).flat_map(move |j| (-n..=n).map(move |k| [i as f64 * step, j as f64 * step, k as f64 * step])))
        .collect();
    let results: Vec<(f64, usize, Vec3)> = offsets
        .par_iter()
        .map(|o| {
            let mut t = transform.clone();
            t.affine.translation = mat3::add(base, *o);
            let (c, valid) = cost(metric, moving, samples, &t);
            (c, valid, t.affine.translation)
        })
        .collect();
    for (c, valid, t) in results {
        if valid >= min_valid && c < best.0 {
            best = (c, t);
        }
    }
    transform.affine.translation = best.1;
    best.0
}

/// The transform a registration's linear levels optimize (the B-spline levels follow either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TransformKind {
    /// 12 parameters: rotation, scaling and shear about the image centre, and translation (default).
    #[default]
    Affine,
    /// 6 parameters: rotation about the image centre and translation.
    Rigid,
}

impl TransformKind {
    /// The name in level reports and progress labels (`affine`, `rigid`).
    pub fn name(self) -> String {
        self.to_possible_value().expect("no variant is skipped").get_name().to_string()
    }

    /// Optimize this kind of transform on one level (see [`optimize`]).
    pub fn optimize(self, level: &Level, transform: &mut Transform, progress: &mut dyn FnMut(usize, f64)) -> lbfgs::Outcome {
        match self {
            TransformKind::Affine => optimize::<AffineLevel>(level, transform, progress),
            TransformKind::Rigid => optimize::<RigidLevel>(level, transform, progress),
        }
    }
}

/// What one level's optimization works with.
pub struct Level<'a> {
    /// The measure, prepared with the samples' fixed values.
    pub similarity: &'a dyn Similarity,
    /// The moving image at the level's resolution.
    pub moving: &'a MovingImage,
    /// The fixed samples.
    pub samples: &'a Samples,
    /// The registration's settings.
    pub settings: &'a Settings,
    /// The optimizer's limits on this level.
    pub options: Options,
}

/// Minimize the similarity (plus the transform's regularizer) over the parameters of `T`'s
/// part of `transform`, from where it is, with L-BFGS; the result is stored in `transform`.
pub fn optimize<T: ParametricTransform>(level: &Level, transform: &mut Transform, progress: &mut dyn FnMut(usize, f64)) -> lbfgs::Outcome {
    let mut part = T::start(transform, &level.samples.points, level.settings);
    let prepared: Vec<T::Sample> = level.samples.points.par_iter().map(|&p| part.sample(p)).collect();
    let mut x = part.parameters();
    let outcome = lbfgs::minimize(&mut x, &mut |x| objective(&mut part, level.similarity, level.moving, &prepared, x), level.options, progress);
    part.set_parameters(&x);
    part.store(transform);
    outcome
}

/// A level's cost at parameters `x` of `part` (which keeps them) and its gradient: the
/// similarity at the mapped samples plus the regularizer.
pub fn objective<T: ParametricTransform>(part: &mut T, similarity: &dyn Similarity, moving: &MovingImage, samples: &[T::Sample], x: &[f64]) -> (f64, Vec<f64>) {
    part.set_parameters(x);
    let part = &*part;
    let mapped: Vec<Vec3> = samples.par_iter().map(|s| part.apply(s)).collect();
    let e = similarity.evaluate(moving, &mapped);
    let mut grad = chunked_sum(samples.len(), x.len(), |range, acc| {
        for (s, g) in samples[range.clone()].iter().zip(&e.gradient[range]) {
            part.add_gradient(s, *g, acc);
        }
    });
    let mut value = e.value;
    if let Some((penalty, penalty_grad)) = part.regularizer() {
        value += penalty;
        grad.iter_mut().zip(penalty_grad).for_each(|(g, p)| *g += p);
    }
    (value, grad)
}

/// Samples per chunk of a gradient sum.
const CHUNK: usize = 4096;

/// `Σ` over samples `0..count` of per-sample contributions into a vector of `len`, where
/// `add(range, acc)` adds the samples of `range` into `acc`. The samples are cut into fixed
/// chunks summed in parallel and the chunk sums are added in order, so the result is the same
/// bit for bit whatever the number of threads (registration is reproducible).
fn chunked_sum(count: usize, len: usize, add: impl Fn(std::ops::Range<usize>, &mut [f64]) + Sync) -> Vec<f64> {
    let partial: Vec<Vec<f64>> = (0..count.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0; len];
            add(c * CHUNK..((c + 1) * CHUNK).min(count), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0; len];
    for p in partial {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::MetricKind;
    use crate::register::bspline::{BSplineField, BSplineLevel};
    use crate::register::transform::Affine;
    use crate::volume::Geometry;
    use ndarray::Array3;

    /// A smooth fixed image, a linear moving image (its sampled gradient is then the exact
    /// derivative of its sampled value, so the level objective is smooth), fixed samples well
    /// inside both, and a transform away from the identity with a B-spline part.
    fn problem() -> (Vec<Vec3>, Vec<f32>, MovingImage, Transform) {
        let fixed = Volume::new(
            Array3::from_shape_fn([20, 20, 20], |(i, j, k)| {
                let (x, y, z) = (i as f64 - 9.5, j as f64 - 10.0, k as f64 - 9.0);
                (100.0 * (-(x * x + 2.0 * y * y + z * z) / 40.0).exp() + 20.0 * ((x + y) / 5.0).sin()) as f32
            }),
            Geometry::axial([1.0; 3], [0.0; 3]),
        );
        let mg = Geometry { spacing: [1.0, 1.2, 0.9], origin: [-8.0, -9.0, -7.0], direction: mat3::rotation([0.2, 0.1, 1.0], 0.1) };
        let f = |p: Vec3| (3.0 * p[0] - 2.0 * p[1] + p[2] + 40.0) as f32;
        let moving = Volume::new(Array3::from_shape_fn([36, 32, 38], |(i, j, k)| f(mg.index_to_world([i as f64, j as f64, k as f64]))), mg);
        let mut points = Vec::new();
        let mut values = Vec::new();
        for i in (4..16).step_by(1) {
            for j in (4..16).step_by(2) {
                for k in (4..16).step_by(2) {
                    points.push(fixed.geometry.index_to_world([i as f64, j as f64, k as f64]));
                    values.push(fixed.data[[i, j, k]]);
                }
            }
        }
        let mut field = BSplineField::covering(&fixed.geometry, fixed.shape(), 8.0);
        let c: Vec<f64> = (0..field.coefficients().len()).map(|i| ((i * 7919) % 97) as f64 / 97.0 - 0.5).collect();
        field.set_coefficients(&c);
        let mut matrix = mat3::rotation([1.0, -0.5, 0.3], 0.06);
        matrix[0][0] *= 1.03;
        let affine = Affine { matrix, translation: [0.7, -0.4, 0.3], center: [9.5, 9.5, 9.5] };
        (points, values, MovingImage::new(&moving, 0.0), Transform { affine, bspline: Some(field) })
    }

    /// Central differences of the level objective of `T` in every parameter direction, from
    /// the start moved by `offset(i)`, against its analytic gradient; the worst error relative
    /// to the gradient's largest component.
    fn worst_gradient_error<T: ParametricTransform>(kind: MetricKind, settings: &Settings, offset: impl Fn(usize) -> f64) -> f64 {
        let (points, values, moving, transform) = problem();
        let similarity = kind.similarity(settings.bins, &values, &moving);
        let mut part = T::start(&transform, &points, settings);
        let prepared: Vec<T::Sample> = points.iter().map(|&p| part.sample(p)).collect();
        let x0: Vec<f64> = part.parameters().iter().enumerate().map(|(i, v)| v + offset(i)).collect();
        let (_, analytic) = objective(&mut part, &*similarity, &moving, &prepared, &x0);
        let h = 1e-4;
        let fd: Vec<f64> = (0..x0.len())
            .map(|i| {
                let mut x = x0.clone();
                x[i] += h;
                let up = objective(&mut part, &*similarity, &moving, &prepared, &x).0;
                x[i] -= 2.0 * h;
                let down = objective(&mut part, &*similarity, &moving, &prepared, &x).0;
                (up - down) / (2.0 * h)
            })
            .collect();
        let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-6, "{kind:?}: a flat objective tests nothing");
        analytic.iter().zip(&fd).map(|(a, f)| (a - f).abs() / scale).fold(0.0, f64::max)
    }

    #[test]
    fn level_gradients_match_central_differences_in_every_direction() {
        let settings = Settings::default();
        let no_bending = Settings { bending_weight: 0.0, ..Settings::default() };
        let wiggle = |i: usize| 0.3 * ((i as f64 * 1.7).sin());
        for kind in [MetricKind::MattesMi, MetricKind::Ncc] {
            let cases = [
                ("affine", worst_gradient_error::<AffineLevel>(kind, &settings, wiggle)),
                ("rigid", worst_gradient_error::<RigidLevel>(kind, &settings, wiggle)),
                ("bspline", worst_gradient_error::<BSplineLevel>(kind, &no_bending, wiggle)),
                ("bspline + bending", worst_gradient_error::<BSplineLevel>(kind, &settings, wiggle)),
            ];
            for (name, error) in cases {
                eprintln!("{kind:?} {name}: worst relative gradient error {error:.2e}");
                assert!(error < 1e-5, "{kind:?} {name}: {error}");
            }
        }
    }

    #[test]
    fn a_rigid_level_stays_rigid_and_reaches_the_affine_it_describes() {
        let (points, _, _, transform) = problem();
        let start = Transform { affine: Affine { matrix: mat3::IDENTITY, ..transform.affine }, ..transform };
        let mut rigid = RigidLevel::start(&start, &points, &Settings::default());
        rigid.set_parameters(&[2.0, -1.0, 0.5, 1.0, 2.0, 3.0]);
        let mut out = start.clone();
        rigid.store(&mut out);
        let m = out.affine.matrix;
        let mtm = mat3::mul(&mat3::transpose(&m), &m);
        for r in 0..3 {
            for c in 0..3 {
                assert!((mtm[r][c] - mat3::IDENTITY[r][c]).abs() < 1e-12, "{m:?}");
            }
        }
        assert!((mat3::det(&m) - 1.0).abs() < 1e-12 && m != mat3::IDENTITY);
        let p = points[17];
        assert_eq!(rigid.apply(&rigid.sample(p)), out.apply(p));
    }
}
