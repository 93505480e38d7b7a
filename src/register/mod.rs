//! Registration of the CT-perfusion study to the CTA (`cta2mbf register`): the transform is
//! found once between the perfusion MIP (moving) and the CTA (fixed), then applied to MIP,
//! AVG and BF.
//!
//! The method, coarse to fine, everything on the CPU:
//! 1. the scanner geometry: both images in world (LPS mm) coordinates, identity transform;
//! 2. an exhaustive translation search on the coarsest level (± [`Settings::search_mm`]);
//! 3. an affine transform (12 parameters; or a rigid one, 6, with [`Settings::linear`]) on a
//!    Gaussian pyramid ([`Settings::affine_levels_mm`]);
//! 4. a cubic B-spline displacement on a control grid refined between levels
//!    ([`Settings::grid_spacing_mm`] at the finest level, doubled per coarser level), with a
//!    bending-energy penalty ([`Settings::bending_weight`]);
//! 5. every level minimizes Mattes mutual information (or NCC) over a fixed random set of
//!    fixed-image samples that map inside the moving image, with L-BFGS.
//!
//! The parts are small contracts: a similarity measure implements [`metric::Similarity`]
//! ([`mattes`], [`ncc`]), a transform [`transform::ParametricTransform`] ([`affine`],
//! [`rigid`], [`bspline`]), and one level optimizer ([`stages::optimize`]) runs any pair.
//!
//! The result `T(p) = A·(p + d(p) − c) + c + t` maps CTA points to perfusion points and is
//! written as an ITK transform file ([`transform`]); [`warp`] resamples several moving images
//! through it onto the CTA grid in one pass.

pub mod affine;
pub mod bspline;
pub mod files;
pub mod image;
pub mod lbfgs;
pub mod mattes;
pub mod metric;
pub mod ncc;
pub mod rigid;
pub mod stages;
pub mod transform;
pub mod warp;

pub use metric::MetricKind;
pub use stages::TransformKind;
pub use transform::{Affine, Transform};

use crate::error::{Error, Result};
use crate::volume::Volume;
use bspline::{BSplineField, BSplineLevel};
use image::MovingImage;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How registration runs; the defaults suit a CTA and a CT-perfusion study of the heart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Similarity measure.
    pub metric: MetricKind,
    /// The transform of the linear levels ([`affine_levels_mm`](Self::affine_levels_mm)).
    pub linear: TransformKind,
    /// Histogram bins of mutual information.
    pub bins: usize,
    /// Voxel size (mm) of each affine level, coarse to fine.
    pub affine_levels_mm: Vec<f64>,
    /// Voxel size (mm) of each B-spline level, coarse to fine (empty: affine only).
    pub bspline_levels_mm: Vec<f64>,
    /// Control-point spacing of the finest B-spline level, mm, at most (the coarsest level's
    /// grid divides the image box into whole cells no wider than this × 2^(levels − 1), and
    /// each later level halves it).
    pub grid_spacing_mm: f64,
    /// Weight of the bending energy (mm² × cost units) against the metric.
    pub bending_weight: f64,
    /// Fixed-image samples per level.
    pub samples: usize,
    /// L-BFGS iterations per level, at most.
    pub iterations: usize,
    /// Radius of the translation search on the coarsest level, mm (0: no search).
    pub search_mm: f64,
    /// Seed of the sample choice.
    pub seed: u64,
    /// Correction pairs L-BFGS keeps.
    pub lbfgs_memory: usize,
    /// The largest change of any parameter in one L-BFGS step, in voxels of the level
    /// (parameters are mm or scaled to about a mm of motion).
    pub max_step_voxels: f64,
    /// A level stops after three iterations in a row that lower the cost by less than this fraction.
    pub relative_tolerance: f64,
    /// Samples are drawn where the fixed voxel maps inside the moving image or within this
    /// many (level) voxels of it.
    pub sample_margin_voxels: f64,
    /// Samples the translation search scores each offset with (the first of the level's).
    pub search_samples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            metric: MetricKind::MattesMi,
            bins: 32,
            affine_levels_mm: vec![8.0, 4.0, 2.0],
            bspline_levels_mm: vec![6.0, 3.0, 1.5],
            grid_spacing_mm: 16.0,
            bending_weight: 1000.0,
            samples: 30_000,
            iterations: 100,
            search_mm: 40.0,
            seed: 0,
            linear: TransformKind::Affine,
            lbfgs_memory: 7,
            max_step_voxels: 0.5,
            relative_tolerance: 1e-5,
            sample_margin_voxels: 2.0,
            search_samples: 5000,
        }
    }
}

