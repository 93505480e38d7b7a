//! `infer`, `analyze`, `slicemap` and `demo` end to end on a small phantom with a tiny
//! generator: block geometry checked with SimpleITK, a broken case that does not stop the
//! others, train- against eval-mode inference, sliding windows, tables and slice maps.

use crate::common;

use common::cta2mbf;
use cta2mbf::io::nifti::read_nifti;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A phantom cohort of `cases` patients at 64×64×48 in `dir`; returns its root.
fn phantom(dir: &Path, cases: usize) -> PathBuf {
    common::phantom(dir, cases, "64,64,48", 5);
    dir.to_path_buf()
}

/// A tiny config (ngf 4, 2 blocks, 1 epoch) written to `dir/name.json`.
fn tiny_config(dir: &Path, name: &str) -> PathBuf {
    common::tiny_generator_config(dir, name, &[("n_epochs", 1.into())])
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?} failed:\n{}", cmd, String::from_utf8_lossy(&out.stderr));
    out
}

/// Train the tiny generator for one epoch on `root`; returns the run folder.
fn tiny_run(root: &Path, tmp: &Path) -> PathBuf {
    let config = tiny_config(tmp, "tiny");
    run(cta2mbf()
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--data-root")
        .arg(root.join("5.mbf_myocardium"))
        .arg("--checkpoints-dir")
        .arg(tmp.join("ckpt")));
    tmp.join("ckpt/tiny")
}

fn infer(run_dir: &Path, root: &Path, mode: &str, extra: &[&str]) -> Output {
    run(cta2mbf()
        .args(["infer", "--quiet", "--norm-mode", mode, "--checkpoint"])
        .arg(run_dir)
        .arg("--data-root")
        .arg(root.join("5.mbf_myocardium"))
        .args(extra))
}

fn geometry_check(block: &Path, source: &Path) -> Value {
    serde_json::from_slice(&crate::common::python("inference_geometry_check.py", &[block, source])).unwrap()
}

