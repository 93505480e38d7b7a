//! `cta2mbf pipeline` end to end on the phantom's DICOM dump: the training pairs it makes
//! match the phantom's own (the differences come from segmentation and registration), `train`
//! runs on them, a rerun skips everything, a run killed during registration or segmentation
//! finishes on rerun with the same files, and broken patients are reported while the others
//! complete.

use crate::common;

use common::{cta2mbf, run_ok, same_files};
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::io::dicom::SliceHeader;
use cta2mbf::io::read_nifti;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pipeline(raw: &Path, root: &Path) -> Command {
    common::pipeline(cta2mbf(), raw, root)
}

/// Every file below the folders of `root` (not the run's report at the root), with
/// its modification time and bytes.
fn stamped_files(root: &Path) -> Vec<(PathBuf, std::time::SystemTime, Vec<u8>)> {
    let files = common::walk(root).into_iter().filter(|p| p.parent() != Some(root));
    files.map(|p| (p.metadata().unwrap().modified().unwrap(), std::fs::read(&p).unwrap(), p)).map(|(modified, bytes, p)| (p, modified, bytes)).collect()
}

/// Start `cmd`, wait until `ready` holds (polling), kill it with SIGKILL.
fn kill_when(mut cmd: Command, ready: impl Fn() -> bool, what: &str) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the pipeline ended before {what}");
        assert!(start.elapsed() < Duration::from_secs(600), "{what} never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn dice(a: &ndarray::Array3<f32>, b: &ndarray::Array3<f32>, label: f32) -> f64 {
    let (mut both, mut total) = (0usize, 0usize);
    for (x, y) in a.iter().zip(b.iter()) {
        both += (*x == label && *y == label) as usize;
        total += (*x == label) as usize + (*y == label) as usize;
    }
    2.0 * both as f64 / total.max(1) as f64
}