impl Settings {
    /// Settings from a JSON file (any of the fields; the rest default), checked.
    pub fn read(path: &std::path::Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: Settings = serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid registration settings: {e}")))?;
        s.validate().map_err(|e| Error::format(path, e.to_string()))?;
        Ok(s)
    }

    /// Check the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let positive = |v: &[f64]| v.iter().all(|&s| s > 0.0 && s.is_finite());
        if self.affine_levels_mm.is_empty() || !positive(&self.affine_levels_mm) || !positive(&self.bspline_levels_mm) {
            return Err(Error::invalid("registration levels must be positive voxel sizes in mm, with at least one affine level"));
        }
        if !(self.grid_spacing_mm > 0.0 && self.grid_spacing_mm.is_finite()) || !(self.bending_weight >= 0.0) || !(self.search_mm >= 0.0) {
            return Err(Error::invalid("grid spacing must be positive; bending weight and search radius must be ≥ 0"));
        }
        if self.samples < 1000 || self.iterations == 0 || !(8..=256).contains(&self.bins) {
            return Err(Error::invalid("registration needs at least 1000 samples, one iteration and 8–256 bins"));
        }
        if self.lbfgs_memory == 0 || !(self.max_step_voxels > 0.0 && self.max_step_voxels.is_finite()) || !(self.relative_tolerance >= 0.0) {
            return Err(Error::invalid("L-BFGS needs a memory of at least 1, a positive step limit and a tolerance ≥ 0"));
        }
        if !(self.sample_margin_voxels >= 0.0 && self.sample_margin_voxels.is_finite()) || self.search_samples < MIN_SAMPLES {
            return Err(Error::invalid(format!("the sample margin must be ≥ 0 and the translation search needs at least {MIN_SAMPLES} samples")));
        }
        Ok(())
    }
}

/// One level's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    /// `translation`, `affine`, `rigid` or `bspline`.
    pub stage: String,
    /// Voxel size of the level, mm.
    pub spacing_mm: f64,
    /// Control-point spacing of a B-spline level, mm.
    pub grid_spacing_mm: Option<f64>,
    /// Samples used.
    pub samples: usize,
    /// L-BFGS iterations.
    pub iterations: usize,
    /// Cost at the start and the end of the level.
    pub cost_start: f64,
    /// Cost at the end of the level.
    pub cost_end: f64,
    /// Seconds spent.
    pub seconds: f64,
}

/// What registration reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A level starts: its name and the most iterations it may take.
    Level {
        /// e.g. `affine 4 mm`.
        label: String,
        /// Iteration limit.
        iterations: usize,
    },
    /// One iteration ended with this cost.
    Iteration {
        /// Iteration number within the level (from 1).
        iteration: usize,
        /// Cost after it.
        cost: f64,
    },
    /// The level ended.
    LevelDone(LevelReport),
}