#[test]
fn block_keeps_world_positions_and_modes_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let root = phantom(&tmp.path().join("cohort"), 3);
    let run_dir = tiny_run(&root, tmp.path());
    let pid = std::fs::read_dir(root.join("5.mbf_myocardium")).unwrap().next().unwrap().unwrap().file_name();
    let pid = pid.to_string_lossy().into_owned();
    let src = root.join("5.mbf_myocardium").join(&pid).join("cropped_cta.nii.gz");
    let shape = read_nifti(&src).unwrap().shape();
    // Crop x, pad y, pad z: the block is smaller than the case in x and larger in y and z.
    let block = [(shape[0] - 6) / 8 * 8, (shape[1] + 12).div_ceil(8) * 8, (shape[2] + 1).div_ceil(8) * 8];
    assert!(block[0] < shape[0] && block[1] > shape[1] && block[2] > shape[2]);
    let block_arg = format!("{},{},{}", block[0], block[1], block[2]);
    let out = infer(&run_dir, &root, "eval", &["--block", &block_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 case(s) written"), "{stdout}");
    // Default folder: beside the data root, named after the block and the mode.
    let dir = root.join(format!("6.inference_{}x{}x{}_eval", block[0], block[1], block[2]));
    for name in ["real_a", "real_b", "fake_b"] {
        let v = read_nifti(dir.join(&pid).join(format!("{name}.nii.gz"))).unwrap();
        assert_eq!(v.shape(), block, "{name}");
    }
    let check = geometry_check(&dir.join(&pid).join("real_a.nii.gz"), &src);
    assert_eq!(check["mismatches"], 0, "{check}");
    assert!(check["max_index_error"].as_f64().unwrap() < 1e-4, "{check}");
    assert!(check["compared"].as_u64().unwrap() > 0 && check["padded"].as_u64().unwrap() > 0, "{check}");
    assert_eq!(check["same_spacing"], true);
    assert_eq!(check["same_direction"], true);
    let mbf = root.join("5.mbf_myocardium").join(&pid).join("cropped_mbf.nii.gz");
    assert_eq!(geometry_check(&dir.join(&pid).join("real_b.nii.gz"), &mbf)["mismatches"], 0);
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("inference.json")).unwrap()).unwrap();
    assert_eq!(manifest["norm_mode"], "eval");
    assert_eq!(manifest["trained_norm_mode"], "train");

    // The same block in train norm mode gives another prediction of the same input.
    let train_dir = tmp.path().join("train_mode");
    infer(&run_dir, &root, "train", &["--block", &block_arg, "--out", train_dir.to_str().unwrap()]);
    let a = read_nifti(dir.join(&pid).join("fake_b.nii.gz")).unwrap();
    let b = read_nifti(train_dir.join(&pid).join("fake_b.nii.gz")).unwrap();
    assert!(a.same_grid(&b, 1e-6));
    let diff = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "train and eval norm modes gave the same output");

    // Sliding windows: a block smaller than the case in every axis, the whole case predicted.
    let sw = tmp.path().join("sliding");
    infer(&run_dir, &root, "eval", &["--block", "16,16,16", "--sliding-window", "--overlap", "0.5", "--out", sw.to_str().unwrap()]);
    let fake = read_nifti(sw.join(&pid).join("fake_b.nii.gz")).unwrap();
    let real_a = read_nifti(sw.join(&pid).join("real_a.nii.gz")).unwrap();
    assert_eq!(fake.shape(), shape.map(|s| s.max(16)));
    assert!(fake.same_grid(&read_nifti(&src).unwrap(), 1e-6));
    assert!(fake.data.iter().all(|v| v.is_finite()));
    assert_eq!(real_a.data, read_nifti(&src).unwrap().data);

    // analyze: the reference's CSV columns first, then the extra scores; default path.
    let out = run(cta2mbf().args(["analyze", "--in"]).arg(&dir));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mae_myocardium"));
    let csv_path = root.join(format!("7.analysis_result/mae_{}x{}x{}_eval.csv", block[0], block[1], block[2]));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "suid,mae,mae_myocardium,psnr,ssim");
    assert_eq!(lines.len(), 4);
    // The MAE column matches a direct computation.
    let real = read_nifti(dir.join(&pid).join("real_b.nii.gz")).unwrap();
    let want = a.data.iter().zip(&real.data).map(|(f, r)| (f - r).abs() as f64).sum::<f64>() / real.len() as f64;
    let row = lines.iter().find(|l| l.starts_with(&pid)).unwrap();
    let got: f64 = row.split(',').nth(1).unwrap().parse().unwrap();
    assert!((got - want).abs() < 1e-3 * want.max(1.0), "{got} vs {want}");

    // compare and slicemap over two variants.
    let out = run(cta2mbf().args(["analyze", "--compare"]).arg(&dir).arg(&train_dir).arg("--out").arg(tmp.path().join("cmp")));
    let md = std::fs::read_to_string(tmp.path().join("cmp.md")).unwrap();
    assert_eq!(md.lines().count(), 4, "{md}");
    assert!(md.contains("(train→eval)") && md.contains("(train→train)"), "{md}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("| variant |"));
    let maps = tmp.path().join("maps");
    run(cta2mbf().args(["slicemap", "--in"]).arg(&dir).arg(&train_dir).arg("--out").arg(&maps));
    let variant = dir.file_name().unwrap().to_string_lossy().into_owned();
    for layer in ["real_a", "real_b", "fake_b"] {
        for z in [0, block[2] - 1] {
            assert!(maps.join(&variant).join(&pid).join(layer).join(format!("x_{z}.png")).is_file(), "{layer} {z}");
        }
    }
    assert!(maps.join("train_mode").join(&pid).join("montage.png").is_file());
    let html = std::fs::read_to_string(maps.join("index.html")).unwrap();
    assert!(html.contains(&pid) && html.contains("train_mode"));
}

