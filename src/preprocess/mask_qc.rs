//! Quality control of a chamber mask (docs/design.md §3, "mask QC"): plausibility figures of a
//! `CTA_MASK_connected` — the volume of each label, the LV myocardium's mass and mean wall
//! thickness, how much of the LV blood pool's surface the myocardium covers, the components of
//! each label and how much of each cleaned label the connected step kept, the labels touching
//! the image border — and a verdict against adult plausibility ranges ([`QcRanges`]).
//!
//! The ranges are deliberately wide: they are meant to stop a mask that is not a heart (a model
//! run on the wrong anatomy, on noise, or on a CT it was not trained for), not to diagnose.

use super::connected::component_sizes;
use super::{read_input, require_label_map};
use crate::cohort::CHAMBER_LABELS;
use crate::error::{Error, Result};
use crate::volume::Volume;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Density of myocardium used for its mass, g/ml.
pub const MYOCARDIUM_DENSITY: f64 = 1.05;

const LV: u8 = 1;
const MYOCARDIUM: u8 = 6;

/// The plausibility ranges a mask is checked against (inclusive; volumes in ml, mass in g,
/// thickness in mm, fractions in 0–1). The defaults and their sources: docs/design.md §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QcRanges {
    /// LV blood pool volume.
    pub lv_ml: [f64; 2],
    /// RV blood pool volume.
    pub rv_ml: [f64; 2],
    /// LA volume.
    pub la_ml: [f64; 2],
    /// RA volume.
    pub ra_ml: [f64; 2],
    /// LV myocardium mass.
    pub myocardium_g: [f64; 2],
    /// Mean LV wall thickness.
    pub wall_mm: [f64; 2],
    /// Least fraction of the LV blood pool's surface that borders the myocardium.
    pub min_lv_covered: f64,
    /// Least fraction of each chamber label (1, 2, 3, 4, 6) of the raw mask that lies in its
    /// largest component.
    pub min_largest_component: f64,
    /// Least volume of the aorta and the pulmonary artery (present at all), ml.
    pub min_vessel_ml: f64,
}

impl Default for QcRanges {
    fn default() -> Self {
        Self {
            lv_ml: [20.0, 450.0],
            rv_ml: [20.0, 450.0],
            la_ml: [10.0, 300.0],
            ra_ml: [10.0, 300.0],
            myocardium_g: [40.0, 400.0],
            wall_mm: [3.0, 20.0],
            min_lv_covered: 0.5,
            min_largest_component: 0.5,
            min_vessel_ml: 1.0,
        }
    }
}

/// The figures of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFigures {
    /// The label value.
    pub label: u8,
    /// Its name.
    pub name: String,
    /// Its volume, ml.
    pub volume_ml: f64,
    /// Its face-connected components in the checked mask.
    pub components: usize,
    /// Fraction of the label's voxels of the raw mask (before the connected step) in its
    /// largest component, when the raw mask was given.
    pub largest_component_fraction: Option<f64>,
    /// The image faces it touches (`x-`, `x+`, `y-`, `y+`, `z-`, `z+`).
    pub touches_border: Vec<String>,
}

/// The figures of a mask and the reasons it fails, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskQc {
    /// One entry per chamber label, in label order.
    pub labels: Vec<LabelFigures>,
    /// LV myocardium mass (volume × 1.05 g/ml), g.
    pub myocardium_mass_g: f64,
    /// Mean LV wall thickness, mm (none without myocardium).
    pub mean_wall_thickness_mm: Option<f64>,
    /// Fraction of the LV blood pool's surface that borders the myocardium (none without LV).
    pub lv_surface_covered: Option<f64>,
    /// The ranges checked.
    pub ranges: QcRanges,
    /// Why the mask is implausible; empty when it passes.
    pub failures: Vec<String>,
}

impl MaskQc {
    /// Whether the mask passed every check.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The figures of `label`.
    pub fn label(&self, label: u8) -> &LabelFigures {
        self.labels.iter().find(|l| l.label == label).expect("every chamber label has figures")
    }

    /// `QC FAILED: <reasons>` or `QC passed`, with the main figures.
    pub fn verdict(&self) -> String {
        if self.passed() { "QC passed".into() } else { format!("QC FAILED: {}", self.failures.join("; ")) }
    }

