//! `cta2mbf register` end to end: it recovers a phantom cohort's known motion (TRE and
//! myocardium Dice computed from the generator's truth), SimpleITK reads its transform files
//! and resamples the same images (needs `pip install SimpleITK`, as `.ci/run` does), a saved
//! transform re-applies to the same result, and bad inputs fail one patient with a message
//! naming the file while the others finish.

use crate::common;

use common::cta2mbf;
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use cta2mbf::phantom::check::check_registration;
use cta2mbf::register::Transform;
use cta2mbf::register::bspline::BSplineField;
use cta2mbf::register::transform::Affine;
use cta2mbf::volume::mat3;
use cta2mbf::{Geometry, Volume};
use ndarray::Array3;
use std::path::Path;
use std::process::Command;

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cta2mbf runs");
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crosscheck(args: &[&Path], fill: &str, points: Option<&Path>) -> serde_json::Value {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|p| p.as_os_str()).collect();
    all.push(fill.as_ref());
    if let Some(p) = points {
        all.push(p.as_os_str());
    }
    serde_json::from_slice(&crate::common::python("register_crosscheck.py", &all)).unwrap()
}

#[test]
fn phantom_motion_is_recovered_and_simpleitk_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ph");
    run_ok(cta2mbf().args(["phantom", "--cases", "2", "--size", "96,96,64", "--seed", "5", "--out"]).arg(&root));
    let stdout = run_ok(cta2mbf().args(["register", "--root"]).arg(&root));
    assert!(stdout.contains("against the phantom's truth"), "{stdout}");
    let cohort = Cohort::new(&root);
    for pid in cohort.patients(cohort::SORTED_NII).unwrap() {
        let t = Transform::read_tfm(&cohort.registration(&pid, cohort::registration::TRANSFORM)).unwrap();
        let c = check_registration(&cohort.phantom_truth(&pid), |p| t.apply(p)).unwrap();
        eprintln!("{pid}: {c:?}");
        assert!(c.dice_unaligned < 0.8, "{pid}: the phantom must start misaligned: {c:?}");
        assert!(c.tre_mean_mm <= 1.0 && c.tre_p95_mm <= 2.0, "{pid}: {c:?}");
        assert!(c.dice_registered >= 0.85, "{pid}: {c:?}");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(cohort.registration(&pid, cohort::registration::REPORT)).unwrap()).unwrap();
        assert!(report["min_jacobian"].as_f64().unwrap() > 0.0, "folding: {report}");
        // The CTA is copied, all four outputs are on its grid.
        let cta = read_nifti(cohort.sorted_nii(&pid, "CTA")).unwrap();
        assert_eq!(read_nifti(cohort.registration(&pid, cohort::registration::CTA)).unwrap(), cta);
        for f in [cohort::registration::MIP, cohort::registration::AVG, cohort::registration::BF] {
            assert!(read_nifti(cohort.registration(&pid, f)).unwrap().same_grid(&cta, 1e-6));
        }
        // SimpleITK reads the transform and resamples MIP and BF as cta2mbf did (to the int16 rounding).
        for (m, out, fill) in [("MIP", cohort::registration::MIP, "-1024"), ("BF", cohort::registration::BF, "0")] {
            let r = crosscheck(&[&cohort.registration(&pid, cohort::registration::TRANSFORM), &cohort.sorted_nii(&pid, "CTA"), &cohort.sorted_nii(&pid, m), &cohort.registration(&pid, out)], fill, None);
            assert_eq!(r["class"], "CompositeTransform");
            assert!(r["fraction_over_half"].as_f64().unwrap() < 1e-4, "{m}: {r}");
            assert!(r["mean_abs_diff"].as_f64().unwrap() < 0.3, "{m}: {r}");
        }
    }
    // Re-applying the saved transform gives the same files.
    let pid = &cohort.patients(cohort::SORTED_NII).unwrap()[0];
    let out = dir.path().join("again");
    run_ok(
        cta2mbf()
            .args(["register", "--transform"])
            .arg(cohort.registration(pid, cohort::registration::TRANSFORM))
            .arg("--fixed")
            .arg(cohort.sorted_nii(pid, "CTA"))
            .arg("--apply")
            .arg(format!("{},{}", cohort.sorted_nii(pid, "AVG").display(), cohort.sorted_nii(pid, "BF").display()))
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(read_nifti(out.join("AVG.nii.gz")).unwrap(), read_nifti(cohort.registration(pid, cohort::registration::AVG)).unwrap());
    assert_eq!(read_nifti(out.join("BF.nii.gz")).unwrap(), read_nifti(cohort.registration(pid, cohort::registration::BF)).unwrap());
}

