//! The synthetic cardiac phantom cohort: CTA, misaligned CT-perfusion (MIP, AVG, BF),
//! chamber masks and every derived folder of docs/design.md §2, with known ground truth.
//!
//! Each patient is an analytic anatomy ([`anatomy`]) rendered per modality
//! ([`intensity`]) on a fine CTA grid and on a coarser, shorter perfusion grid that is
//! displaced by a known rigid + smooth non-rigid motion ([`misalign`]). The registration
//! folder holds the perfusion volumes resampled with the exact inverse motion, and the
//! cropped training folder is produced by the library's own myocardium and crop stages.

pub mod anatomy;
pub mod dicom;
pub mod intensity;
pub mod check;
pub mod misalign;

use crate::cohort::{self, Cohort};
use crate::error::{Error, Result};
use crate::io::{NiftiDtype, write_nifti};
use crate::preprocess::{connected, crop, myocardium};
use crate::volume::{Geometry, Interpolation, Volume, mat3::Vec3};
use anatomy::{Anatomy, Defect};
use intensity::{Contrast, Modality};
use misalign::Misalignment;
use ndarray::{Array3, Zip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

/// Default field of view of the CTA grid (x, y, z), mm; spacing is this divided by the size.
pub const CTA_FOV_MM: [f64; 3] = [200.0, 200.0, 150.0];
/// The smallest field of view accepted, mm per axis: the heart must fit.
pub const MIN_FOV_MM: f64 = 80.0;
/// The perfusion grid is this much coarser than the CTA grid (x, y, z).
pub const PERFUSION_COARSENING: [f64; 3] = [1.3, 1.3, 2.0];
/// The unaligned-myocardium Dice the misalignment must stay under.
pub const MAX_UNALIGNED_DICE: f64 = 0.8;

/// Size and position of a voxel grid, as written to `phantom_truth.json`.
#[derive(Debug, Clone, Serialize)]
pub struct GridInfo {
    /// Voxels per axis.
    pub size: [usize; 3],
    /// Geometry (spacing, origin, direction).
    pub geometry: Geometry,
}

/// A spurious island added to `CTA_MASK` (absent from `CTA_MASK_connected`).
#[derive(Debug, Clone, Serialize)]
pub struct Island {
    /// Label of the island.
    pub label: u8,
    /// Voxel indices of the island.
    pub voxels: Vec<[usize; 3]>,
}

/// Everything known about one synthetic patient (`phantom/<pid>/phantom_truth.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PhantomTruth {
    /// Patient id.
    pub pid: String,
    /// Cohort seed.
    pub seed: u64,
    /// Index of the patient in the cohort.
    pub case_index: usize,
    /// The CTA grid (also that of the masks and the registration folder).
    pub cta_grid: GridInfo,
    /// The perfusion grid (MIP, AVG, BF in `3.sorted_nii`).
    pub perfusion_grid: GridInfo,
    /// The motion between the two studies.
    pub misalignment: Misalignment,
    /// Myocardium Dice between the CTA and the perfusion study overlaid without registration.
    pub myocardium_dice_unaligned: f64,
    /// Perfusion defects (0–2).
    pub defects: Vec<Defect>,
    /// Shape parameters.
    pub anatomy: Anatomy,
    /// Contrast and flow parameters.
    pub contrast: Contrast,
    /// The spurious islands of `CTA_MASK`.
    pub spurious_islands: Vec<Island>,
}

/// One generated patient, all volumes in memory.
#[derive(Debug, Clone)]
pub struct PhantomCase {
    /// Ground truth.
    pub truth: PhantomTruth,
    /// CTA, HU (int16 values).
    pub cta: Volume,
    /// Perfusion MIP, HU, perfusion grid.
    pub mip: Volume,
    /// Perfusion AVG, HU, perfusion grid.
    pub avg: Volume,
    /// Perfusion BF, ml/100 g/min, perfusion grid.
    pub bf: Volume,
    /// Chamber mask with spurious islands.
    pub mask: Volume,
    /// Clean chamber mask (one component per cleaned label).
    pub mask_connected: Volume,
    /// MIP, AVG, BF resampled onto the CTA grid with the true inverse motion.
    pub registered: [Volume; 3],
}

/// Seven-digit patient ids for a cohort, distinct and determined by the seed.
pub fn patient_ids(seed: u64, cases: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1D5);
    let mut ids: Vec<String> = Vec::with_capacity(cases);
    while ids.len() < cases {
        let id = rng.random_range(1_000_000u32..10_000_000).to_string();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn case_rng(seed: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(index as u64 + 1))
}

