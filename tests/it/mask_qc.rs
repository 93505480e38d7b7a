//! Mask quality control and per-patient failure isolation in the cohort commands: the phantom's
//! masks pass QC; the shipped phantom model run on noise volumes is flagged, and `pipeline`
//! keeps those patients out of myocardium/crop unless told to accept them; a NIfTI with a
//! singular direction and a CTA with NaN voxels fail their own patients only, without a panic.

use crate::common;

use common::{cta2mbf, repo};
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use cta2mbf::preprocess::mask_qc::{MaskQc, QcRanges, assess};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn pipeline(root: &Path, from: &str) -> Command {
    let mut c = cta2mbf();
    c.args(["pipeline", "--in"]).arg(root.join("raw")).arg("--root").arg(root).args(["--from", from]);
    c.arg("--seg-model").arg(repo().join("models/chamber_seg_phantom"));
    c
}

/// The status of `stage` for `pid` in the pipeline's JSON report.
fn status(root: &Path, pid: &str, stage: &str) -> (String, String) {
    let report: Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    let p = report["patients"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap_or_else(|| panic!("{pid} not in the report"));
    let s = &p["stages"][stage];
    (s["status"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap_or_default().to_string())
}

/// Three noise "CTAs" on the grid of `like`: white noise over the CT range, the same noise
/// smoothed into blobs, and blobs inside a body-like ellipse of soft tissue.
fn noise_volumes(like: &cta2mbf::Volume) -> Vec<cta2mbf::Volume> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let data = ndarray::Array3::from_shape_simple_fn(like.shape(), || rng.random_range(-1024.0..1500.0f32));
    let white = cta2mbf::Volume::new(data, like.geometry);
    let blobs = white.gaussian_blur([4.0; 3]).map(|v| (v - 238.0) * 8.0 + 100.0);
    let [nx, ny, _] = like.shape();
    let mut body = blobs.clone();
    for ((x, y, _), v) in body.data.indexed_iter_mut() {
        let (u, w) = (x as f64 / nx as f64 - 0.5, y as f64 / ny as f64 - 0.5);
        *v = if u * u / 0.2 + w * w / 0.12 < 1.0 { 40.0 + *v * 0.5 } else { -1000.0 };
    }
    vec![white, blobs, body]
}

#[test]
fn phantom_masks_pass_and_noise_masks_are_stopped_before_myocardium() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("C");
    let pids = common::phantom(&root, 3, "64,64,48", 21);
    let c = Cohort::new(&root);
    // The phantom's own masks pass.
    for pid in &pids {
        let truth = read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap();
        let qc = assess(&truth, None, &QcRanges::default());
        println!("phantom truth {pid}: {qc}");
        assert!(qc.passed(), "{pid}: {qc}");
    }
    let cta = read_nifti(c.sorted_nii(&pids[0], "CTA")).unwrap();
    let noise: Vec<String> = (0..3).map(|i| format!("noise{i}")).collect();
    for (pid, v) in noise.iter().zip(noise_volumes(&cta)) {
        write_nifti(c.sorted_nii(pid, "CTA"), &v, NiftiDtype::I16).unwrap();
    }
    let out = pipeline(&root, "segment").output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    for pid in &pids {
        assert_eq!(status(&root, pid, "connected").0, "done", "{log}");
        assert_eq!(status(&root, pid, "crop").0, "done", "{log}");
        let qc = MaskQc::read(&c.mask(pid, cohort::mask::QC)).unwrap();
        println!("phantom model on phantom {pid}: {qc}");
        assert!(qc.passed());
    }
    for pid in &noise {
        let (s, why) = status(&root, pid, "connected");
        let qc = MaskQc::read(&c.mask(pid, cohort::mask::QC)).unwrap();
        println!("phantom model on {pid}: {qc}");
        assert_eq!(s, "qc failed", "{pid}: {why}");
        assert_eq!(why, qc.failures.join("; "));
        assert_eq!(status(&root, pid, "myocardium").0, "not run");
        assert!(!root.join(cohort::MBF_MYOCARDIUM).join(pid).exists(), "{pid} reached myocardium");
    }
    let table = std::fs::read_to_string(root.join("pipeline_report.md")).unwrap();
    assert!(table.contains("| noise0 |") && table.contains("QC FAILED"), "{table}");
    assert!(table.contains(&format!("- {} mask: QC passed (LV ", pids[0])), "{table}");
    // The figures are in the JSON report too.
    let report: Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    let entry = |pid: &str| report["patients"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap()["mask_qc"].clone();
    assert_eq!(entry(&pids[0])["failures"], serde_json::json!([]));
    assert!(entry("noise1")["failures"].as_array().unwrap().len() >= 3);
    // With the override, the noise patients go on (and fail at myocardium: they have no
    // registered perfusion), the phantom patients are up to date.
    let out = pipeline(&root, "segment").arg("--accept-qc-failures").output().unwrap();
    let log = text(&out);
    for pid in &noise {
        assert_eq!(status(&root, pid, "connected").0, "skipped", "{log}");
        let (s, why) = status(&root, pid, "myocardium");
        assert_eq!(s, "failed", "{log}");
        assert!(why.contains("cta_mip_bf.nii.gz"), "{why}");
    }
    for pid in &pids {
        assert_eq!(status(&root, pid, "crop").0, "skipped", "{log}");
    }
}

#[test]
fn segment_and_connected_write_the_figures_and_stop_failing_patients() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("C");
    let pids = common::phantom(&root, 2, "64,64,48", 22);
    let c = Cohort::new(&root);
    let cta = read_nifti(c.sorted_nii(&pids[0], "CTA")).unwrap();
    write_nifti(c.sorted_nii("noise", "CTA"), &noise_volumes(&cta)[1], NiftiDtype::I16).unwrap();
    let masks = dir.path().join("masks");
    let out = cta2mbf()
        .args(["segment", "--checkpoint"])
        .arg(repo().join("models/chamber_seg_phantom"))
        .arg("--in")
        .arg(root.join(cohort::SORTED_NII))
        .arg("--out")
        .arg(&masks)
        .output()
        .unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("patient noise FAILED") && log.contains("QC FAILED"), "{log}");
    for pid in &pids {
        assert!(log.contains(&format!("patient {pid}: wrote")), "{log}");
        assert!(MaskQc::read(&masks.join(pid).join("CTA").join(cohort::mask::QC)).unwrap().passed());
    }
    // The failing patient's files are there to look at.
    assert!(!MaskQc::read(&masks.join("noise/CTA").join(cohort::mask::QC)).unwrap().passed());
    // `connected --root` checks again; the override makes it succeed.
    let out = cta2mbf().args(["connected", "--root"]).arg(&masks).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = cta2mbf().args(["connected", "--root"]).arg(&masks).arg("--accept-qc-failures").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Custom ranges: an impossible LV range fails the phantom too, naming the figure.
    let ranges = dir.path().join("ranges.json");
    let mut r = serde_json::to_value(QcRanges::default()).unwrap();
    r["lv_ml"] = serde_json::json!([1000.0, 2000.0]);
    std::fs::write(&ranges, r.to_string()).unwrap();
    let single = masks.join(&pids[0]).join("CTA");
    let out = cta2mbf()
        .args(["connected", "--in"])
        .arg(single.join(cohort::mask::MASK))
        .arg("--out")
        .arg(dir.path().join("c.nii.gz"))
        .arg("--qc-out")
        .arg(dir.path().join("qc.json"))
        .arg("--qc-ranges")
        .arg(&ranges)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(!out.status.success() && log.contains("LV blood pool volume") && log.contains("outside 1000-2000 ml"), "{log}");
}