#[test]
fn oblique_grids_and_a_bspline_transform_match_simpleitk() {
    let dir = tempfile::tempdir().unwrap();
    let fg = Geometry { spacing: [1.7, 1.3, 2.1], origin: [-30.0, 12.0, -50.0], direction: mat3::rotation([0.3, -0.2, 1.0], 0.35) };
    let fshape = [40, 36, 24];
    let fixed = Volume::new(Array3::from_shape_fn(fshape, |(i, j, k)| (i + j + k) as f32), fg);
    let mg = Geometry { spacing: [2.2, 2.0, 3.0], origin: [-40.0, -10.0, -60.0], direction: mat3::rotation([1.0, 0.5, 0.0], -0.2) };
    let moving = Volume::new(
        Array3::from_shape_fn([40, 40, 24], |(i, j, k)| 100.0 * ((i as f32) / 5.0).sin() * ((j as f32) / 7.0).cos() + 3.0 * k as f32),
        mg,
    );
    let mut b = BSplineField::covering(&fg, fshape, 15.0);
    let c: Vec<f64> = (0..b.coefficients().len()).map(|i| 4.0 * (((i * 7919) % 113) as f64 / 113.0 - 0.5)).collect();
    b.set_coefficients(&c);
    let t = Transform { affine: Affine { matrix: mat3::rotation([0.2, 1.0, 0.1], 0.08), translation: [3.0, -2.0, 1.5], center: [0.0, 20.0, -30.0] }, bspline: Some(b) };
    let (f, m, tfm) = (dir.path().join("fixed.nii.gz"), dir.path().join("moving.nii.gz"), dir.path().join("t.tfm"));
    write_nifti(&f, &fixed, NiftiDtype::F32).unwrap();
    write_nifti(&m, &moving, NiftiDtype::F32).unwrap();
    t.write_tfm(&tfm).unwrap();
    let out = dir.path().join("out");
    run_ok(cta2mbf().args(["register", "--transform"]).arg(&tfm).arg("--fixed").arg(&f).arg("--moving").arg(&m).arg("--out").arg(&out));
    // Points through the whole fixed box, and where cta2mbf maps them.
    let points: Vec<[f64; 3]> = (0..200).map(|i| fg.index_to_world([(i % 40) as f64 - 0.3, (i * 7 % 36) as f64, (i * 13 % 24) as f64 + 0.2])).collect();
    let mapped: Vec<[f64; 3]> = points.iter().map(|&p| t.apply(p)).collect();
    let pts = dir.path().join("points.json");
    std::fs::write(&pts, serde_json::to_vec(&serde_json::json!({"points": points, "mapped": mapped})).unwrap()).unwrap();
    let r = crosscheck(&[&tfm, &f, &m, &out.join("moving.nii.gz")], "-1024", Some(&pts));
    assert!(r["max_point_diff_mm"].as_f64().unwrap() < 1e-6, "{r}");
    assert!(r["fraction_over_half"].as_f64().unwrap() < 1e-3, "{r}");
    assert!(r["mean_abs_diff"].as_f64().unwrap() < 0.05, "{r}");
}

/// A small phantom cohort (64×64×48) of `cases` patients under `dir/ph`: its root, the cohort and its patients.
fn phantom_cohort(dir: &Path, cases: usize, seed: u64) -> (std::path::PathBuf, Cohort, Vec<String>) {
    let root = dir.join("ph");
    run_ok(cta2mbf().args(["phantom", "--cases", &cases.to_string(), "--size", "64,64,48", "--seed", &seed.to_string(), "--out"]).arg(&root));
    let cohort = Cohort::new(&root);
    let pids = cohort.patients(cohort::SORTED_NII).unwrap();
    (root, cohort, pids)
}

