//! `cta2mbf export --format onnx` judged by the ONNX project's tools (`scripts/onnx_check.py`:
//! `onnx.checker` with full checks, then onnxruntime on the CPU): for the ResNet generator (the
//! shipped `models/generator_phantom_small.safetensors`: batch norm, transposed convolutions), a
//! U-Net generator trained here for one epoch (batch norm, trilinear up-sampling, a CT window
//! and a standardized target, so the graph clips, scales and maps back) and the chamber
//! segmentation U-Net (the shipped `models/chamber_seg_phantom`, its resampling inside the
//! graph), each generator in both norm modes, at two volume sizes: onnxruntime's output equals
//! `cta2mbf infer`'s (the segmentation's logits: the library's, its labels: `cta2mbf segment`'s)
//! to a relative L2 error of 10⁻⁵. The segmentation network has instance norms only, so the
//! norm mode does not apply to it. Bad checkpoints are refused with one error and no file.

use crate::common::{self, cta2mbf, repo};
use cta2mbf::data::volume_to_tensor;
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest relative L2 error accepted between onnxruntime and cta2mbf.
const TOLERANCE: f64 = 1e-5;

fn run_ok(cmd: &mut std::process::Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

fn export(checkpoint: &Path, out: &Path, mode: Option<&str>) -> std::process::Output {
    let mut c = cta2mbf();
    c.args(["export", "--format", "onnx", "--checkpoint"]).arg(checkpoint).arg("--out").arg(out);
    if let Some(m) = mode {
        c.args(["--norm-mode", m]);
    }
    c.output().unwrap()
}

/// A U-Net generator trained for one epoch of two steps on `data` (batch norm, trilinear
/// up-sampling, CT window [−300, 700] HU and a standardized target); returns its run folder.
fn train_unet(dir: &Path, data: &Path) -> PathBuf {
    let config = common::tiny_generator_config(
        dir,
        "unet",
        &[
            ("generator", serde_json::json!({"kind": "unet", "ngf": 4, "levels": 3, "norm": "batch", "upsample": "trilinear"})),
            ("intensity", serde_json::json!({"src_clip": [-300.0, 700.0], "src_offset": 200.0, "src_scale": 500.0, "dst_standardize": true})),
            ("crop_size", serde_json::json!([16, 16, 16])),
            ("discriminator", serde_json::json!({"kind": "pixel", "ndf": 4})),
            ("val_cases", serde_json::json!([])),
        ],
    );
    let ckpt = dir.join("ckpt");
    run_ok(
        cta2mbf().args(["train", "--quiet", "--epochs", "1", "--config"]).arg(&config).arg("--data-root").arg(data).arg("--checkpoints-dir").arg(&ckpt),
        "train the U-Net generator",
    );
    ckpt.join("unet")
}

/// The segmentation network's logits for `cta` as the library computes them (`UNet3d::
/// forward_resampled` after the CTA mapping), written as raw little-endian float32.
fn segmentation_logits(cta: &Path, out: &Path) {
    let device = burn::tensor::Device::flex();
    let (net, state) = cta2mbf::store::segmentation::load(&repo().join("models/chamber_seg_phantom"), &device).unwrap();
    let v = read_nifti(cta).unwrap();
    let x = volume_to_tensor(&[&v.map(|h| state.config.intensity.apply(h))], &device);
    let logits = net.forward_resampled(x, false).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    std::fs::write(out, logits.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

#[test]
fn onnxruntime_matches_cta2mbf_for_every_network_mode_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pids = common::phantom(&dir.join("cohort"), 2, "64,64,48", 5);
    let unet_run = train_unet(dir, &dir.join("cohort/5.mbf_myocardium"));

    // Two blocks of a phantom CTA (HU, float32), sizes multiples of 8 (both generators).
    let cta = read_nifti(dir.join("cohort/3.sorted_nii").join(&pids[0]).join("CTA.nii.gz")).unwrap();
    let sizes = [[32usize, 24, 40], [56, 48, 40]];
    let inputs: Vec<PathBuf> = sizes
        .iter()
        .map(|&s| {
            let path = dir.join(format!("cta_{}x{}x{}.nii", s[0], s[1], s[2]));
            write_nifti(&path, &cta.extract([8, 12, 4], s, -1024.0), NiftiDtype::F32).unwrap();
            path
        })
        .collect();

    let resnet = repo().join("models/generator_phantom_small.safetensors");
    let mut cases = Vec::new();
    for (net, checkpoint) in [("resnet", &resnet), ("unet", &unet_run)] {
        for mode in ["train", "eval"] {
            let model = dir.join(format!("{net}_{mode}.onnx"));
            let out = export(checkpoint, &model, Some(mode));
            assert!(out.status.success(), "export {net} {mode}: {}", String::from_utf8_lossy(&out.stderr));
            for (input, s) in inputs.iter().zip(sizes) {
                let reference = dir.join(format!("{net}_{mode}_{}.nii", s[0]));
                let mut infer = cta2mbf();
                infer.args(["infer", "--norm-mode", mode, "--checkpoint"]).arg(checkpoint).arg("--input").arg(input).arg("--output").arg(&reference);
                run_ok(&mut infer, &format!("infer {net} {mode}"));
                cases.push(serde_json::json!({"network": net, "mode": mode, "model": model, "input": input, "reference": reference}));
            }
        }
    }
    let seg = repo().join("models/chamber_seg_phantom");
    let seg_model = dir.join("segmentation.onnx");
    let out = export(&seg, &seg_model, None);
    assert!(out.status.success(), "export segmentation: {}", String::from_utf8_lossy(&out.stderr));
    for (input, s) in inputs.iter().zip(sizes) {
        let logits = dir.join(format!("seg_{}.f32", s[0]));
        segmentation_logits(input, &logits);
        let labels = dir.join(format!("seg_{}_labels.nii", s[0]));
        run_ok(cta2mbf().args(["segment", "--checkpoint"]).arg(&seg).arg("--input").arg(input).arg("--output").arg(&labels), "segment");
        cases.push(serde_json::json!({"network": "segmentation", "mode": "-", "model": seg_model, "input": input, "reference": logits, "labels": labels}));
    }
    let list = dir.join("cases.json");
    std::fs::write(&list, serde_json::to_string(&cases).unwrap()).unwrap();
    let stdout = String::from_utf8(common::python("onnx_check.py", &[Path::new("--cases"), &list])).unwrap();
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), cases.len(), "{stdout}");

    let mut failures = Vec::new();
    for (case, r) in cases.iter().zip(&results) {
        let (net, mode) = (case["network"].as_str().unwrap(), case["mode"].as_str().unwrap());
        let rel = r["rel_l2"].as_f64().unwrap();
        eprintln!("onnx {net:12} {mode:5} {:>10}: relative L2 {rel:.2e}, max |Δ| {:.2e}, labels differing {}", r["shape"].to_string(), r["max_abs"].as_f64().unwrap(), r["label_mismatch"]);
        if rel > TOLERANCE {
            failures.push(format!("{net} {mode} {}: relative L2 {rel:.3e}", r["shape"]));
        }
        assert!(r["opset"].as_i64().unwrap() >= 17, "{r}");
        assert!(r["producer"].as_str().unwrap().starts_with("cta2mbf "), "{r}");
        let input = &r["inputs"]["cta"];
        assert_eq!(input.as_array().unwrap()[2..], [Value::from("x"), "y".into(), "z".into()], "named spatial axes: {r}");
        if net == "segmentation" {
            assert!(r["metadata"]["cta2mbf.intensity"].as_str().unwrap().contains("clip"), "{r}");
            let mismatch = r["label_mismatch"].as_f64().unwrap();
            assert!(mismatch <= 1e-3, "segmentation labels differ from cta2mbf segment's at {mismatch} of the voxels");
        } else {
            assert_eq!(r["metadata"]["cta2mbf.norm_mode"], mode, "{r}");
            let settings: Value = serde_json::from_str(r["metadata"]["cta2mbf.settings"].as_str().unwrap()).unwrap();
            assert!(settings["intensity"].is_object(), "{r}");
            // Train mode: the statistics are the volume's own, so the batch axis is fixed to 1.
            assert_eq!(input[0], if mode == "train" { Value::from(1) } else { Value::from("batch") }, "{r}");
        }
    }
    assert!(failures.is_empty(), "onnxruntime differs from cta2mbf above {TOLERANCE}: {failures:?}");
    // The U-Net's window and standardized target are in its graph.
    let unet_eval = results.iter().zip(&cases).find(|(_, c)| c["network"] == "unet" && c["mode"] == "eval").unwrap().0;
    for op in ["Clip", "Sub", "Div", "Mul", "Add", "Resize", "Concat", "BatchNormalization"] {
        assert!(unet_eval["ops"].as_array().unwrap().contains(&op.into()), "{op} in {unet_eval}");
    }

    // A run folder whose checkpoint holds only the discriminator is refused, nothing written.
    let d_only = dir.join("d_only");
    std::fs::create_dir_all(&d_only).unwrap();
    for f in ["state.json", "net_D.bpk"] {
        std::fs::copy(unet_run.join("latest").join(f), d_only.join(f)).unwrap();
    }
    refused(&d_only, "net_G.bpk");
}

/// `export --format onnx` of `checkpoint` fails with one line naming `needle`, and leaves no
/// output file (nor a temporary one) behind.
fn refused(checkpoint: &Path, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.onnx");
    let result = export(checkpoint, &out, None);
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{}: {err}", checkpoint.display());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written for {}", checkpoint.display());
}

#[test]
fn truncated_checkpoints_are_refused_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    // A generator file cut in half.
    let bytes = std::fs::read(repo().join("models/generator_phantom_small.safetensors")).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&cut, "cut.safetensors");
    // A segmentation checkpoint whose network file is cut in half.
    let seg = tmp.path().join("seg");
    std::fs::create_dir_all(&seg).unwrap();
    let shipped = repo().join("models/chamber_seg_phantom");
    std::fs::copy(shipped.join("state.json"), seg.join("state.json")).unwrap();
    let net = std::fs::read(shipped.join("net_seg.bpk")).unwrap();
    std::fs::write(seg.join("net_seg.bpk"), &net[..net.len() / 2]).unwrap();
    refused(&seg, "net_seg.bpk");
}
