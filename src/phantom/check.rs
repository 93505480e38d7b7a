//! How well a registration recovered a phantom patient's known misalignment, measured
//! against the generator's own truth (the case is regenerated from its seed), never against
//! registration output.

use super::{dice, generate_case, render};
use crate::error::{Error, Result};
use crate::preprocess::myocardium::MYOCARDIUM_LABEL;
use crate::volume::Interpolation;
use crate::volume::mat3::{self, Vec3};
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// Registration error on one phantom patient.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationCheck {
    /// Mean target registration error over the CTA's myocardium voxels, mm.
    pub tre_mean_mm: f64,
    /// 95th percentile of the TRE, mm.
    pub tre_p95_mm: f64,
    /// Largest TRE, mm.
    pub tre_max_mm: f64,
    /// Myocardium voxels measured.
    pub voxels: usize,
    /// Dice of the CTA's myocardium and the perfusion study's myocardium moved by the registration.
    pub dice_registered: f64,
    /// The same Dice without registration (scanner geometry only).
    pub dice_unaligned: f64,
}

/// Compare `map` (CTA world point → perfusion world point, the registration transform) with
/// the true motion of the patient whose `phantom_truth.json` is at `truth_path`.
pub fn check_registration(truth_path: &Path, map: impl Fn(Vec3) -> Vec3 + Sync) -> Result<RegistrationCheck> {
    let text = std::fs::read_to_string(truth_path).map_err(|e| Error::io(truth_path, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(truth_path, format!("invalid JSON: {e}")))?;
    let bad = |what: &str| Error::format(truth_path, format!("missing or invalid '{what}'"));
    let seed = json["seed"].as_u64().ok_or_else(|| bad("seed"))?;
    let index = json["case_index"].as_u64().ok_or_else(|| bad("case_index"))? as usize;
    let pid = json["pid"].as_str().ok_or_else(|| bad("pid"))?;
    let grid = &json["cta_grid"];
    let size: [usize; 3] = serde_json::from_value(grid["size"].clone()).map_err(|_| bad("cta_grid.size"))?;
    let spacing: [f64; 3] = serde_json::from_value(grid["geometry"]["spacing"].clone()).map_err(|_| bad("cta_grid.geometry.spacing"))?;
    let fov = [0, 1, 2].map(|a| spacing[a] * size[a] as f64);
    let case = generate_case(seed, index, pid, size, fov)?;
    let written: Vec3 = serde_json::from_value(json["misalignment"]["translation_mm"].clone()).map_err(|_| bad("misalignment.translation_mm"))?;
    if mat3::norm(mat3::sub(written, case.truth.misalignment.translation_mm)) > 1e-6 {
        return Err(Error::format(truth_path, "the regenerated case differs from this truth file (written by another version of cta2mbf?)"));
    }
    let truth = &case.truth;
    let cta_geometry = truth.cta_grid.geometry;
    let myo = case.mask_connected.data.mapv(|v| v == MYOCARDIUM_LABEL as f32);
    let points: Vec<Vec3> = myo.indexed_iter().filter(|(_, m)| **m).map(|((i, j, k), _)| cta_geometry.index_to_world([i as f64, j as f64, k as f64])).collect();
    let mut errors: Vec<f64> = points.par_iter().map(|&p| mat3::norm(mat3::sub(map(p), truth.misalignment.inverse(p)))).collect();
    errors.sort_by(f64::total_cmp);
    let n = errors.len().max(1);
    // The perfusion study's own myocardium, on its grid, moved onto the CTA grid.
    let p = &truth.perfusion_grid;
    let anatomy = &truth.anatomy;
    let perfusion_myo = render(p.size, &p.geometry, |q| if anatomy.tissue(truth.misalignment.forward(q)).label == MYOCARDIUM_LABEL { 1.0f32 } else { 0.0 });
    let perfusion_myo = crate::volume::Volume::new(perfusion_myo, p.geometry);
    let moved = perfusion_myo.resample(size, &cta_geometry, map, Interpolation::Nearest, 0.0).data.mapv(|v| v > 0.5);
    let unaligned = perfusion_myo.resample_to_grid(size, &cta_geometry, Interpolation::Nearest, 0.0).data.mapv(|v| v > 0.5);
    Ok(RegistrationCheck {
        tre_mean_mm: errors.iter().sum::<f64>() / n as f64,
        tre_p95_mm: errors.get((0.95 * (n - 1) as f64).round() as usize).copied().unwrap_or(0.0),
        tre_max_mm: errors.last().copied().unwrap_or(0.0),
        voxels: errors.len(),
        dice_registered: dice(&myo, &moved),
        dice_unaligned: dice(&myo, &unaligned),
    })
}
