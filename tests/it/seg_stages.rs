//! The mask stages over a cohort (DESIGN §3 steps 6–7): on the phantom's files, given an
//! oblique grid and negative and zero flow in the myocardium, `myocardium` then `crop` write
//! what the test computes from the definition voxel by voxel; a mask of
//! the wrong size, a mask without myocardium and an empty cohort each give one clear message
//! while the other patients complete.

use crate::common;

use common::cta2mbf;
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::io::{NiftiDtype, read_nifti, read_nifti_image, write_nifti};
use cta2mbf::{Geometry, Volume};
use ndarray::{Array3, s};
use std::path::Path;
use std::process::Output;

fn phantom(root: &Path, cases: usize) -> Vec<String> {
    common::phantom(root, cases, "48,48,32", 9)
}

fn stage(name: &str, root: &Path) -> Output {
    cta2mbf().arg(name).arg("--root").arg(root).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Give patient `pid`'s step 6–7 inputs what the phantom lacks, on one shared grid: an oblique
/// direction and anisotropic spacing (so a crop's origin depends on both), and registered BF
/// that is negative on every fifth myocardium voxel and zero on every fifth after it.
fn harden_inputs(c: &Cohort, pid: &str) {
    let direction = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]];
    let geometry = Geometry { spacing: [0.7, 0.9, 1.6], origin: [-12.5, 30.0, 101.25], direction };
    let mask_path = c.mask(pid, cohort::mask::CONNECTED);
    let mask = read_nifti(&mask_path).unwrap();
    let mut bf = read_nifti(c.registration(pid, cohort::registration::BF)).unwrap();
    let mut n = 0usize;
    for (b, &m) in bf.data.iter_mut().zip(mask.data.iter()) {
        if m == 6.0 {
            match n % 5 {
                0 => *b = -*b - 3.0,
                1 => *b = 0.0,
                _ => {}
            }
            n += 1;
        }
    }
    write_nifti(&mask_path, &Volume { geometry, ..mask }, NiftiDtype::U8).unwrap();
    write_nifti(c.registration(pid, cohort::registration::BF), &Volume { geometry, ..bf }, NiftiDtype::I16).unwrap();
    let cta_path = c.registration(pid, cohort::registration::CTA);
    let cta = read_nifti(&cta_path).unwrap();
    write_nifti(&cta_path, &Volume { geometry, ..cta }, NiftiDtype::I16).unwrap();
}

/// What steps 6 and 7 (DESIGN §3) make of one patient's files, computed here voxel by voxel:
/// (file name, datatype, values, origin); spacing and direction are the inputs'.
fn expected_outputs(c: &Cohort, pid: &str) -> Vec<(&'static str, NiftiDtype, Array3<f32>, [f64; 3])> {
    let bf = read_nifti(c.registration(pid, cohort::registration::BF)).unwrap();
    let mask = read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap();
    let cta = read_nifti(c.registration(pid, cohort::registration::CTA)).unwrap();
    let mut myocardium = Array3::from_elem(mask.data.dim(), -1024.0f32);
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for ((i, j, k), &m) in mask.data.indexed_iter() {
        let b = bf.data[[i, j, k]];
        if m == 6.0 && b >= 0.0 {
            myocardium[[i, j, k]] = b;
        }
        if m > 0.0 {
            for (a, v) in [i, j, k].into_iter().enumerate() {
                lo[a] = lo[a].min(v);
                hi[a] = hi[a].max(v);
            }
        }
    }
    let cut = |a: &Array3<f32>| a.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]).to_owned();
    let g = &mask.geometry;
    let origin = [0, 1, 2].map(|r| g.origin[r] + (0..3).map(|a| g.direction[r][a] * g.spacing[a] * lo[a] as f64).sum::<f64>());
    assert!(lo != [0; 3] && myocardium.iter().any(|&v| v > 0.0), "{pid}: the box must move the origin and the MBF hold flow");
    let mbf = cut(&myocardium);
    let mbf_mask = mbf.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    let (full_origin, i16, u8) = (g.origin, NiftiDtype::I16, NiftiDtype::U8);
    vec![
        (cohort::cropped::MYOCARDIUM_BF, i16, myocardium, full_origin),
        (cohort::cropped::CTA, i16, cut(&cta.data), origin),
        (cohort::cropped::MBF, i16, mbf, origin),
        (cohort::cropped::MASK, u8, cut(&mask.data), origin),
        (cohort::cropped::MBF_MASK, u8, mbf_mask, origin),
    ]
}