    /// The figures of the checked mask, read from its JSON file (as [`check_files`] writes it).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a mask QC file: {e}")))
    }

    /// Write the figures as JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("QC figures serialise");
        crate::io::atomic::write_bytes_atomically(path, &bytes)
    }
}

impl fmt::Display for MaskQc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ml = |l: u8| self.label(l).volume_ml;
        write!(
            f,
            "{} (LV {:.0} ml, RV {:.0} ml, LA {:.0} ml, RA {:.0} ml, myocardium {:.0} g, wall {}, LV surface covered {})",
            self.verdict(),
            ml(1),
            ml(2),
            ml(3),
            ml(4),
            self.myocardium_mass_g,
            self.mean_wall_thickness_mm.map(|t| format!("{t:.1} mm")).unwrap_or_else(|| "-".into()),
            self.lv_surface_covered.map(|c| format!("{:.0} %", 100.0 * c)).unwrap_or_else(|| "-".into()),
        )
    }
}

/// The image faces a label touches: for each of `x-, x+, y-, y+, z-, z+`, whether a voxel of
/// the label lies in that boundary slice.
fn border_faces(mask: &Volume, label: f32) -> Vec<String> {
    let [nx, ny, nz] = mask.shape();
    let mut touched = [false; 6];
    for ((x, y, z), &v) in mask.data.indexed_iter() {
        if v == label {
            for (axis, (i, n)) in [(x, nx), (y, ny), (z, nz)].into_iter().enumerate() {
                touched[2 * axis] |= i == 0;
                touched[2 * axis + 1] |= i + 1 == n;
            }
        }
    }
    const NAMES: [&str; 6] = ["x-", "x+", "y-", "y+", "z-", "z+"];
    NAMES.iter().zip(touched).filter(|(_, t)| *t).map(|(n, _)| n.to_string()).collect()
}

/// Fraction of the LV blood pool's boundary area (faces between an LV voxel and a non-LV
/// voxel; faces on the image border count as not covered) whose neighbour is myocardium.
fn lv_surface_covered(mask: &Volume) -> Option<f64> {
    let [nx, ny, nz] = mask.shape();
    let s = mask.geometry.spacing;
    let face_area = [s[1] * s[2], s[0] * s[2], s[0] * s[1]];
    let (lv, myo) = (LV as f32, MYOCARDIUM as f32);
    let (mut total, mut covered) = (0.0, 0.0);
    for ((x, y, z), &v) in mask.data.indexed_iter() {
        if v != lv {
            continue;
        }
        let index = [x, y, z];
        for axis in 0..3 {
            let n = [nx, ny, nz][axis];
            for step in [-1i64, 1] {
                let j = index[axis] as i64 + step;
                let neighbour = if (0..n as i64).contains(&j) {
                    let mut at = index;
                    at[axis] = j as usize;
                    Some(mask.data[at])
                } else {
                    None
                };
                if neighbour == Some(lv) {
                    continue;
                }
                total += face_area[axis];
                if neighbour == Some(myo) {
                    covered += face_area[axis];
                }
            }
        }
    }
    (total > 0.0).then(|| covered / total)
}

/// Squared Euclidean distance transform along one lane (Felzenszwalb & Huttenlocher's lower
/// envelope of parabolas), in place: `f[i]` becomes `min_j f[j] + (w·(i − j))²`.
fn edt_lane(f: &mut [f64], w: f64, v: &mut Vec<usize>, z: &mut Vec<f64>, out: &mut Vec<f64>) {
    let n = f.len();
    v.clear();
    z.clear();
    out.clear();
    let pos = |i: usize| w * i as f64;
    for q in 0..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let Some(&p) = v.last() else { break };
            let s = ((f[q] + pos(q) * pos(q)) - (f[p] + pos(p) * pos(p))) / (2.0 * (pos(q) - pos(p)));
            if s <= *z.last().expect("one boundary per parabola") {
                v.pop();
                z.pop();
            } else {
                v.push(q);
                z.push(s);
                break;
            }
        }
        if v.is_empty() {
            v.push(q);
            z.push(f64::NEG_INFINITY);
        }
    }
    if v.is_empty() {
        return;
    }
    let mut k = 0;
    for q in 0..n {
        while k + 1 < v.len() && z[k + 1] < pos(q) {
            k += 1;
        }
        let d = pos(q) - pos(v[k]);
        out.push(f[v[k]] + d * d);
    }
    f.copy_from_slice(out);
}

