//! End to end on the phantom's DICOM dump: `phantom --dicom` → `sort` → `extract` (with and
//! without the annotation table) → `convert` reproduces the phantom's own `3.sorted_nii`.

use crate::common;

use common::*;
use cta2mbf::cohort::{self, Cohort, MODALITIES};
use cta2mbf::io::{read_nifti, read_nifti_image};
use std::path::Path;
use std::process::Output;

fn run_ok(args: &[&str]) -> String {
    let out: Output = cta2mbf().args(args).output().unwrap();
    assert!(out.status.success(), "cta2mbf {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

/// Every converted volume equals the phantom's ground truth: values exactly, geometry to 1e-4 mm.
fn assert_matches_truth(root: &Path, nii: &Path, ids: &[String]) {
    let truth = Cohort::new(root);
    for pid in ids {
        for m in MODALITIES {
            let want = read_nifti(truth.sorted_nii(pid, m)).unwrap();
            let path = nii.join(pid).join(format!("{m}.nii.gz"));
            let image = read_nifti_image(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(image.dtype.name(), "int16", "{}", path.display());
            let got = &image.volumes[0];
            assert_eq!(got.shape(), want.shape(), "{pid} {m}: shape");
            let d = got.geometry.max_abs_diff(&want.geometry);
            assert!(d <= 1e-4, "{pid} {m}: geometry differs by {d}: {:?} vs {:?}", got.geometry, want.geometry);
            assert_same_values(got.data.as_slice().unwrap(), want.data.as_slice().unwrap(), &format!("{pid} {m}"));
        }
    }
}

#[test]
fn phantom_dicom_dump_sorts_extracts_and_converts_to_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let r = root.to_str().unwrap();
    run_ok(&["phantom", "--out", r, "--cases", "2", "--size", "40,40,96", "--seed", "5", "--dicom"]);
    let ids = cta2mbf::phantom::patient_ids(5, 2);
    let raw = root.join(cohort::RAW);
    let raw_files_before = walk(&raw);
    let raw_bytes_before: Vec<Vec<u8>> = raw_files_before.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // The dump is flat and mixed: DICOM of six series, a DICOMDIR and a text file.
    for pid in &ids {
        let names: Vec<String> = std::fs::read_dir(raw.join(pid)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.contains(&"DICOMDIR".to_string()) && names.contains(&"readme.txt".to_string()));
        assert!(std::fs::read_dir(raw.join(pid)).unwrap().all(|e| e.unwrap().file_type().unwrap().is_file()));
    }
    let table = std::fs::read_to_string(root.join("annotation/annotation.csv")).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");

    let work = dir.path().join("work");
    let ori = work.join(cohort::ORI);
    let report = run_ok(&["sort", "--in", raw.to_str().unwrap(), "--out", ori.to_str().unwrap(), "--jobs", "2"]);
    assert!(report.contains("DICOMDIR: DICOM without SeriesInstanceUID"), "{report}");
    assert!(report.contains("readme.txt: not a DICOM file"), "{report}");
    for pid in &ids {
        assert_eq!(std::fs::read_dir(ori.join(pid)).unwrap().count(), 6, "{pid}: six series");
        assert_eq!(count_files(&ori.join(pid)) + 2, std::fs::read_dir(raw.join(pid)).unwrap().count());
    }
    // Sorting again adds nothing.
    let n = count_files(&ori);
    let again = run_ok(&["sort", "--in", raw.to_str().unwrap(), "--out", ori.to_str().unwrap()]);
    assert!(again.contains(" 0 copied"), "{again}");
    assert_eq!(count_files(&ori), n);

    // Without the table: CTA chosen as the primary axial series with the most slices.
    let dcm = work.join(cohort::SORTED_DCM);
    let report = run_ok(&["extract", "--in", ori.to_str().unwrap(), "--out", dcm.to_str().unwrap()]);
    assert!(report.contains("the ORIGINAL/PRIMARY axial CT series with the most slices (96) of 2 such series"), "{report}");
    assert!(report.contains("extract: 2 patients, 2 extracted, 0 skipped"), "{report}");
    let nii = work.join(cohort::SORTED_NII);
    let report = run_ok(&["convert", "--in", dcm.to_str().unwrap(), "--out", nii.to_str().unwrap()]);
    assert!(report.contains("8 series written, 0 failed") && !report.contains("warning"), "{report}");
    assert_matches_truth(&root, &nii, &ids);

    // With the table: the same four series.
    let dcm2 = work.join("annotated_dcm");
    let table_path = root.join("annotation/annotation.csv");
    let report = run_ok(&["extract", "--in", ori.to_str().unwrap(), "--out", dcm2.to_str().unwrap(), "--annotation", table_path.to_str().unwrap()]);
    assert_eq!(report.matches("named in the annotation table").count(), 8, "{report}");
    let nii2 = work.join("annotated_nii");
    run_ok(&["convert", "--in", dcm2.to_str().unwrap(), "--out", nii2.to_str().unwrap()]);
    assert_matches_truth(&root, &nii2, &ids);

    // One series by hand, as with dcm2niix, and `info` on a series folder.
    let cta_dir = std::fs::read_dir(dcm.join(&ids[0]).join("CTA")).unwrap().next().unwrap().unwrap().path();
    let single = work.join("single.nii.gz");
    run_ok(&["convert", "--series", cta_dir.to_str().unwrap(), "--output", single.to_str().unwrap()]);
    assert_eq!(std::fs::read(&single).unwrap(), std::fs::read(nii.join(&ids[0]).join("CTA.nii.gz")).unwrap());
    let info = run_ok(&["info", cta_dir.to_str().unwrap()]);
    assert!(info.contains("ImageType ORIGINAL\\PRIMARY\\AXIAL") && info.contains("size 40 x 40 x 96"), "{info}");
    let json: serde_json::Value = serde_json::from_str(&run_ok(&["info", "--json", cta_dir.to_str().unwrap()])).unwrap();
    assert_eq!(json["slices"], 96);

    // The inputs were not touched.
    assert_eq!(walk(&raw), raw_files_before);
    for (p, b) in raw_files_before.iter().zip(&raw_bytes_before) {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{}", p.display());
    }
}

#[test]
fn a_patient_missing_a_modality_is_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    run_ok(&["phantom", "--out", root.to_str().unwrap(), "--cases", "2", "--size", "32,32,80", "--seed", "9", "--dicom"]);
    let ids = cta2mbf::phantom::patient_ids(9, 2);
    let ori = dir.path().join(cohort::ORI);
    run_ok(&["sort", "--in", root.join(cohort::RAW).to_str().unwrap(), "--out", ori.to_str().unwrap()]);
    // Remove the first patient's BF series from the sorted copy.
    let table = std::fs::read_to_string(root.join("annotation/annotation.csv")).unwrap();
    let line = table.lines().find(|l| l.starts_with(&ids[0])).unwrap();
    let bf_uid = line.split(',').nth(4).unwrap();
    std::fs::remove_dir_all(ori.join(&ids[0]).join(bf_uid)).unwrap();
    let dcm = dir.path().join(cohort::SORTED_DCM);
    let out = cta2mbf().args(["extract", "--in", ori.to_str().unwrap(), "--out", dcm.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains(&format!("patient {}: SKIPPED", ids[0])) && stdout.contains("BF: missing"), "{stdout}");
    assert!(stdout.contains(&format!("patient {}: extracted", ids[1])), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 patients skipped"));
    assert!(!dcm.join(&ids[0]).exists() && dcm.join(&ids[1]).join("BF").is_dir());
}
