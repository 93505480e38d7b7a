//! The optimization stages of one pyramid level: choosing samples, the coarse translation
//! search, the affine stage and the B-spline stage. Each stage minimizes the metric (plus the
//! bending energy for the B-spline) over a fixed set of samples with L-BFGS.

use super::bspline::{BSplineField, Support};
use super::image::MovingImage;
use super::lbfgs::{self, Options};
use super::metric::Metric;
use super::transform::{Affine, Transform};
use crate::volume::Volume;
use crate::volume::mat3::{self, Vec3};
use rand::Rng;
use rand::SeedableRng;
use rayon::prelude::*;

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
pub fn cost(metric: &Metric, moving: &MovingImage, samples: &Samples, transform: &Transform) -> (f64, usize) {
    let mapped: Vec<Vec3> = samples.points.par_iter().map(|&p| transform.apply(p)).collect();
    let e = metric.evaluate(moving, &mapped);
    (e.value, e.valid)
}

/// The best translation on a grid of `step` mm within ± `radius` mm of the current one (an
/// exhaustive search, robust to the large offsets between the two studies' tables).
pub fn translation_search(metric: &Metric, moving: &MovingImage, samples: &Samples, transform: &mut Transform, radius: f64, step: f64) -> f64 {
    let n = (radius / step).floor() as i64;
    let base = transform.affine.translation;
    let min_valid = samples.points.len() / 4;
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

/// Optimize the 12 affine parameters. The linear part is scaled by `radius` (mm) so that a
/// unit change of any parameter moves points by about a millimetre.
pub fn affine_stage(metric: &Metric, moving: &MovingImage, samples: &Samples, transform: &mut Transform, options: Options, progress: &mut dyn FnMut(usize, f64)) -> lbfgs::Outcome {
    let start = transform.affine;
    let c = start.center;
    let radius = {
        let s: f64 = samples.points.iter().map(|p| mat3::dot(mat3::sub(*p, c), mat3::sub(*p, c))).sum();
        (s / samples.points.len().max(1) as f64).sqrt().max(1.0)
    };
    let bspline = transform.bspline.clone();
    // Points after the (fixed) B-spline part, where the affine acts.
    let pre: Vec<Vec3> = samples.points.iter().map(|&p| bspline.as_ref().map_or(p, |b| mat3::add(p, b.displacement(p)))).collect();
    let affine_of = |x: &[f64]| {
        let mut a = start;
        for r in 0..3 {
            for k in 0..3 {
                a.matrix[r][k] += x[3 * r + k] / radius;
            }
            a.translation[r] += x[9 + r];
        }
        a
    };
    let mut f = |x: &[f64]| -> (f64, Vec<f64>) {
        let a = affine_of(x);
        let mapped: Vec<Vec3> = pre.par_iter().map(|&p| a.apply(p)).collect();
        let e = metric.evaluate(moving, &mapped);
        let grad = chunked_sum(pre.len(), 12, |range, acc| {
            for (p, g) in pre[range.clone()].iter().zip(&e.gradient[range]) {
                let rel = mat3::sub(*p, c);
                for r in 0..3 {
                    for k in 0..3 {
                        acc[3 * r + k] += g[r] * rel[k] / radius;
                    }
                    acc[9 + r] += g[r];
                }
            }
        });
        (e.value, grad)
    };
    let mut x = vec![0.0; 12];
    let outcome = lbfgs::minimize(&mut x, &mut f, options, progress);
    transform.affine = affine_of(&x);
    outcome
}

/// Optimize the B-spline coefficients (mm) with the affine part fixed, the cost being the
/// metric plus `bending_weight` × the bending energy.
pub fn bspline_stage(
    metric: &Metric,
    moving: &MovingImage,
    samples: &Samples,
    transform: &mut Transform,
    bending_weight: f64,
    options: Options,
    progress: &mut dyn FnMut(usize, f64),
) -> lbfgs::Outcome {
    let affine: Affine = transform.affine;
    let mut field: BSplineField = transform.bspline.clone().expect("a B-spline stage needs a B-spline field");
    let supports: Vec<Option<Support>> = samples.points.par_iter().map(|&p| field.support(p)).collect();
    let n = field.points();
    let at = mat3::transpose(&affine.matrix);
    let mut f = |x: &[f64]| -> (f64, Vec<f64>) {
        let mut trial = field.clone();
        trial.set_coefficients(x);
        let mapped: Vec<Vec3> = samples
            .points
            .par_iter()
            .zip(&supports)
            .map(|(&p, s)| affine.apply(s.as_ref().map_or(p, |s| mat3::add(p, trial.displacement_at(s)))))
            .collect();
        let e = metric.evaluate(moving, &mapped);
        let mut grad = chunked_sum(supports.len(), 3 * n, |range, acc| {
            for (s, g) in supports[range.clone()].iter().zip(&e.gradient[range]) {
                let Some(s) = s else { continue };
                // ∂y/∂d = A, so ∂cost/∂d = Aᵀ·∂cost/∂y.
                let v = mat3::mul_vec(&at, *g);
                if v == [0.0; 3] {
                    continue;
                }
                for (point, w) in trial.support_points(s) {
                    for comp in 0..3 {
                        acc[comp * n + point] += w * v[comp];
                    }
                }
            }
        });
        let mut value = e.value;
        if bending_weight > 0.0 {
            let (be, be_grad) = trial.bending_energy();
            value += bending_weight * be;
            grad.iter_mut().zip(be_grad).for_each(|(g, b)| *g += bending_weight * b);
        }
        (value, grad)
    };
    let mut x = field.coefficients().to_vec();
    let outcome = lbfgs::minimize(&mut x, &mut f, options, progress);
    field.set_coefficients(&x);
    transform.bspline = Some(field);
    outcome
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