#[test]
fn dicom_dump_to_training_pairs_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let phantom = dir.path().join("P");
    run_ok(cta2mbf().args(["phantom", "--dicom", "--cases", "3", "--size", "96,96,64", "--seed", "4", "--out"]).arg(&phantom));
    let root = dir.path().join("R");
    let text = run_ok(&mut pipeline(&phantom.join("raw"), &root));
    assert!(text.contains("0 patients failed"), "{text}");
    let (p, r) = (Cohort::new(&phantom), Cohort::new(&root));
    let pids = p.patients(cohort::SORTED_NII).unwrap();
    assert_eq!(r.patients(cohort::MBF_MYOCARDIUM).unwrap(), pids);
    for pid in &pids {
        for f in [cohort::cropped::CTA, cohort::cropped::MBF, cohort::cropped::MASK, cohort::cropped::MBF_MASK] {
            assert!(r.cropped(pid, f).is_file(), "{pid}: {f} missing");
        }
        // The CTA comes through sort/extract/convert unchanged.
        assert_eq!(read_nifti(r.sorted_nii(pid, "CTA")).unwrap(), read_nifti(p.sorted_nii(pid, "CTA")).unwrap(), "{pid}: CTA");
        // Myocardium from the shipped segmentation model against the phantom's truth.
        let mask = |c: &Cohort| read_nifti(c.mask(pid, cohort::mask::CONNECTED)).unwrap().data;
        let d = dice(&mask(&r), &mask(&p), 6.0);
        // MBF (registered BF in the myocardium) against the exact registration's, where both measured it.
        let mbf = |c: &Cohort| read_nifti(c.cropped(pid, cohort::cropped::MYOCARDIUM_BF)).unwrap().data;
        let (mr, mp) = (mbf(&r), mbf(&p));
        let (mut diff, mut sum, mut n) = (0.0, 0.0, 0usize);
        for (a, b) in mr.iter().zip(mp.iter()) {
            if *a >= 0.0 && *b >= 0.0 {
                diff += (a - b).abs() as f64;
                sum += *b as f64;
                n += 1;
            }
        }
        let (mad, mean) = (diff / n as f64, sum / n as f64);
        eprintln!("{pid}: myocardium Dice {d:.3}, MBF mean |difference| {mad:.2} of mean {mean:.1} over {n} voxels");
        assert!(d >= 0.9, "{pid}: myocardium Dice {d}");
        assert!(mad <= 0.1 * mean, "{pid}: MBF mean |difference| {mad} vs mean {mean}");
    }
    assert!(root.join("pipeline_report.md").is_file() && root.join("pipeline_report.json").is_file());

    // Nothing to do: every stage skipped, and no file under the stage folders (outputs,
    // figures, manifests) rewritten or touched; only the run's report at the root is new.
    let before = stamped_files(&root);
    let text = run_ok(&mut pipeline(&phantom.join("raw"), &root));
    assert!(text.contains("0 stage runs done, 24 skipped"), "{text}");
    let after = stamped_files(&root);
    assert_eq!(after.iter().map(|f| &f.0).collect::<Vec<_>>(), before.iter().map(|f| &f.0).collect::<Vec<_>>(), "a rerun changed the file list");
    for (a, b) in after.iter().zip(&before) {
        assert!(a == b, "a rerun with nothing to do rewrote {}", a.0.display());
    }

    // `train` runs on the result.
    let config = common::tiny_generator_config(dir.path(), "tiny", &[]);
    run_ok(cta2mbf().args(["train", "--quiet", "--epochs", "1", "--config"]).arg(&config).arg("--data-root").arg(root.join(cohort::MBF_MYOCARDIUM)).arg("--checkpoints-dir").arg(dir.path().join("ckpt")));

    // Killed during registration, then during segmentation; each rerun finishes the same files.
    let killed = dir.path().join("K");
    let k = Cohort::new(&killed);
    kill_when(pipeline(&phantom.join("raw"), &killed), || killed.join(cohort::REGISTRATION).is_dir(), "registration");
    // A second pipeline on a root that one is working on is refused, naming the first
    // patient's lock and the process holding it.
    let mut first = pipeline(&phantom.join("raw"), &killed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    let lock = killed.join("pipeline").join(format!("{}.lock", pids[0]));
    // (The killed run left its lock files behind, without the flock: wait for this run's pid.)
    while std::fs::read_to_string(&lock).unwrap_or_default().lines().next() != Some(&first.id().to_string()) {
        assert!(first.try_wait().unwrap().is_none(), "the first pipeline ended before it was seen holding its lock");
        assert!(start.elapsed() < Duration::from_secs(600), "the first pipeline never took its lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = pipeline(&phantom.join("raw"), &killed).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("in use by process {}", first.id())) && err.contains(&lock.display().to_string()), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    kill_when(pipeline(&phantom.join("raw"), &killed), || k.mask(&pids[0], cohort::mask::MASK).is_file(), "segmentation");
    let text = run_ok(&mut pipeline(&phantom.join("raw"), &killed));
    assert!(text.contains("skipped"), "{text}");
    same_files(&root, &killed);
}

/// The files of `raw/<pid>/` whose SeriesInstanceUID is `uid`.
fn series_files(raw: &Path, pid: &str, uid: &str) -> Vec<PathBuf> {
    common::walk(&raw.join(pid)).into_iter().filter(|f| SliceHeader::read(f).ok().and_then(|h| h.series_instance_uid).as_deref() == Some(uid)).collect()
}

#[test]
fn broken_patients_are_reported_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let phantom = dir.path().join("P");
    run_ok(cta2mbf().args(["phantom", "--dicom", "--cases", "3", "--size", "64,64,48", "--seed", "8", "--out"]).arg(&phantom));
    let raw = phantom.join("raw");
    let table = std::fs::read_to_string(phantom.join("annotation/annotation.csv")).unwrap();
    let uid = |pid: &str, column: usize| table.lines().find(|l| l.starts_with(pid)).unwrap().split(',').nth(column).unwrap().trim().to_string();
    let header: Vec<String> = table.lines().next().unwrap().split(',').map(|s| s.trim().to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column in {header:?}"));
    let pids = Cohort::new(&phantom).patients(cohort::SORTED_NII).unwrap();
    // Patient 0 loses its BF series; patient 1 gets a CTA file cut in the middle of its pixels.
    for f in series_files(&raw, &pids[0], &uid(&pids[0], col("BF"))) {
        std::fs::remove_file(f).unwrap();
    }
    let cta_files = series_files(&raw, &pids[1], &uid(&pids[1], col("CTA")));
    let bytes = std::fs::read(&cta_files[3]).unwrap();
    std::fs::write(&cta_files[3], &bytes[..bytes.len() - 3000]).unwrap();

    let root = dir.path().join("R");
    let out = pipeline(&raw, &root).arg("--annotation").arg(phantom.join("annotation/annotation.csv")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    let report = std::fs::read_to_string(root.join("pipeline_report.md")).unwrap();
    let line = |pid: &str| report.lines().find(|l| l.starts_with(&format!("- {pid} ")) && l.contains("FAILED")).unwrap_or_else(|| panic!("no failure for {pid}:\n{report}")).to_string();
    assert!(line(&pids[0]).contains("extract") && line(&pids[0]).contains("BF"), "{}", line(&pids[0]));
    // The truncated file, as sorted, is named with what is wrong in it.
    assert!(line(&pids[1]).contains("convert") && line(&pids[1]).contains("/CTA/") && line(&pids[1]).contains("(7FE0,0010)"), "{}\n{report}", line(&pids[1]));
    assert!(Cohort::new(&root).cropped(&pids[2], cohort::cropped::MBF).is_file(), "{report}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    assert_eq!(json["failed_patients"], 2);
}
