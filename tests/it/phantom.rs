//! The synthetic cohort: determinism, value ranges, mask/MBF consistency, misalignment.

use crate::common;

use common::cta2mbf;
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::io::read_nifti;
use cta2mbf::preprocess::connected::{DEFAULT_LABELS, keep_largest_components};
use cta2mbf::volume::Interpolation;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One cohort shared by the tests of this file (4 patients, 64×64×48, seed 1), made by the CLI.
fn cohort() -> &'static (tempfile::TempDir, Vec<String>) {
    static C: OnceLock<(tempfile::TempDir, Vec<String>)> = OnceLock::new();
    C.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_phantom(dir.path());
        let ids = Cohort::new(dir.path()).patients(cohort::SORTED_NII).unwrap();
        (dir, ids)
    })
}

fn run_phantom(out: &Path) {
    let st = cta2mbf()
        .args(["phantom", "--out"])
        .arg(out)
        .args(["--cases", "4", "--size", "64,64,48", "--seed", "1"])
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_gives_identical_files() {
    let (first, ids) = cohort();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| id.len() == 7 && id.bytes().all(|b| b.is_ascii_digit())), "{ids:?}");
    let second = tempfile::tempdir().unwrap();
    run_phantom(second.path());
    let a = files(first.path());
    let b = files(second.path());
    assert_eq!(a.len(), 4 * 17, "{a:?}");
    assert_eq!(a.iter().map(|p| p.strip_prefix(first.path()).unwrap()).collect::<Vec<_>>(),
               b.iter().map(|p| p.strip_prefix(second.path()).unwrap()).collect::<Vec<_>>());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap(), "{}", x.display());
    }
    // A different seed gives a different cohort.
    let third = tempfile::tempdir().unwrap();
    let st = cta2mbf().args(["phantom", "--out"]).arg(third.path()).args(["--cases", "1", "--size", "32,32,24", "--seed", "2"]).output().unwrap();
    assert!(st.status.success());
    assert_ne!(Cohort::new(third.path()).patients(cohort::SORTED_NII).unwrap()[0], ids[0]);
}

fn mean_where(values: &cta2mbf::Volume, mask: &cta2mbf::Volume, keep: impl Fn(f32) -> bool) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for (v, m) in values.data.iter().zip(mask.data.iter()) {
        if keep(*m) {
            s += *v as f64;
            n += 1;
        }
    }
    assert!(n > 0);
    s / n as f64
}

#[test]
fn cropped_cta_has_ct_values_and_mbf_lives_exactly_on_the_myocardium() {
    let (dir, ids) = cohort();
    let c = Cohort::new(dir.path());
    for pid in ids {
        let cta = read_nifti(c.cropped(pid, cohort::cropped::CTA)).unwrap();
        let mbf = read_nifti(c.cropped(pid, cohort::cropped::MBF)).unwrap();
        let mask = read_nifti(c.cropped(pid, cohort::cropped::MASK)).unwrap();
        let mbf_mask = read_nifti(c.cropped(pid, cohort::cropped::MBF_MASK)).unwrap();
        assert_eq!(cta.shape(), mask.shape());
        // CT values in HU.
        let blood = mean_where(&cta, &mask, |m| m == 1.0);
        assert!((300.0..=500.0).contains(&blood), "{pid}: LV blood {blood}");
        let myo = mean_where(&cta, &mask, |m| m == 6.0);
        assert!((60.0..=150.0).contains(&myo), "{pid}: myocardium {myo}");
        let (lo, hi, _) = cta.stats();
        assert!(lo >= -1100.0 && hi <= 1100.0, "{pid}: CTA range {lo}..{hi}");
        let count = |r: std::ops::Range<f32>| cta.data.iter().filter(|v| r.contains(v)).count();
        assert!(count(-160.0..-40.0) > 50, "{pid}: fat around the heart");
        assert!(count(-950.0..-750.0) > 10, "{pid}: lung in the crop");
        // MBF > 0 exactly on label 6, −1024 elsewhere, in the flow range.
        for ((&f, &m), &fm) in mbf.data.iter().zip(mask.data.iter()).zip(mbf_mask.data.iter()) {
            assert_eq!(f > 0.0, m == 6.0, "{pid}: mbf {f} label {m}");
            if m == 6.0 {
                assert!((10.0..=320.0).contains(&f), "{pid}: mbf {f}");
            } else {
                assert_eq!(f, -1024.0);
            }
            assert_eq!(fm, if f > 0.0 { 1.0 } else { 0.0 });
        }
        // The crop is the inclusive bounding box of the mask, its origin moved accordingly.
        let full_mask = read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap();
        let (lo, hi) = full_mask.bounding_box(|v| v > 0.0).unwrap();
        assert_eq!(mask.shape(), [0, 1, 2].map(|a| hi[a] - lo[a] + 1));
        let want = full_mask.geometry.index_to_world(lo.map(|v| v as f64));
        for a in 0..3 {
            assert!((mask.geometry.origin[a] - want[a]).abs() < 1e-4);
        }
        assert_eq!(read_nifti(c.cropped(pid, cohort::cropped::MBF)).unwrap().geometry, mask.geometry);
    }
}