/// Render `f(world point)` on a grid, in parallel (e.g. an [`Anatomy`]'s labels on any grid).
pub fn render<T: Send + Clone + Default>(shape: [usize; 3], geometry: &Geometry, f: impl Fn(Vec3) -> T + Sync) -> Array3<T> {
    let mut out = Array3::from_elem(shape, T::default());
    Zip::indexed(&mut out).par_for_each(|(i, j, k), v| {
        *v = f(geometry.index_to_world([i as f64, j as f64, k as f64]));
    });
    out
}

/// Blur by 0.45 voxel (scanner resolution), add the modality's noise for this voxel size,
/// round to integers.
fn finish(values: Array3<f32>, geometry: Geometry, modality: Modality, rng: &mut ChaCha8Rng) -> Volume {
    let sigma = geometry.spacing.map(|s| 0.45 * s);
    let mut v = Volume::new(values, geometry).gaussian_blur(sigma);
    let voxel_mm3 = geometry.spacing.iter().product::<f64>();
    let s = intensity::noise_sigma(modality, voxel_mm3) as f32;
    for x in v.data.iter_mut() {
        let n: f32 = rng.sample(StandardNormal);
        *x = match modality {
            Modality::Bf => (*x * (1.0 + s * n).max(0.5)).round().max(1.0),
            _ => (*x + s * n).round().clamp(-1024.0, 3071.0),
        };
    }
    v
}

fn dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
    let (mut both, mut na, mut nb) = (0usize, 0usize, 0usize);
    Zip::from(a).and(b).for_each(|&x, &y| {
        both += (x && y) as usize;
        na += x as usize;
        nb += y as usize;
    });
    if na + nb == 0 { 1.0 } else { 2.0 * both as f64 / (na + nb) as f64 }
}

/// Small spurious blobs of cleaned labels, each at least 3 voxels from any label.
fn add_islands(mask: &mut Volume, rng: &mut ChaCha8Rng) -> Vec<Island> {
    let shape = mask.shape();
    let wanted = rng.random_range(3..=6);
    let mut islands = Vec::new();
    let mut tries = 0;
    while islands.len() < wanted && tries < 2000 {
        tries += 1;
        let c = [0, 1, 2].map(|a| rng.random_range(3..shape[a].saturating_sub(3).max(4)));
        if c.iter().zip(shape).any(|(&i, n)| i + 3 >= n) {
            continue;
        }
        let clear = (c[0] - 3..=c[0] + 3)
            .all(|x| (c[1] - 3..=c[1] + 3).all(|y| (c[2] - 3..=c[2] + 3).all(|z| mask.data[[x, y, z]] == 0.0)));
        if !clear {
            continue;
        }
        let label = connected::DEFAULT_LABELS[rng.random_range(0..connected::DEFAULT_LABELS.len())];
        let mut voxels = vec![c];
        for _ in 0..rng.random_range(0..6) {
            let from = voxels[rng.random_range(0..voxels.len())];
            let a = rng.random_range(0..3);
            let mut v = from;
            v[a] = if rng.random_bool(0.5) { v[a] + 1 } else { v[a] - 1 };
            if (0..3).all(|k| v[k].abs_diff(c[k]) <= 1) && !voxels.contains(&v) {
                voxels.push(v);
            }
        }
        for v in &voxels {
            mask.data[*v] = label as f32;
        }
        islands.push(Island { label, voxels });
    }
    islands
}