/// The result of [`register`].
#[derive(Debug, Clone)]
pub struct Registration {
    /// CTA (fixed) world point → perfusion (moving) world point.
    pub transform: Transform,
    /// Every level, in order.
    pub levels: Vec<LevelReport>,
    /// The final similarity (mutual information in nats, or NCC), higher is better.
    pub similarity: f64,
    /// The smallest Jacobian determinant of the transform over the fixed image (≤ 0 means folding).
    pub min_jacobian: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Samples a level must find inside the moving image (or a quarter of its voxels when it has
/// fewer than 4000, but never fewer than [`MIN_SAMPLES`]), or the images overlap too little.
const ENOUGH_SAMPLES: usize = 1000;
/// The fewest samples any level or search scores with.
const MIN_SAMPLES: usize = 64;
/// Points per axis, at most, of the grid [`overlap_fraction`] checks.
const OVERLAP_GRID: usize = 64;
/// Points of the grid the final Jacobian determinant is checked on, about.
const JACOBIAN_POINTS: f64 = 2e6;

/// Fraction of the fixed image's voxels (on a coarse grid) that fall inside the moving image
/// when both are placed by their scanner geometry.
pub fn overlap_fraction(fixed: &Volume, moving: &Volume) -> f64 {
    let Some(to_moving) = moving.geometry.world_to_index_fn() else { return 0.0 };
    let shape = fixed.shape();
    let inside_moving = |u: [f64; 3]| (0..3).all(|a| u[a] >= -0.5 && u[a] <= moving.shape()[a] as f64 - 0.5);
    // Every `step`-th voxel per axis: at most about OVERLAP_GRID³ points.
    let step = shape.iter().map(|&n| n.div_ceil(OVERLAP_GRID)).max().unwrap_or(1).max(1);
    let (mut inside, mut total) = (0usize, 0usize);
    for i in (0..shape[0]).step_by(step) {
        for j in (0..shape[1]).step_by(step) {
            for k in (0..shape[2]).step_by(step) {
                total += 1;
                inside += inside_moving(to_moving(fixed.geometry.index_to_world([i as f64, j as f64, k as f64]))) as usize;
            }
        }
    }
    inside as f64 / total.max(1) as f64
}

/// Register `moving` to `fixed` (see the module docs); `events` hears progress.
pub fn register(fixed: &Volume, moving: &Volume, settings: &Settings, events: &(dyn Fn(Event) + Sync)) -> Result<Registration> {
    settings.validate()?;
    for (v, what) in [(fixed, "fixed"), (moving, "moving")] {
        if v.shape().iter().any(|&n| n < 4) {
            return Err(Error::invalid(format!("the {what} image is {:?} voxels; registration needs at least 4 per axis", v.shape())));
        }
        let (lo, hi, _) = v.stats();
        if !(hi > lo) {
            return Err(Error::invalid(format!("the {what} image has no contrast (every voxel is {lo})")));
        }
    }
    let started = Instant::now();
    let center = fixed.geometry.index_to_world(fixed.shape().map(|n| (n as f64 - 1.0) / 2.0));
    let mut transform = Transform::identity(center);
    let mut levels = Vec::new();
    // The fixed pyramid, finest first, each level made from the next finer one.
    let mut spacings: Vec<f64> = settings.affine_levels_mm.iter().chain(&settings.bspline_levels_mm).copied().collect();
    spacings.sort_by(f64::total_cmp);
    spacings.dedup();
    let mut pyramid: Vec<(f64, Volume)> = Vec::new();
    for &s in &spacings {
        let from = pyramid.last().map_or(fixed, |(_, v)| v);
        pyramid.push((s, image::fixed_level(from, s)));
    }
    let level_of = |s: f64| &pyramid.iter().find(|(t, _)| *t == s).expect("every level is in the pyramid").1;
    let options = |spacing: f64| lbfgs::Options {
        max_iterations: settings.iterations,
        memory: settings.lbfgs_memory,
        max_step: settings.max_step_voxels * spacing,
        relative_tolerance: settings.relative_tolerance,
    };
    let mut last_cost = 0.0;
    let n_affine = settings.affine_levels_mm.len();
    let n_bspline = settings.bspline_levels_mm.len();
    for (l, &spacing) in settings.affine_levels_mm.iter().chain(&settings.bspline_levels_mm).enumerate() {
        let level_started = Instant::now();
        let fixed_level = level_of(spacing);
        let moving_level = MovingImage::new(moving, spacing);
        let seed = settings.seed.wrapping_add(l as u64);
        let margin = settings.sample_margin_voxels;
        let mut samples = stages::choose_samples(fixed_level, &moving_level, &transform, settings.samples, margin, seed);
        if samples.points.len() < ENOUGH_SAMPLES.min(fixed_level.len() / 4).max(MIN_SAMPLES) {
            return Err(Error::invalid(format!(
                "the images overlap too little to register ({} fixed voxels of {} at {spacing} mm map inside the moving image)",
                samples.points.len(),
                fixed_level.len()
            )));
        }
        // On the coarsest level, a translation search first (then the samples are chosen again).
        let search = (l == 0 && settings.search_mm > 0.0).then(|| {
            events(Event::Level { label: format!("translation search ±{} mm", settings.search_mm), iterations: 1 });
            let start = stages::cost(&*settings.metric.similarity(settings.bins, &samples.values, &moving_level), &moving_level, &samples, &transform).0;
            let small = subset(&samples, settings.search_samples);
            let small_metric = settings.metric.similarity(settings.bins, &small.values, &moving_level);
            stages::translation_search(&*small_metric, &moving_level, &small, &mut transform, settings.search_mm, spacing);
            samples = stages::choose_samples(fixed_level, &moving_level, &transform, settings.samples, margin, seed);
            (start, small.points.len())
        });
        let metric = settings.metric.similarity(settings.bins, &samples.values, &moving_level);
        if let Some((start, n)) = search {
            let end = stages::cost(&*metric, &moving_level, &samples, &transform).0;
            let report = LevelReport { stage: "translation".into(), spacing_mm: spacing, grid_spacing_mm: None, samples: n, iterations: 1, cost_start: start, cost_end: end, seconds: level_started.elapsed().as_secs_f64() };
            events(Event::LevelDone(report.clone()));
            levels.push(report);
        }
        let level_started = Instant::now();
        let is_affine = l < n_affine;
        let grid = if is_affine {
            None
        } else {
            // The coarsest B-spline level gets a fresh grid; every later one halves its spacing.
            let field = match transform.bspline.take() {
                None => BSplineField::covering(&fixed.geometry, fixed.shape(), settings.grid_spacing_mm * 2f64.powi(n_bspline as i32 - 1)),
                Some(b) => b.refined(),
            };
            let g = field.spacing().into_iter().fold(0.0, f64::max);
            transform.bspline = Some(field);
            Some(g)
        };
        let label = match grid {
            None => format!("{} {spacing} mm", settings.linear.name()),
            Some(g) => format!("B-spline {spacing} mm, grid {g:.1} mm"),
        };
        events(Event::Level { label, iterations: settings.iterations });
        let mut on_iteration = |iteration, cost| events(Event::Iteration { iteration, cost });
        let level = stages::Level { similarity: &*metric, moving: &moving_level, samples: &samples, settings, options: options(spacing) };
        let outcome = if is_affine {
            settings.linear.optimize(&level, &mut transform, &mut on_iteration)
        } else {
            stages::optimize::<BSplineLevel>(&level, &mut transform, &mut on_iteration)
        };
        last_cost = stages::cost(&*metric, &moving_level, &samples, &transform).0;
        let report = LevelReport {
            stage: if is_affine { settings.linear.name() } else { "bspline".into() },
            spacing_mm: spacing,
            grid_spacing_mm: grid,
            samples: samples.points.len(),
            iterations: outcome.iterations,
            cost_start: outcome.start,
            cost_end: outcome.end,
            seconds: level_started.elapsed().as_secs_f64(),
        };
        events(Event::LevelDone(report.clone()));
        levels.push(report);
    }
    // Jacobian over the fixed image, on a grid of at most about 2 million points.
    let step = ((fixed.len() as f64 / JACOBIAN_POINTS).cbrt().ceil() as usize).max(1);
    let min_jacobian = transform.min_jacobian_determinant(&fixed.geometry, fixed.shape(), step);
    Ok(Registration { transform, levels, similarity: -last_cost, min_jacobian, seconds: started.elapsed().as_secs_f64() })
}

/// The first `n` samples (they are already in random order).
fn subset(samples: &stages::Samples, n: usize) -> stages::Samples {
    let n = n.min(samples.points.len());
    stages::Samples { points: samples.points[..n].to_vec(), values: samples.values[..n].to_vec() }
}