#[test]
fn connected_components_remove_exactly_the_spurious_islands() {
    let (dir, ids) = cohort();
    let c = Cohort::new(dir.path());
    for pid in ids {
        let raw = read_nifti(c.mask(pid, cohort::mask::MASK)).unwrap();
        let clean = read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap();
        assert_ne!(raw.data, clean.data, "{pid}: the mask has islands");
        assert_eq!(keep_largest_components(&raw, &DEFAULT_LABELS).data, clean.data, "{pid}");
        let labels: std::collections::BTreeSet<i32> = clean.data.iter().map(|v| *v as i32).collect();
        assert_eq!(labels.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5, 6, 7], "{pid}");
    }
}

fn dice(a: impl Iterator<Item = bool>, b: impl Iterator<Item = bool>) -> f64 {
    let (mut both, mut n) = (0usize, 0usize);
    for (x, y) in a.zip(b) {
        both += (x && y) as usize;
        n += x as usize + y as usize;
    }
    2.0 * both as f64 / n as f64
}

#[test]
fn perfusion_is_misaligned_and_the_registration_folder_undoes_it() {
    let (dir, ids) = cohort();
    let c = Cohort::new(dir.path());
    for pid in ids {
        let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(c.phantom_truth(pid)).unwrap()).unwrap();
        let d = truth["myocardium_dice_unaligned"].as_f64().unwrap();
        assert!(d < 0.8, "{pid}: unaligned myocardium Dice {d}");
        assert!(truth["defects"].as_array().unwrap().len() <= 2);
        assert_eq!(truth["seed"], 1);
        let cta = read_nifti(c.sorted_nii(pid, "CTA")).unwrap();
        let mip = read_nifti(c.sorted_nii(pid, "MIP")).unwrap();
        // Perfusion grid: thicker slices, shorter z coverage.
        assert!(mip.geometry.spacing[2] > cta.geometry.spacing[2] * 1.5);
        let z_len = |v: &cta2mbf::Volume| v.geometry.spacing[2] * (v.shape()[2] - 1) as f64;
        assert!(z_len(&mip) < z_len(&cta), "{pid}");
        // Blood pools of MIP overlaid as they are (no registration) vs registered.
        let naive = mip.resample_to_grid(cta.shape(), &cta.geometry, Interpolation::Linear, -1024.0);
        let registered = read_nifti(c.registration(pid, cohort::registration::MIP)).unwrap();
        assert!(registered.same_grid(&cta, 1e-6));
        // Bright structures (contrast blood, bone) of CTA and MIP should coincide.
        let bright = |v: &cta2mbf::Volume| v.data.iter().map(|x| *x > 300.0).collect::<Vec<_>>();
        let d_naive = dice(bright(&naive).into_iter(), bright(&cta).into_iter());
        let d_reg = dice(bright(&registered).into_iter(), bright(&cta).into_iter());
        assert!(d_naive < 0.8, "{pid}: naive overlay Dice {d_naive}");
        assert!(d_reg > 0.8 && d_reg > d_naive + 0.15, "{pid}: registered Dice {d_reg} vs naive {d_naive}");
    }
}