/// Generate patient `index` of the cohort with `seed`, CTA grid of `size` voxels over a field
/// of view of `fov_mm`.
pub fn generate_case(seed: u64, index: usize, pid: &str, size: [usize; 3], fov_mm: [f64; 3]) -> Result<PhantomCase> {
    if size.iter().any(|&n| n < 16) {
        return Err(Error::invalid(format!("phantom size {size:?} is too small (at least 16 per axis)")));
    }
    if fov_mm.iter().any(|&f| !(f.is_finite() && f >= MIN_FOV_MM)) {
        return Err(Error::invalid(format!("phantom field of view {fov_mm:?} mm: each axis must be at least {MIN_FOV_MM} mm for the heart to fit")));
    }
    let mut rng = case_rng(seed, index);
    // CTA grid centred near the heart, at a random table position.
    let spacing = [0, 1, 2].map(|a| fov_mm[a] / size[a] as f64);
    let heart: Vec3 = [rng.random_range(-10.0..10.0), rng.random_range(-10.0..10.0), rng.random_range(-180.0..-120.0)];
    let fov_center = [0, 1, 2].map(|a| heart[a] + rng.random_range(-6.0..6.0));
    let origin = [0, 1, 2].map(|a| fov_center[a] - 0.5 * (size[a] - 1) as f64 * spacing[a]);
    let cta_geometry = Geometry::axial(spacing, origin);
    let anatomy = Anatomy::random(&mut rng, heart);
    let contrast = Contrast::random(&mut rng);

    let tissues = render(size, &cta_geometry, |p| anatomy.tissue(p));
    let labels = Volume::new(tissues.mapv(|t| t.label as f32), cta_geometry);
    let cta_values = tissues.mapv(|t| contrast.value(&t, Modality::Cta) as f32);
    drop(tissues);
    let cta = finish(cta_values, cta_geometry, Modality::Cta, &mut rng);
    let mask_connected = connected::keep_largest_components(&labels, &connected::DEFAULT_LABELS);
    let mut mask = mask_connected.clone();
    let islands = add_islands(&mut mask, &mut rng);

    // A misalignment large enough to matter: myocardium Dice without registration < 0.8.
    let myo = mask_connected.data.mapv(|v| v == myocardium::MYOCARDIUM_LABEL as f32);
    let mut strength = 1.0;
    let (misalignment, dice_unaligned) = loop {
        let m = Misalignment::random(&mut rng, heart, strength);
        let moved = render(size, &cta_geometry, |p| anatomy.tissue(m.forward(p)).label == myocardium::MYOCARDIUM_LABEL);
        let d = dice(&myo, &moved);
        if d < MAX_UNALIGNED_DICE || strength > 4.0 {
            break (m, d);
        }
        strength *= 1.25;
    };

    // Perfusion grid: coarser, same in-plane field, z covering the heart with a margin.
    let p_spacing = [0, 1, 2].map(|a| spacing[a] * PERFUSION_COARSENING[a]);
    // The z range of the heart chambers (not the great vessels) seen from the perfusion study.
    let (lo, hi) = mask_connected
        .bounding_box(|v| [1.0, 2.0, 3.0, 4.0, 6.0].contains(&v))
        .ok_or_else(|| Error::invalid("phantom heart outside the CTA field of view"))?;
    let mut corners = Vec::new();
    for x in [lo[0] as f64 - 0.5, hi[0] as f64 + 0.5] {
        for y in [lo[1] as f64 - 0.5, hi[1] as f64 + 0.5] {
            for z in [lo[2] as f64 - 0.5, hi[2] as f64 + 0.5] {
                corners.push(misalignment.inverse(cta_geometry.index_to_world([x, y, z])));
            }
        }
    }
    let z_lo = corners.iter().map(|c| c[2]).fold(f64::INFINITY, f64::min) - 6.0;
    let z_hi = corners.iter().map(|c| c[2]).fold(f64::NEG_INFINITY, f64::max) + 6.0;
    let p_size = [
        (fov_mm[0] / p_spacing[0]).round() as usize,
        (fov_mm[1] / p_spacing[1]).round() as usize,
        ((z_hi - z_lo) / p_spacing[2]).ceil() as usize + 1,
    ];
    let p_center = [fov_center[0] + rng.random_range(-5.0..5.0), fov_center[1] + rng.random_range(-5.0..5.0)];
    let p_origin = [
        p_center[0] - 0.5 * (p_size[0] - 1) as f64 * p_spacing[0],
        p_center[1] - 0.5 * (p_size[1] - 1) as f64 * p_spacing[1],
        z_lo,
    ];
    let p_geometry = Geometry::axial(p_spacing, p_origin);
    let p_tissues = render(p_size, &p_geometry, |q| anatomy.tissue(misalignment.forward(q)));
    let mut perfusion = [Modality::Mip, Modality::Avg, Modality::Bf].map(|m| {
        let values = p_tissues.mapv(|t| contrast.value(&t, m) as f32);
        (m, values)
    });
    drop(p_tissues);
    let [mip, avg, bf] = [0, 1, 2].map(|i| {
        let (m, values) = (perfusion[i].0, std::mem::take(&mut perfusion[i].1));
        finish(values, p_geometry, m, &mut rng)
    });

    // Ground-truth registration: each CTA point p looks at perfusion point G⁻¹(p).
    let registered = [(&mip, -1024.0f32), (&avg, -1024.0), (&bf, 0.0)].map(|(v, fill)| {
        v.resample(size, &cta_geometry, |p| misalignment.inverse(p), Interpolation::Linear, fill).map(f32::round)
    });

    let truth = PhantomTruth {
        pid: pid.to_string(),
        seed,
        case_index: index,
        cta_grid: GridInfo { size, geometry: cta_geometry },
        perfusion_grid: GridInfo { size: p_size, geometry: p_geometry },
        misalignment,
        myocardium_dice_unaligned: dice_unaligned,
        defects: anatomy.defects.clone(),
        anatomy,
        contrast,
        spurious_islands: islands,
    };
    Ok(PhantomCase { truth, cta, mip, avg, bf, mask, mask_connected, registered })
}

