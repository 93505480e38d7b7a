//! `cta2mbf train` end to end on a small phantom: checkpoints, resume after a kill,
//! TensorBoard events read by TensorBoard itself, and bad configurations refused.

use crate::common;

use common::cta2mbf;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A phantom cohort of `cases` patients at 64×64×48 in `dir`; returns its training folder.
fn phantom(dir: &Path, cases: usize) -> PathBuf {
    common::phantom(dir, cases, "64,64,48", 3);
    dir.join("5.mbf_myocardium")
}

/// A tiny config (ngf 4, 2 blocks) written to `dir/name.json`, with what the assertions
/// below count on (lr, checkpoint and image frequencies) before `extra`.
fn tiny_config(dir: &Path, name: &str, extra: &[(&str, Value)]) -> PathBuf {
    let mut keys: Vec<(&str, Value)> = vec![("display_freq", 2.into()), ("save_epoch_freq", 2.into()), ("lr", 0.002.into())];
    keys.extend(extra.iter().cloned());
    common::tiny_generator_config(dir, name, &keys)
}

fn train_cmd(config: &Path, data: &Path, ckpt: &Path, epochs: usize) -> Command {
    let mut c = cta2mbf();
    c.args(["train", "--quiet", "--epochs", &epochs.to_string(), "--config"])
        .arg(config)
        .arg("--data-root")
        .arg(data)
        .arg("--checkpoints-dir")
        .arg(ckpt);
    c
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn latest_epoch(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("latest/state.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["epoch"].as_u64()
}

#[test]
fn killed_run_resumes_with_the_same_schedule_and_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(&tmp.path().join("cohort"), 3);
    let config = tiny_config(tmp.path(), "resume", &[("lr_policy", "linear".into()), ("n_epochs_decay", 3.into())]);
    let (full, cut) = (tmp.path().join("full"), tmp.path().join("cut"));

    let out = train_cmd(&config, &data, &full, 2).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Kill the second run once it has checkpointed epoch 2 or later (the time bound only stops
    // a hang), then resume from the checkpoint the kill left, whichever epoch that is.
    let mut child = train_cmd(&config, &data, &cut, 2).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let run = cut.join("resume");
    let start = Instant::now();
    while latest_epoch(&run).is_none_or(|e| e < 2) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its epoch 2 checkpoint");
        assert!(start.elapsed() < Duration::from_secs(900), "no epoch 2 checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = latest_epoch(&run).unwrap();
    assert!(kept < 5, "the run finished its 5 epochs before the kill: nothing left to resume");
    // The metrics line is written before the checkpoints: killed in between, one line more.
    let epochs: Vec<u64> = metrics(&run).iter().map(|m| m["epoch"].as_u64().unwrap()).collect();
    assert!(epochs == (1..=kept).collect::<Vec<_>>() || epochs == (1..=kept + 1).collect::<Vec<_>>(), "latest {kept}, metrics {epochs:?}");
    let out = train_cmd(&config, &data, &cut, 2).arg("--continue-train").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("epochs {}..5", kept + 1)), "killed after epoch {kept}: {stdout}");

    let (a, b) = (metrics(&full.join("resume")), metrics(&run));
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["epoch"], y["epoch"]);
        assert_eq!(x["lr"], y["lr"], "learning rate of epoch {}", x["epoch"]);
        // Same seed, same order, same augmentation, restored Adam state: the same losses.
        let (lx, ly) = (x["loss_g_l1"].as_f64().unwrap(), y["loss_g_l1"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-6 * lx.abs(), "epoch {}: {lx} vs {ly}", x["epoch"]);
    }
    // pix2pix linear policy: 2 constant epochs then decay over 3.
    let lrs: Vec<f64> = b.iter().map(|m| m["lr"].as_f64().unwrap() / 0.002).collect();
    let expect = [1.0, 1.0, 0.75, 0.5, 0.25];
    for (l, e) in lrs.iter().zip(expect) {
        assert!((l - e).abs() < 1e-9, "{lrs:?}");
    }
    assert_eq!(latest_epoch(&run), Some(5));
    for d in ["epoch_002", "epoch_004", "epoch_005"] {
        assert!(run.join(d).join("net_G.bpk").is_file(), "{d}");
    }
    assert!(run.join("config.json").is_file());
}