/// Write `v` as an uncompressed NIfTI with a 4th dimension of 2 frames, under a `.nii.gz` name.
fn write_4d(path: &Path, v: &Volume) {
    let tmp = path.with_extension("tmp.nii");
    write_nifti(&tmp, v, NiftiDtype::I16).unwrap();
    let mut bytes = std::fs::read(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    bytes[40..42].copy_from_slice(&4i16.to_le_bytes());
    bytes[48..50].copy_from_slice(&2i16.to_le_bytes());
    let data = bytes[352..].to_vec();
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn bad_patients_are_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (root, cohort, pids) = phantom_cohort(dir.path(), 5, 9);
    std::fs::remove_dir_all(root.join(cohort::REGISTRATION)).unwrap();
    // 1: the perfusion study is 2 m away from the CTA; 2: the MIP is constant; 3: AVG on another grid; 4: a 4-D CTA.
    let mip = |i: usize| cohort.sorted_nii(&pids[i], "MIP");
    for m in ["MIP", "AVG", "BF"] {
        let mut far = read_nifti(cohort.sorted_nii(&pids[1], m)).unwrap();
        far.geometry.origin[2] += 2000.0;
        write_nifti(cohort.sorted_nii(&pids[1], m), &far, NiftiDtype::I16).unwrap();
    }
    let flat = read_nifti(mip(2)).unwrap().map(|_| -1024.0);
    write_nifti(mip(2), &flat, NiftiDtype::I16).unwrap();
    let avg = read_nifti(cohort.sorted_nii(&pids[3], "AVG")).unwrap();
    let cropped = Volume::new(avg.data.slice(ndarray::s![1.., .., ..]).to_owned(), avg.geometry);
    write_nifti(cohort.sorted_nii(&pids[3], "AVG"), &cropped, NiftiDtype::I16).unwrap();
    write_4d(&cohort.sorted_nii(&pids[4], "CTA"), &read_nifti(cohort.sorted_nii(&pids[4], "CTA")).unwrap());
    let inputs_before = common::walk(&root.join(cohort::SORTED_NII)).into_iter().map(|p| std::fs::read(&p).unwrap()).collect::<Vec<_>>();

    let out = cta2mbf().args(["register", "--root"]).arg(&root).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("4 failed"), "{text}");
    let line = |pid: &str| text.lines().find(|l| l.starts_with(&format!("patient {pid} FAILED"))).unwrap_or_else(|| panic!("no failure line for {pid}:\n{text}")).to_string();
    assert!(line(&pids[1]).contains("MIP.nii.gz") && line(&pids[1]).contains("does not overlap"), "{}", line(&pids[1]));
    assert!(line(&pids[2]).contains("MIP.nii.gz") && line(&pids[2]).contains("no contrast"), "{}", line(&pids[2]));
    assert!(line(&pids[3]).contains("AVG.nii.gz") && line(&pids[3]).contains("different grid"), "{}", line(&pids[3]));
    assert!(line(&pids[4]).contains("CTA.nii.gz") && line(&pids[4]).contains("3-D"), "{}", line(&pids[4]));
    for pid in &pids[1..] {
        let folder = root.join(cohort::REGISTRATION).join(pid);
        assert!(!folder.exists() || std::fs::read_dir(&folder).unwrap().count() == 0, "{pid}: files written for a failed patient");
    }
    for f in [cohort::registration::CTA, cohort::registration::MIP, cohort::registration::AVG, cohort::registration::BF, cohort::registration::TRANSFORM, cohort::registration::REPORT] {
        assert!(cohort.registration(&pids[0], f).is_file(), "{f} missing for the good patient");
    }
    let inputs_after = common::walk(&root.join(cohort::SORTED_NII)).into_iter().map(|p| std::fs::read(&p).unwrap()).collect::<Vec<_>>();
    assert!(inputs_before == inputs_after, "inputs were modified");
}

#[test]
fn a_rigid_linear_stage_keeps_the_matrix_a_rotation_and_aligns_the_phantom() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cohort, pids) = phantom_cohort(dir.path(), 1, 3);
    let pid = &pids[0];
    // Settings written before the schedule fields existed still load; the flag overrides them.
    let config = dir.path().join("old.json");
    std::fs::write(&config, r#"{"metric": "mattes_mi", "samples": 20000, "seed": 0}"#).unwrap();
    let out = dir.path().join("out");
    run_ok(
        cta2mbf()
            .args(["register", "--linear", "rigid", "--affine-only", "--config"])
            .arg(&config)
            .arg("--fixed")
            .arg(cohort.sorted_nii(pid, "CTA"))
            .arg("--moving")
            .arg(cohort.sorted_nii(pid, "MIP"))
            .arg("--out")
            .arg(&out),
    );
    let t = Transform::read_tfm(&out.join("transform.tfm")).unwrap();
    assert!(t.bspline.is_none());
    let m = t.affine.matrix;
    let mtm = mat3::mul(&mat3::transpose(&m), &m);
    assert!((0..3).all(|r| (0..3).all(|c| (mtm[r][c] - mat3::IDENTITY[r][c]).abs() < 1e-9)), "not a rotation: {m:?}");
    assert!(m != mat3::IDENTITY && (mat3::det(&m) - 1.0).abs() < 1e-9);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("registration.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["linear"], "rigid");
    assert_eq!(report["settings"]["samples"], 20000);
    let stages: Vec<&str> = report["levels"].as_array().unwrap().iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["translation", "rigid", "rigid", "rigid"]);
    let c = check_registration(&cohort.phantom_truth(pid), |p| t.apply(p)).unwrap();
    assert!(c.dice_registered > c.dice_unaligned + 0.2 && c.tre_mean_mm < 3.0, "{c:?}");
}
