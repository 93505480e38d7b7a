//! The mask stages over a cohort (DESIGN §3 steps 6–7): with the phantom's true masks,
//! `myocardium` then `crop` reproduce the phantom's own `5.mbf_myocardium` exactly; a mask of
//! the wrong size, a mask without myocardium and an empty cohort each give one clear message
//! while the other patients complete.

use crate::common;

use common::cta2mbf;
use cta2mbf::io::{NiftiDtype, read_nifti, read_nifti_image, write_nifti};
use std::path::{Path, PathBuf};
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

const CROPPED: [&str; 5] = [
    "registration_cta_mip_bf_myocardium.nii.gz",
    "cropped_cta.nii.gz",
    "cropped_mbf.nii.gz",
    "cropped_mask.nii.gz",
    "cropped_mbf_mask.nii.gz",
];

#[test]
fn myocardium_then_crop_reproduce_the_phantom_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = phantom(&root, 2);
    let truth: PathBuf = dir.path().join("truth");
    std::fs::rename(root.join("5.mbf_myocardium"), &truth).unwrap();
    for name in ["myocardium", "crop"] {
        let out = stage(name, &root);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains(&format!("{name}: 2 patients, 2 done, 0 failed")), "{}", text(&out));
    }
    for pid in &pids {
        for file in CROPPED {
            let want = read_nifti_image(truth.join(pid).join(file)).unwrap();
            let got = read_nifti_image(root.join("5.mbf_myocardium").join(pid).join(file)).unwrap();
            assert_eq!(got.dtype, want.dtype, "{pid}/{file}: datatype");
            assert_eq!(got.volumes[0].data, want.volumes[0].data, "{pid}/{file}: values");
            assert_eq!(got.volumes[0].geometry, want.volumes[0].geometry, "{pid}/{file}: geometry");
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
    let written = |pid: &str| root.join("5.mbf_myocardium").join(pid).join(CROPPED[0]).exists();
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