/// Mean LV wall thickness, mm, from the Euclidean distance of every myocardium voxel centre to
/// the nearest non-myocardium voxel centre: for a wall of thickness `t` the mean distance to
/// the nearer surface is `t/4` (exactly for a slab, to second order for a curved shell), and a
/// voxel centre lies half a voxel inside the surface, so `t = 4·mean(d − h/2)` with `h` the
/// mean spacing. Computed in the myocardium's bounding box grown by one voxel.
fn mean_wall_thickness(mask: &Volume) -> Option<f64> {
    let myo = MYOCARDIUM as f32;
    let (start, end) = mask.bounding_box(|v| v == myo)?;
    let shape = mask.shape();
    let lo: [usize; 3] = std::array::from_fn(|a| start[a].saturating_sub(1));
    let hi: [usize; 3] = std::array::from_fn(|a| (end[a] + 2).min(shape[a]));
    let size: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a]);
    let mut d = ndarray::Array3::<f64>::from_shape_fn(size, |(x, y, z)| {
        if mask.data[[x + lo[0], y + lo[1], z + lo[2]]] == myo { f64::INFINITY } else { 0.0 }
    });
    if !d.iter().any(|v| *v == 0.0) {
        return None;
    }
    let spacing = mask.geometry.spacing;
    let (mut v, mut z, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for axis in 0..3 {
        let mut lane = Vec::with_capacity(size[axis]);
        for mut line in d.lanes_mut(ndarray::Axis(axis)) {
            lane.clear();
            lane.extend(line.iter().copied());
            edt_lane(&mut lane, spacing[axis], &mut v, &mut z, &mut out);
            line.iter_mut().zip(&lane).for_each(|(o, l)| *o = *l);
        }
    }
    let half = spacing.iter().sum::<f64>() / 6.0;
    let inside: Vec<f64> = d.iter().filter(|v| **v > 0.0).map(|v| v.sqrt() - half).collect();
    Some(4.0 * inside.iter().sum::<f64>() / inside.len() as f64)
}

/// The figures of the checked mask `mask` (normally `CTA_MASK_connected`), with `raw` (the
/// mask before the connected step) for the largest-component fractions, judged by `ranges`.
pub fn assess(mask: &Volume, raw: Option<&Volume>, ranges: &QcRanges) -> MaskQc {
    let voxel_ml = mask.geometry.spacing.iter().product::<f64>() / 1000.0;
    let all: Vec<u8> = CHAMBER_LABELS.iter().map(|(l, _)| *l).collect();
    let components = component_sizes(mask, &all);
    let raw_components = raw.map(|r| component_sizes(r, &all));
    let labels: Vec<LabelFigures> = CHAMBER_LABELS
        .iter()
        .map(|&(label, name)| {
            let sizes = &components[label as usize];
            let largest_component_fraction = raw_components.as_ref().and_then(|c| {
                let total: u64 = c[label as usize].iter().map(|&s| s as u64).sum();
                (total > 0).then(|| c[label as usize][0] as f64 / total as f64)
            });
            LabelFigures {
                label,
                name: name.into(),
                volume_ml: sizes.iter().map(|&s| s as u64).sum::<u64>() as f64 * voxel_ml,
                components: sizes.len(),
                largest_component_fraction,
                touches_border: border_faces(mask, label as f32),
            }
        })
        .collect();
    let mut qc = MaskQc {
        myocardium_mass_g: labels[MYOCARDIUM as usize - 1].volume_ml * MYOCARDIUM_DENSITY,
        mean_wall_thickness_mm: mean_wall_thickness(mask),
        lv_surface_covered: lv_surface_covered(mask),
        labels,
        ranges: ranges.clone(),
        failures: Vec::new(),
    };
    qc.failures = failures(&qc);
    qc
}