/// Gzip `bytes` to `path`.
fn write_gz(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    std::fs::write(path, e.finish().unwrap()).unwrap();
}

#[test]
fn a_singular_direction_and_nan_voxels_fail_their_patients_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("C");
    let pids = common::phantom(&root, 3, "48,48,32", 23);
    let c = Cohort::new(&root);
    // Patient 0: the MIP's sform has two equal columns.
    let mip = c.sorted_nii(&pids[0], "MIP");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&mip).unwrap()), &mut bytes).unwrap();
    for row in [280, 296, 312] {
        let first: [u8; 4] = bytes[row..row + 4].try_into().unwrap();
        bytes[row + 4..row + 8].copy_from_slice(&first);
    }
    write_gz(&mip, &bytes);
    // Patient 1: NaN voxels in the CTA (stored as float32).
    let mut cta = read_nifti(c.sorted_nii(&pids[1], "CTA")).unwrap();
    cta.data[[10, 11, 12]] = f32::NAN;
    cta.data[[20, 11, 12]] = f32::NAN;
    write_nifti(c.sorted_nii(&pids[1], "CTA"), &cta, NiftiDtype::F32).unwrap();
    for command in ["register", "pipeline"] {
        let out = if command == "register" {
            cta2mbf().args(["register", "--root"]).arg(&root).output().unwrap()
        } else {
            pipeline(&root, "register").args(["--to", "register"]).output().unwrap()
        };
        let log = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {log}");
        assert!(!log.contains("panicked"), "{command}: {log}");
        assert!(log.contains("MIP.nii.gz: the header's sform has (nearly) parallel axes"), "{command}: {log}");
        assert!(log.contains("CTA.nii.gz: the fixed image (CTA) holds 2 NaN or infinite voxels"), "{command}: {log}");
        assert!(c.registration(&pids[2], cohort::registration::BF).is_file(), "{command}: {log}");
    }
    assert_eq!(status(&root, &pids[0], "register").0, "failed");
    assert_eq!(status(&root, &pids[1], "register").0, "failed");
    assert!(matches!(status(&root, &pids[2], "register").0.as_str(), "done" | "skipped"));
}
