//! The slice-map page in a real browser: two fabricated inference variants of a tiny phantom
//! (no training), two runs' metrics.jsonl and a baseline go through `cta2mbf slicemap`, and
//! `scripts/page_check.py` drives headless Chromium over the page (panels, colour bars,
//! baseline row, learning curve; variant, case and slider changes; no console error). The
//! same check must fail on a page with missing images or a script error.

use crate::common;

use common::cta2mbf;
use cta2mbf::cohort::{MBF_MYOCARDIUM, cropped};
use cta2mbf::cohort::inference as files;
use cta2mbf::io::nifti::{NiftiDtype, read_nifti, write_nifti};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Two inference folders under `dir` for the cases of `data` (a `5.mbf_myocardium`):
/// real_a the CTA, real_b the myocardium MBF, fake_b the MBF off by +15 or scaled by 0.8.
fn fabricated_variants(data: &Path, pids: &[String], dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (name, predict) in [("6.inference_plus15", (|v: f32| v + 15.0) as fn(f32) -> f32), ("6.inference_scaled", |v: f32| 0.8 * v)] {
        let variant = dir.join(name);
        for pid in pids {
            let cta = read_nifti(data.join(pid).join(cropped::CTA)).unwrap();
            let mbf = read_nifti(data.join(pid).join(cropped::MBF)).unwrap();
            let mut fake = mbf.clone();
            fake.data.mapv_inplace(|v| if v > 0.0 { predict(v) } else { 60.0 });
            let case = variant.join(pid);
            write_nifti(case.join(files::REAL_A), &cta, NiftiDtype::F32).unwrap();
            write_nifti(case.join(files::REAL_B), &mbf, NiftiDtype::F32).unwrap();
            write_nifti(case.join(files::FAKE_B), &fake, NiftiDtype::F32).unwrap();
        }
        out.push(variant);
    }
    out
}

/// A run folder `dir/name` whose metrics.jsonl has 3 epochs with held-out MAE in both modes.
fn run_with_metrics(dir: &Path, name: &str, start: f64) -> PathBuf {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let lines: String = (1..=3)
        .map(|e| {
            let mae = start - 4.0 * e as f64;
            format!(
                "{{\"epoch\":{e},\"lr\":0.001,\"val_train_mode\":{{\"mae\":900.0,\"mae_mask\":{mae}}},\"val_eval_mode\":{{\"mae\":905.0,\"mae_mask\":{}}}}}\n",
                mae + 2.5
            )
        })
        .collect();
    std::fs::write(run.join("metrics.jsonl"), lines).unwrap();
    run
}

fn page_check(index: &Path) -> Output {
    crate::common::python_output("page_check.py", &[index])
}

#[test]
fn the_page_works_in_a_real_browser_and_its_check_catches_breakage() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("cohort");
    let pids = common::phantom(&root, 2, "32,32,24", 3);
    let variants = fabricated_variants(&root.join(MBF_MYOCARDIUM), &pids, tmp.path());
    let runs = [run_with_metrics(tmp.path(), "demo_train", 40.0), run_with_metrics(tmp.path(), "demo_eval", 38.0)];
    let maps = tmp.path().join("maps");
    let out = cta2mbf()
        .args(["slicemap", "--baseline", "32.5", "--in"])
        .args(&variants)
        .arg("--runs")
        .args(&runs)
        .arg("--out")
        .arg(&maps)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let index = maps.join("index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    for label in ["demo_train, train norm", "demo_train, eval norm", "demo_eval, train norm", "demo_eval, eval norm"] {
        assert!(html.contains(&format!(">{label}<")), "{label}");
    }

    let checked = page_check(&index);
    let report = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success(), "{report}");
    for action in ["switch variant", "switch case", "move slider one step", "move slider to the first or last slice"] {
        assert!(report.contains(&format!("page_check: {action}:")), "{action}: {report}");
    }

    // A script error: the page's own check must fail and say so.
    let broken = maps.join("broken_script.html");
    std::fs::write(&broken, html.replacen("const variants = ", "const variants = undefinedName || ", 1)).unwrap();
    let out = page_check(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("undefinedName"), "{stderr}");

    // The |error| slices of the second case of the second variant gone: found on switching.
    let name = variants[1].file_name().unwrap();
    std::fs::remove_dir_all(maps.join(name).join(&pids[1]).join("error")).unwrap();
    let out = page_check(&index);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("switch case: image") && stderr.contains("did not load"), "{stderr}");
}

#[test]
fn a_run_without_metrics_is_one_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("norun");
    std::fs::create_dir_all(&run).unwrap();
    let out = cta2mbf().args(["slicemap", "--in"]).arg(tmp.path()).arg("--out").arg(tmp.path().join("maps")).arg("--runs").arg(&run).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&run.join("metrics.jsonl").display().to_string()), "{stderr}");
    assert!(!tmp.path().join("maps").exists(), "nothing drawn before the runs are read");
}
