//! `cta2mbf train-seg` and `segment` end to end on tiny volumes: checkpoints (latest, best,
//! numbered), per-label validation Dice, resume, the split from config/train.txt and
//! config/val.txt, masks written in the CTA's geometry; and the shipped model segments fresh
//! phantom cases with Dice ≥ 0.9.

use crate::common;

use common::{cta2mbf, repo};
use cta2mbf::analysis::{dice_per_label, mean_dice};
use cta2mbf::io::{read_nifti, read_nifti_image};
use serde_json::Value;
use std::path::Path;

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn tiny_training_checkpoints_resumes_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = common::phantom(&root, 3, "32,32,16", 2);
    // A tiny network on a 16×16×16 grid; the split comes from config/{train,val}.txt in the
    // working directory.
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("configs/chamber_seg_phantom.json")).unwrap()).unwrap();
    cfg["name"] = "tiny".into();
    cfg["net"]["base_n_filter"] = 2.into();
    cfg["net"]["input_size"] = serde_json::json!([16, 16, 16]);
    cfg["save_epoch_freq"] = 2.into();
    cfg["display_freq"] = 1.into();
    std::fs::write(dir.path().join("tiny.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/train.txt"), format!("{}\n{}\n", pids[0], pids[2])).unwrap();
    std::fs::write(dir.path().join("config/val.txt"), format!("{}\n", pids[1])).unwrap();
    let train = |epochs: &str, resume: bool| {
        let mut c = cta2mbf();
        c.current_dir(dir.path()).args(["train-seg", "--quiet", "--config", "tiny.json", "--checkpoints-dir", "ck", "--epochs", epochs, "--data-root"]).arg(root.join("3.sorted_mask"));
        if resume {
            c.arg("--continue-train");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = train("2", false);
    assert!(text.contains("(2 training, 1 validation cases)"), "{text}");
    let run = dir.path().join("ck/tiny");
    for sub in ["latest", "best", "epoch_002"] {
        assert!(run.join(sub).join("net_seg.bpk").is_file(), "{sub}");
        assert!(run.join(sub).join("state.json").is_file(), "{sub}");
    }
    assert!(!run.join("best/optim_seg.bpk").exists(), "best/ is a model, without optimizer state");
    let m = metrics(&run);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["val_dice"].as_array().unwrap().len(), 7, "Dice of labels 1..7");
    assert!(m[1]["val_mean_dice"].as_f64().is_some());
    let split: Value = serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    assert_eq!(split[1][0].as_str(), Some(pids[1].as_str()));
    // The clip + normalization travels with the model.
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run.join("best/state.json")).unwrap()).unwrap();
    assert_eq!(state["config"]["intensity"]["clip"], serde_json::json!([-200.0, 800.0]));

    let text = train("3", true);
    assert!(text.contains("epochs 3..3 done"), "{text}");
    assert_eq!(metrics(&run).len(), 3);
    // A fresh run under the same name is refused.
    let out = cta2mbf().current_dir(dir.path()).args(["train-seg", "--quiet", "--config", "tiny.json", "--checkpoints-dir", "ck", "--data-root"]).arg(root.join("3.sorted_mask")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--continue-train"));

    // segment the cohort with the run folder (its best/), and one file. Three epochs make
    // masks that fail quality control: refused, then accepted on request.
    let masks = dir.path().join("out/3.sorted_mask");
    let segment = || {
        let mut c = cta2mbf();
        c.args(["segment", "--checkpoint"]).arg(&run).arg("--in").arg(root.join("3.sorted_nii")).arg("--out").arg(&masks);
        c
    };
    let out = segment().output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("QC FAILED"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = segment().arg("--accept-qc-failures").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for pid in &pids {
        let cta = read_nifti(root.join("3.sorted_nii").join(pid).join("CTA.nii.gz")).unwrap();
        let mask = read_nifti_image(masks.join(pid).join("CTA/CTA_MASK.nii.gz")).unwrap();
        assert_eq!(mask.dtype.name(), "uint8");
        assert_eq!(mask.volumes[0].shape(), cta.shape());
        assert_eq!(mask.volumes[0].geometry, cta.geometry);
        assert!(mask.volumes[0].data.iter().all(|&v| v < 8.0));
        assert_eq!(read_nifti(masks.join(pid).join("CTA/CTA.nii.gz")).unwrap().data, cta.data);
        assert!(masks.join(pid).join("CTA/CTA_MASK_connected.nii.gz").is_file());
        assert!(masks.join(pid).join("CTA/CTA_MASK_qc.json").is_file());
    }
    let one = dir.path().join("one.nii.gz");
    let out = cta2mbf().args(["segment", "--checkpoint"]).arg(run.join("latest")).arg("--input").arg(root.join("3.sorted_nii").join(&pids[0]).join("CTA.nii.gz")).arg("--output").arg(&one).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(one.is_file());
    // Not a checkpoint: one line naming the folder.
    let out = cta2mbf().args(["segment", "--checkpoint"]).arg(dir.path()).arg("--input").arg(&one).arg("--output").arg(dir.path().join("x.nii.gz")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a segmentation checkpoint"), "{err}");
}

#[test]
fn shipped_model_segments_fresh_phantom_cases() {
    let model = repo().join("models/chamber_seg_phantom");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    // A seed the model never saw (it was trained on seed 11).
    let pids = common::phantom(&root, 2, "64,64,48", 1234);
    let out_root = dir.path().join("3.sorted_mask");
    let out = cta2mbf().args(["segment", "--checkpoint"]).arg(&model).arg("--in").arg(root.join("3.sorted_nii")).arg("--out").arg(&out_root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for pid in &pids {
        let truth = read_nifti(root.join("3.sorted_mask").join(pid).join("CTA/CTA_MASK_connected.nii.gz")).unwrap();
        let pred = read_nifti(out_root.join(pid).join("CTA/CTA_MASK_connected.nii.gz")).unwrap();
        let dice = dice_per_label(&pred.data, &truth.data, 8);
        let mean = mean_dice(&dice).unwrap();
        println!("{pid}: Dice {dice:?} mean {mean:.4}");
        assert!(mean >= 0.9, "{pid}: mean Dice {mean} ({dice:?})");
        assert!(dice[5].unwrap() >= 0.85, "{pid}: myocardium Dice {:?}", dice[5]);
    }
}