#[test]
fn tensorboard_reads_scalars_images_and_weight_histograms() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(&tmp.path().join("cohort"), 2);
    let config = tiny_config(tmp.path(), "tb", &[("discriminator", serde_json::json!({"kind": "pixel", "ndf": 4}))]);
    let ckpt = tmp.path().join("ck");
    let out = train_cmd(&config, &data, &ckpt, 2).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tb = ckpt.join("tb/tb");
    let found: Value = serde_json::from_slice(&crate::common::python("tensorboard_check.py", &[&tb])).unwrap();
    // 2 training cases × 2 epochs = 4 steps.
    for tag in ["loss/G_L1", "loss/G_mask", "loss/G_GAN", "loss/D", "lr"] {
        assert_eq!(found["scalars"][tag]["count"], 4, "{tag}: {found}");
    }
    assert_eq!(found["scalars"]["lr"]["last"].as_f64().unwrap() as f32, metrics(&ckpt.join("tb"))[1]["lr"].as_f64().unwrap() as f32);
    for tag in ["real_a", "fake_b", "real_b"] {
        let img = &found["images"][tag];
        // Steps 1 (first step) and 2, 4 (display_freq 2).
        assert_eq!(img["count"], 3, "{tag}: {found}");
        assert_eq!(img["width"], 32);
        assert_eq!(img["height"], 32);
        assert_eq!(img["png"], true);
    }
    // Weight histograms at the same steps, of both networks; the last one of the generator's
    // head is that of the saved weights (exported under the reference's name `model.<i>`).
    let hist = &found["histograms"];
    assert!(hist.as_object().unwrap().keys().any(|t| t.starts_with("weights/D/")), "{hist}");
    assert!(!hist.as_object().unwrap().keys().any(|t| t.contains("running_")), "running statistics are not weights: {hist}");
    let head = &hist["weights/G/Resnet.head.weight"];
    assert_eq!(head["steps"], serde_json::json!([1, 2, 4]), "{hist}");
    let exported = tmp.path().join("g.safetensors");
    let out = cta2mbf().args(["export", "--checkpoint"]).arg(ckpt.join("tb")).arg("--out").arg(&exported).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weights = common::safetensors_weights(&exported);
    let (_, w) = weights.iter().find(|(k, v)| v.len() == 4 * 343 && *k != "model.0.weight").expect("the 7³ head, 4 → 1 (model.0 is the stem)");
    let (min, max) = w.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!(head["num"].as_f64().unwrap(), w.len() as f64);
    assert_eq!(head["min"].as_f64().unwrap() as f32, min);
    assert_eq!(head["max"].as_f64().unwrap() as f32, max);
    assert_eq!(head["bucket"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).sum::<f64>(), w.len() as f64);
    assert_eq!(head["bucket_limit"].as_array().unwrap().last().unwrap().as_f64().unwrap() as f32, max);
}

/// Run `train` with a config and expect one clear error naming `needle`, and no run folder.
fn refused(config: &Path, data: &Path, ckpt: &Path, needle: &str) {
    let out = train_cmd(config, data, ckpt, 1).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!ckpt.exists(), "nothing written for a refused run");
}

#[test]
fn bad_configs_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(&tmp.path().join("cohort"), 1);
    let ckpt = tmp.path().join("ck");

    let unknown = tiny_config(tmp.path(), "unknown", &[("learning_rate", 0.1.into())]);
    refused(&unknown, &data, &ckpt, "unknown field `learning_rate`");
    let negative = tiny_config(tmp.path(), "negative", &[("lr", (-0.001).into())]);
    refused(&negative, &data, &ckpt, "lr must be positive");
    let huge = tiny_config(tmp.path(), "huge", &[("crop_size", serde_json::json!([512, 512, 512])), ("memory_limit_gb", 8.into())]);
    refused(&huge, &data, &ckpt, "needs about");
    let odd = tiny_config(tmp.path(), "odd", &[("crop_size", serde_json::json!([30, 32, 32]))]);
    refused(&odd, &data, &ckpt, "multiple of 8");
    let never = tiny_config(tmp.path(), "never", &[("val_every", 0.into())]);
    refused(&never, &data, &ckpt, "val_every must be at least 1");
    let ok = tiny_config(tmp.path(), "ok", &[]);
    refused(&ok, &tmp.path().join("no/such/root"), &ckpt, "data root is not a folder");
}