/// Write one patient into the cohort folders of docs/design.md §2 (and `phantom/<pid>/`).
pub fn write_case(cohort: &Cohort, case: &PhantomCase) -> Result<()> {
    use NiftiDtype::{I16, U8};
    let pid = &case.truth.pid;
    write_nifti(cohort.sorted_nii(pid, "CTA"), &case.cta, I16)?;
    write_nifti(cohort.sorted_nii(pid, "MIP"), &case.mip, I16)?;
    write_nifti(cohort.sorted_nii(pid, "AVG"), &case.avg, I16)?;
    write_nifti(cohort.sorted_nii(pid, "BF"), &case.bf, I16)?;
    write_nifti(cohort.mask(pid, cohort::mask::CTA), &case.cta, I16)?;
    write_nifti(cohort.mask(pid, cohort::mask::MASK), &case.mask, U8)?;
    write_nifti(cohort.mask(pid, cohort::mask::CONNECTED), &case.mask_connected, U8)?;
    write_nifti(cohort.registration(pid, cohort::registration::CTA), &case.cta, I16)?;
    let [mip, avg, bf] = &case.registered;
    write_nifti(cohort.registration(pid, cohort::registration::MIP), mip, I16)?;
    write_nifti(cohort.registration(pid, cohort::registration::AVG), avg, I16)?;
    write_nifti(cohort.registration(pid, cohort::registration::BF), bf, I16)?;
    // The training folder comes from the files just written, through the library's own
    // stages, so it is exactly what `myocardium` + `crop` make of this cohort (geometry as the
    // files store it, in float32).
    myocardium::myocardium_patient(cohort, pid)?;
    crop::crop_patient(cohort, pid)?;
    let json = serde_json::to_vec_pretty(&case.truth).expect("truth serialises");
    let path = cohort.phantom_truth(pid);
    crate::io::atomic::write_bytes_atomically(&path, &json)
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PhantomOptions {
    /// Number of patients.
    pub cases: usize,
    /// CTA grid size (x, y, z).
    pub size: [usize; 3],
    /// Field of view of the CTA grid, mm (default [`CTA_FOV_MM`]); a smaller one centred on
    /// the heart gives finer voxels at the same size.
    pub fov_mm: [f64; 3],
    /// Cohort seed: the same seed gives the same files.
    pub seed: u64,
}


/// Generate and write a whole cohort under `root`; `progress` is called after each patient
/// with (index, pid). Returns the patient ids.
pub fn write_cohort(root: &std::path::Path, options: &PhantomOptions, progress: impl Fn(usize, &str) + Sync) -> Result<Vec<String>> {
    write_cohort_with(root, options, |_, _| Ok(()), progress)
}

/// [`write_cohort`], also calling `also` with each generated patient after its folders are
/// written (e.g. to write it as a DICOM dump).
pub fn write_cohort_with(
    root: &std::path::Path,
    options: &PhantomOptions,
    also: impl Fn(&Cohort, &PhantomCase) -> Result<()> + Sync,
    progress: impl Fn(usize, &str) + Sync,
) -> Result<Vec<String>> {
    use rayon::prelude::*;
    let cohort = Cohort::new(root);
    let ids = patient_ids(options.seed, options.cases);
    ids.par_iter().enumerate().try_for_each(|(i, pid)| {
        let case = generate_case(options.seed, i, pid, options.size, options.fov_mm)?;
        write_case(&cohort, &case)?;
        also(&cohort, &case)?;
        progress(i, pid);
        Ok::<(), Error>(())
    })?;
    Ok(ids)
}

/// [`write_cohort`] plus the DICOM dump of every patient in `raw/<pid>/` and the
/// annotation table `annotation/annotation.csv` (see [`dicom`]).
pub fn write_cohort_with_dicom(root: &std::path::Path, options: &PhantomOptions, progress: impl Fn(usize, &str) + Sync) -> Result<Vec<String>> {
    let rows = std::sync::Mutex::new(Vec::new());
    let ids = write_cohort_with(
        root,
        options,
        |cohort, case| {
            let row = dicom::write_dicom_dump(cohort, case, options.seed)?;
            rows.lock().expect("no panic while holding the lock").push(row);
            Ok(())
        },
        progress,
    )?;
    dicom::write_annotation(&Cohort::new(root), &rows.into_inner().expect("no panic while holding the lock"))?;
    Ok(ids)
}