#[test]
fn a_broken_case_is_reported_and_the_others_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = phantom(&tmp.path().join("cohort"), 3);
    let run_dir = tiny_run(&root, tmp.path());
    let data = root.join("5.mbf_myocardium");
    let mut ids: Vec<String> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    let broken = data.join(&ids[1]).join("cropped_cta.nii.gz");
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let out_dir = tmp.path().join("out");
    let out = cta2mbf()
        .args(["infer", "--quiet", "--norm-mode", "eval", "--checkpoint"])
        .arg(&run_dir)
        .arg("--data-root")
        .arg(&data)
        .args(["--out", out_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 case(s) written"), "{stdout}");
    assert!(stdout.contains(&ids[1]) && stdout.contains("cropped_cta.nii.gz"), "{stdout}");
    assert!(out_dir.join(&ids[0]).join("fake_b.nii.gz").is_file());
    assert!(out_dir.join(&ids[2]).join("fake_b.nii.gz").is_file());
    assert!(!out_dir.join(&ids[1]).join("fake_b.nii.gz").exists());
    // The others were written, and the exit status still says that one failed.
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("infer: 1 of 3 cases failed"), "{}", String::from_utf8_lossy(&out.stderr));

    // analyze and slicemap on a folder with one corrupt fake_b: that case is reported, the
    // others are scored and drawn, and the exit status is 1.
    let fake = out_dir.join(&ids[2]).join("fake_b.nii.gz");
    let bytes = std::fs::read(&fake).unwrap();
    std::fs::write(&fake, &bytes[..bytes.len() / 2]).unwrap();
    let csv_path = tmp.path().join("scores.csv");
    let out = cta2mbf().args(["analyze", "--in"]).arg(&out_dir).arg("--out").arg(&csv_path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("case {} skipped", ids[2])) && stderr.contains("corrupt or truncated gzip"), "{stderr}");
    assert!(stderr.contains("analyze: 1 of 2 cases failed"), "{stderr}");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with(&format!("{},", ids[0])), "{csv}");
    let maps = tmp.path().join("maps");
    let out = cta2mbf().args(["slicemap", "--in"]).arg(&out_dir).arg("--out").arg(&maps).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(maps.join(&ids[0]).join("montage.png").is_file() && maps.join("index.html").is_file());
    assert!(!maps.join(&ids[2]).join("montage.png").exists());

    // A checkpoint that is not one, and a block that is not a multiple of 8: one clear error.
    let bad = cta2mbf().args(["infer", "--norm-mode", "eval", "--checkpoint"]).arg(tmp.path()).arg("--data-root").arg(&data).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a cta2mbf checkpoint"));
    let bad = cta2mbf().args(["infer", "--norm-mode", "eval", "--block", "20,16,16", "--checkpoint"]).arg(&run_dir).arg("--data-root").arg(&data).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("multiple of 8"));
}

#[test]
fn demo_runs_the_whole_system_on_a_tiny_config() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), "tiny");
    let out_dir = tmp.path().join("demo");
    let out = run(cta2mbf()
        .args(["demo", "--quiet", "--cases", "3", "--held-out", "1", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out_dir));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(train→eval)") && stdout.contains("(train→train)") && stdout.contains("(eval→eval)"), "{stdout}");
    assert!(stdout.contains("baseline"), "{stdout}");
    for suffix in ["", "_train", "_eval"] {
        assert!(out_dir.join(format!("6.inference_32x32x40{suffix}")).join("inference.json").is_file());
        assert!(out_dir.join(format!("7.analysis_result/mae_32x32x40{suffix}.csv")).is_file());
    }
    // The page plots both runs' learning curves (read back from the metrics.jsonl training
    // wrote) against the baseline, which is also a row of its table.
    let html = std::fs::read_to_string(out_dir.join("6.inference_slicemap/index.html")).unwrap();
    for text in ["<svg id=\"learning-curve\"", ">demo_train, train norm<", ">demo_eval, eval norm<", "<tr class=\"baseline\">"] {
        assert!(html.contains(text), "{text}");
    }
    assert!(out_dir.join("7.analysis_result/compare.md").is_file());
    // A folder that is not an earlier demo's output is refused before anything is written.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let refused = cta2mbf().args(["demo", "--quiet", "--config"]).arg(&config).arg("--out").arg(&other).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
}