/// The U-Net generator trains with the windowed input, the standardized target, foreground
/// crops and sliding-window validation; exported to safetensors it predicts exactly what the
/// checkpoint folder predicts.
#[test]
fn unet_trains_exports_and_infers_like_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(&tmp.path().join("cohort"), 3);
    let mut ids: Vec<String> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    ids.sort();
    let config = tiny_config(
        tmp.path(),
        "unet",
        &[
            ("generator", serde_json::json!({"kind": "unet", "ngf": 4, "levels": 3})),
            ("crop_size", serde_json::json!([16, 16, 16])),
            ("sliding_window", true.into()),
            ("intensity", serde_json::json!({"src_clip": [-200, 600], "src_offset": 100, "src_scale": 50, "dst_standardize": true})),
            ("augment", serde_json::json!({"foreground": 0.67, "random_crop": 1.0, "max_shift": 4, "anisotropy": 0.0, "blur": 0.0, "noise": 0.0})),
        ],
    );
    let ckpt = tmp.path().join("ck");
    let out = train_cmd(&config, &data, &ckpt, 1).arg("--val-cases").arg(&ids[2]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = ckpt.join("unet");
    // The standardization was computed from the training targets and saved with the run.
    let effective: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let (offset, scale) = (effective["intensity"]["dst_offset"].as_f64().unwrap(), effective["intensity"]["dst_scale"].as_f64().unwrap());
    assert!(offset > 50.0 && offset < 300.0 && scale > 1.0 && scale < 150.0, "{effective}");
    assert!(metrics(&run)[0]["val_eval_mode"]["mae_mask"].as_f64().is_some());

    let file = tmp.path().join("unet.safetensors");
    let out = cta2mbf().args(["export", "--format", "safetensors", "--checkpoint"]).arg(&run).arg("--out").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut predictions = Vec::new();
    for (checkpoint, name) in [(&run, "from_run"), (&file, "from_file")] {
        let dir = tmp.path().join(name);
        let out = cta2mbf()
            .args(["infer", "--quiet", "--norm-mode", "eval", "--cases", &ids[2], "--checkpoint"])
            .arg(checkpoint)
            .arg("--data-root")
            .arg(&data)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        predictions.push(cta2mbf::io::nifti::read_nifti(dir.join(&ids[2]).join("fake_b.nii.gz")).unwrap());
    }
    // Sliding windows by default: the prediction covers the whole case, not one 16³ block.
    let case = cta2mbf::io::nifti::read_nifti(data.join(&ids[2]).join("cropped_cta.nii.gz")).unwrap();
    assert!(predictions[0].shape().iter().zip(case.shape()).all(|(p, c)| *p == c.max(16)), "{:?} vs {:?}", predictions[0].shape(), case.shape());
    assert_eq!(predictions[0].data, predictions[1].data);
}

#[test]
fn two_devices_with_one_sample_each_match_one_device_with_both() {
    // Two distinct CPU backends stand in for two GPUs; tests/wgpu_device.rs does the same on
    // two wgpu devices. After two Adam steps the generators agree to float rounding (the
    // moved weights differ by ~2·lr; an unsynchronised replica would differ by that much).
    let dir = tempfile::tempdir().unwrap();
    let (worst, lr) = common::data_parallel_difference(dir.path(), "cpu,ndarray", "cpu");
    eprintln!("largest weight difference: {worst:.2e} (lr {lr})");
    assert!(worst < 0.05 * lr, "data-parallel weights differ by {worst}");
}

#[test]
fn a_second_run_on_the_same_folder_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = phantom(&tmp.path().join("cohort"), 2);
    let config = tiny_config(tmp.path(), "locked", &[]);
    let ckpt = tmp.path().join("ckpt");
    let mut first = train_cmd(&config, &data, &ckpt, 50).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let lock = ckpt.join("locked").join(".lock");
    let start = Instant::now();
    while !lock.is_file() {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        assert!(start.elapsed() < Duration::from_secs(600), "the first run never took its lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = train_cmd(&config, &data, &ckpt, 1).arg("--continue-train").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("in use by process {}", first.id())) && err.contains(".lock"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    // Killed, its flock went with it: the next run takes the lock (it may then find no checkpoint
    // to continue, but it is not refused for the lock).
    let out = train_cmd(&config, &data, &ckpt, 1).arg("--continue-train").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("in use by process"), "{err}");
}