/// Why the figures of `qc` fall outside its ranges.
fn failures(qc: &MaskQc) -> Vec<String> {
    let r = &qc.ranges;
    let mut why = Vec::new();
    let mut range = |what: String, value: Option<f64>, [lo, hi]: [f64; 2], unit: &str| match value {
        None => why.push(format!("no {what}")),
        Some(v) if !(lo..=hi).contains(&v) => why.push(format!("{what} {v:.1} {unit} outside {lo}-{hi} {unit}")),
        Some(_) => {}
    };
    for (label, bounds) in [(1, r.lv_ml), (2, r.rv_ml), (3, r.la_ml), (4, r.ra_ml)] {
        let l = qc.label(label);
        range(format!("{} volume", l.name), Some(l.volume_ml), bounds, "ml");
    }
    let myo = qc.label(MYOCARDIUM);
    range("LV myocardium mass".into(), (myo.volume_ml > 0.0).then_some(qc.myocardium_mass_g), r.myocardium_g, "g");
    range("mean LV wall thickness".into(), qc.mean_wall_thickness_mm, r.wall_mm, "mm");
    match qc.lv_surface_covered {
        Some(c) if c < r.min_lv_covered => {
            why.push(format!("myocardium covers {:.0} % of the LV blood pool's surface (at least {:.0} % expected)", 100.0 * c, 100.0 * r.min_lv_covered))
        }
        _ => {}
    }
    for l in &qc.labels {
        if [1, 2, 3, 4, MYOCARDIUM].contains(&l.label)
            && let Some(f) = l.largest_component_fraction
            && f < r.min_largest_component
        {
            why.push(format!("{} is fragmented: its largest component holds {:.0} % of it", l.name, 100.0 * f));
        }
        if [5, 7].contains(&l.label) && l.volume_ml < r.min_vessel_ml {
            why.push(format!("{} volume {:.1} ml below {} ml", l.name, l.volume_ml, r.min_vessel_ml));
        }
        if [LV, MYOCARDIUM].contains(&l.label) && !l.touches_border.is_empty() {
            why.push(format!("{} touches the image border ({})", l.name, l.touches_border.join(", ")));
        }
    }
    why
}

/// Check the mask file `mask` (with the raw mask `raw` when given) and write the figures to
/// `out` (JSON); the figures are returned whatever the verdict.
pub fn check_files(mask: &Path, raw: Option<&Path>, out: &Path, ranges: &QcRanges) -> Result<MaskQc> {
    let checked = read_input(mask, "mask")?;
    require_label_map(&checked, mask)?;
    let raw = raw
        .map(|p| {
            let v = read_input(p, "raw mask")?;
            require_label_map(&v, p)?;
            super::require_same_grid(&checked, &mask.display().to_string(), &v, &p.display().to_string())?;
            Ok::<_, Error>(v)
        })
        .transpose()?;
    let qc = assess(&checked, raw.as_ref(), ranges);
    qc.write(out)?;
    Ok(qc)
}

/// What a cohort stage does with the QC of each patient's mask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QcPolicy {
    /// The ranges to check.
    pub ranges: QcRanges,
    /// Let a patient whose mask fails go on (its figures are still written).
    pub accept_failures: bool,
}