#[test]
fn myocardium_then_crop_follow_their_definition() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = phantom(&root, 2);
    std::fs::remove_dir_all(root.join(cohort::MBF_MYOCARDIUM)).unwrap();
    let c = Cohort::new(&root);
    for pid in &pids {
        harden_inputs(&c, pid);
    }
    for name in ["myocardium", "crop"] {
        let out = stage(name, &root);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains(&format!("{name}: 2 patients, 2 done, 0 failed")), "{}", text(&out));
    }
    for pid in &pids {
        let input = read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap().geometry;
        for (file, dtype, values, origin) in expected_outputs(&c, pid) {
            let got = read_nifti_image(c.cropped(pid, file)).unwrap();
            let v = &got.volumes[0];
            assert_eq!(got.dtype, dtype, "{pid}/{file}: datatype");
            assert_eq!(v.data.dim(), values.dim(), "{pid}/{file}: shape");
            let wrong = v.data.indexed_iter().filter(|&(i, x)| *x != values[i]).collect::<Vec<_>>();
            assert!(wrong.is_empty(), "{pid}/{file}: {} voxels differ, first {:?} (expected {})", wrong.len(), wrong[0], values[wrong[0].0]);
            let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
            assert!(close(&v.geometry.origin, &origin), "{pid}/{file}: origin {:?}, expected {origin:?}", v.geometry.origin);
            let same_axes = close(&v.geometry.spacing, &input.spacing) && close(v.geometry.direction.as_flattened(), input.direction.as_flattened());
            assert!(same_axes, "{pid}/{file}: {:?}", v.geometry);
        }
    }
}

#[test]
fn bad_masks_fail_alone_and_an_empty_cohort_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = phantom(&root, 3);
    std::fs::remove_dir_all(root.join("5.mbf_myocardium")).unwrap();
    let mask_of = |pid: &str| root.join("3.sorted_mask").join(pid).join("CTA/CTA_MASK_connected.nii.gz");
    // Patient 0: a mask one slice shorter than its CTA. Patient 1: no myocardium (6 → 1).
    let m = read_nifti(mask_of(&pids[0])).unwrap();
    let [nx, ny, nz] = m.shape();
    write_nifti(mask_of(&pids[0]), &m.crop([0, 0, 0], [nx, ny, nz - 1]).unwrap(), NiftiDtype::U8).unwrap();
    let m = read_nifti(mask_of(&pids[1])).unwrap();
    write_nifti(mask_of(&pids[1]), &m.map(|v| if v == 6.0 { 1.0 } else { v }), NiftiDtype::U8).unwrap();

    let out = stage("myocardium", &root);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = |pid: &str| t.lines().find(|l| l.starts_with(&format!("patient {pid}"))).unwrap_or_else(|| panic!("no line for {pid}: {t}")).to_string();
    let l0 = line(&pids[0]);
    assert!(l0.contains("FAILED") && l0.contains("CTA_MASK_connected.nii.gz") && l0.contains("not on the same grid"), "{l0}");
    let l1 = line(&pids[1]);
    assert!(l1.contains("FAILED") && l1.contains("CTA_MASK_connected.nii.gz") && l1.contains("no voxel of label 6"), "{l1}");
    assert!(line(&pids[2]).contains("wrote"), "{t}");
    assert!(t.contains("myocardium: 3 patients, 1 done, 2 failed"), "{t}");
    assert!(t.contains("cta2mbf: error: myocardium: 2 of 3 patients failed"), "{t}");
    let written = |pid: &str| root.join("5.mbf_myocardium").join(pid).join(cohort::cropped::MYOCARDIUM_BF).exists();
    assert!(!written(&pids[0]) && !written(&pids[1]) && written(&pids[2]));

    // crop: patient 0 (and 1, whose myocardium MBF was never written) fail, patient 2 completes.
    let out = stage("crop", &root);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let l0 = t.lines().find(|l| l.starts_with(&format!("patient {}", pids[0]))).unwrap();
    assert!(l0.contains("FAILED") && (l0.contains("missing myocardium MBF") || l0.contains("not on the same grid")), "{l0}");
    assert!(root.join("5.mbf_myocardium").join(&pids[2]).join("cropped_mbf_mask.nii.gz").exists());
    assert!(!root.join("5.mbf_myocardium").join(&pids[0]).join("cropped_cta.nii.gz").exists());

    // An empty cohort (a 3.sorted_mask without patients), and a root without one.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("3.sorted_mask")).unwrap();
    for name in ["myocardium", "crop"] {
        let out = stage(name, &empty);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert_eq!(t.lines().count(), 1, "one line: {t}");
        assert!(t.contains("3.sorted_mask") && t.contains("holds no patient folders"), "{t}");
    }
    let out = stage("myocardium", dir.path());
    assert!(text(&out).contains("no such folder"), "{}", text(&out));
    let out = cta2mbf().args(["connected", "--root"]).arg(&empty).output().unwrap();
    assert!(text(&out).contains("holds no patient folders"), "{}", text(&out));
}

#[test]
fn a_mask_that_is_not_a_label_map_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nii.gz");
    let v = cta2mbf::Volume::new(ndarray::Array3::from_elem([3, 3, 3], 2.5f32), cta2mbf::Geometry::default());
    write_nifti(&path, &v, NiftiDtype::F32).unwrap();
    let out = cta2mbf().args(["connected", "--in"]).arg(&path).arg("--out").arg(dir.path().join("o.nii.gz")).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(t.contains("m.nii.gz") && t.contains("not a label map"), "{t}");
    assert!(!dir.path().join("o.nii.gz").exists());
}