impl QcPolicy {
    /// The policy with the ranges of a JSON file (every field of [`QcRanges`]) or the defaults.
    pub fn new(ranges: Option<&Path>, accept_failures: bool) -> Result<Self> {
        let ranges = match ranges {
            None => QcRanges::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a QC ranges file: {e}")))?
            }
        };
        Ok(Self { ranges, accept_failures })
    }

    /// Check the patient's mask folder (`3.sorted_mask/<pid>/CTA`): its connected mask against
    /// the ranges, with the raw mask for the component fractions; the figures are written to
    /// `CTA_MASK_qc.json` there, whose path is returned. A failing mask is an error (naming
    /// the reasons) unless failures are accepted.
    pub fn check_patient(&self, folder: &Path) -> Result<(std::path::PathBuf, MaskQc)> {
        use crate::cohort::mask;
        let out = folder.join(mask::QC);
        let qc = check_files(&folder.join(mask::CONNECTED), Some(&folder.join(mask::MASK)), &out, &self.ranges)?;
        self.enforce(&qc, &out)?;
        Ok((out, qc))
    }

    /// Whether a mask with these figures may be used: it passed, or failures are accepted.
    pub fn admits(&self, qc: &MaskQc) -> bool {
        qc.passed() || self.accept_failures
    }

    /// An error naming `path` and the reasons when the policy does not admit `qc`.
    pub fn enforce(&self, qc: &MaskQc, path: &Path) -> Result<()> {
        if self.admits(qc) {
            return Ok(());
        }
        Err(Error::format(path, format!("{} (pass --accept-qc-failures to use the mask anyway)", qc.verdict())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Geometry;
    use ndarray::Array3;

    /// A spherical LV blood pool of radius `r_in` inside a myocardial shell up to `r_out` (mm),
    /// centred in a grid of `n` voxels of `spacing`.
    fn ball(n: [usize; 3], spacing: [f64; 3], r_in: f64, r_out: f64) -> Volume {
        let c: [f64; 3] = std::array::from_fn(|a| (n[a] as f64 - 1.0) / 2.0 * spacing[a]);
        let data = Array3::from_shape_fn(n, |(x, y, z)| {
            let p = [x as f64 * spacing[0], y as f64 * spacing[1], z as f64 * spacing[2]];
            let r = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>().sqrt();
            if r < r_in {
                1.0
            } else if r < r_out {
                6.0
            } else {
                0.0
            }
        });
        Volume::new(data, Geometry::axial(spacing, [0.0; 3]))
    }

    #[test]
    fn wall_thickness_of_a_shell_is_measured_within_a_tenth() {
        for (spacing, n) in [([1.0, 1.0, 1.0], [90, 90, 90]), ([0.7, 0.7, 1.5], [128, 128, 60])] {
            let shell = ball(n, spacing, 25.0, 35.0);
            let t = mean_wall_thickness(&shell).unwrap();
            assert!((t - 10.0).abs() < 1.0, "spacing {spacing:?}: thickness {t}");
        }
    }

    #[test]
    fn a_closed_shell_covers_the_whole_pool_and_volumes_are_in_ml() {
        let shell = ball([90, 90, 90], [1.0; 3], 25.0, 35.0);
        let qc = assess(&shell, Some(&shell), &QcRanges::default());
        assert!((qc.lv_surface_covered.unwrap() - 1.0).abs() < 1e-12);
        let exact = 4.0 / 3.0 * std::f64::consts::PI * 25f64.powi(3) / 1000.0;
        assert!((qc.label(1).volume_ml - exact).abs() / exact < 0.02, "{}", qc.label(1).volume_ml);
        assert!((qc.myocardium_mass_g - qc.label(6).volume_ml * 1.05).abs() < 1e-9);
        assert_eq!(qc.label(1).components, 1);
        assert_eq!(qc.label(1).largest_component_fraction, Some(1.0));
        assert!(qc.label(6).touches_border.is_empty());
        // No RV, atria or vessels: named failures, and the present parts pass.
        let text = qc.failures.join("; ");
        assert!(text.contains("RV blood pool volume 0.0 ml outside 20-450 ml") && text.contains("aorta volume 0.0 ml"), "{text}");
        assert!(!text.contains("LV blood pool") && !text.contains("wall thickness") && !text.contains("covers"), "{text}");
    }

    #[test]
    fn fragments_borders_and_uncovered_pools_are_flagged() {
        let mut shell = ball([90, 90, 90], [1.0; 3], 12.0, 16.0);
        // Open the shell on one side: the pool's surface there borders background.
        for ((x, _, _), v) in shell.data.indexed_iter_mut() {
            if x > 42 && *v == 6.0 {
                *v = 0.0;
            }
        }
        // Scatter myocardium islands in the raw mask.
        let mut raw = shell.clone();
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % 90
        };
        for _ in 0..6000 {
            let (x, y, z) = (next(), next(), next());
            if raw.data[[x, y, z]] == 0.0 {
                raw.data[[x, y, z]] = 6.0;
            }
        }
        raw.data[[0, 45, 45]] = 1.0;
        let qc = assess(&raw, Some(&raw), &QcRanges::default());
        let text = qc.failures.join("; ");
        assert!(text.contains("of the LV blood pool's surface"), "{text}");
        assert!(text.contains("LV myocardium is fragmented"), "{text}");
        assert!(text.contains("LV blood pool touches the image border (x-)"), "{text}");
        assert!(qc.label(6).components > 100);
    }

    #[test]
    fn the_figures_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let qc = assess(&ball([40, 40, 40], [2.0; 3], 20.0, 30.0), None, &QcRanges::default());
        qc.write(&dir.path().join("qc.json")).unwrap();
        assert_eq!(MaskQc::read(&dir.path().join("qc.json")).unwrap(), qc);
    }
}
