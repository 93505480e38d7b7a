//! The reference's chamber-segmentation network (a PyTorch `.pth` of its Modified3DUNet) loads
//! and gives PyTorch's logits and labels, through the library and through `cta2mbf segment`;
//! `export` writes a file that loads back to the same network; files that are not such a
//! network are refused naming the file. Fixtures: `scripts/seg_reference_fixtures.py`
//! (committed; torch is not needed here).

use crate::common::{self, relative_l2};
use burn::tensor::{Device, Tensor, TensorData};
use cta2mbf::data::ClipNormalize;
use cta2mbf::interop::{
    ExportFormat, SegmentationSettings, StateDict, StoredValues, export_segmentation, load_segmentation_file, reference_unet_from_state_dict,
    state_dict_from_reference_unet,
};
use cta2mbf::io::read_nifti;
use cta2mbf::models::ReferenceUNet3d;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/torch_seg_unet").join(name)
}

/// The fixture's input and PyTorch logits: values and shapes.
fn reference_logits() -> ((Vec<f32>, Vec<usize>), (Vec<f32>, Vec<usize>)) {
    let sd = StateDict::read(&fixture("logits.safetensors")).unwrap();
    let take = |name: &str| match &sd.tensors[name] {
        t @ cta2mbf::interop::StoredTensor { values: StoredValues::Float(v), .. } => (v.clone(), t.shape.clone()),
        other => panic!("{name}: {other:?}"),
    };
    (take("input"), take("logits"))
}

fn logits(net: &ReferenceUNet3d, input: &(Vec<f32>, Vec<usize>), device: &Device) -> Vec<f32> {
    let shape: [usize; 5] = input.1.clone().try_into().unwrap();
    let x = Tensor::<5>::from_data(TensorData::new(input.0.clone(), shape), device);
    net.forward(x).into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// Index of the largest of each voxel's class scores (`[1, classes, voxels…]` layout).
fn argmax(scores: &[f32], classes: usize) -> Vec<usize> {
    let voxels = scores.len() / classes;
    (0..voxels).map(|v| (0..classes).max_by(|&a, &b| scores[a * voxels + v].total_cmp(&scores[b * voxels + v])).unwrap()).collect()
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[test]
fn pth_logits_and_labels_match_pytorch_and_survive_export() {
    let device = Device::flex();
    let (input, (want, shape)) = reference_logits();
    let path = fixture("seg_unet.pth");
    let net = reference_unet_from_state_dict(&StateDict::read(&path).unwrap(), &path, [shape[2], shape[3], shape[4]], &device).unwrap();
    assert_eq!((net.config.in_channels, net.config.base_n_filter, net.config.classes), (1, 2, 8));
    let got = logits(&net, &input, &device);
    let err = relative_l2(&got, &want);
    let same = agreement(&argmax(&got, 8), &argmax(&want, 8));
    eprintln!("reference U-Net against PyTorch: relative L2 {err:.3e}, argmax agreement {:.4} %", 100.0 * same);
    assert!(err <= 1e-5, "relative L2 error {err:e} against PyTorch");
    assert!(same >= 0.9999, "argmax agreement {same}");
    let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len() as f32).sqrt();
    assert!(rms > 0.5, "the reference logits are not trivially small (rms {rms})");

    // Export and reload: the same network, settings carried in the metadata.
    let dir = tempfile::tempdir().unwrap();
    for format in [ExportFormat::Safetensors, ExportFormat::Burn] {
        let file = dir.path().join(format!("seg_{format:?}"));
        let window = ClipNormalize { clip: [-500.0, 1500.0], offset: 100.0, scale: 7.0 };
        export_segmentation(&net, &window, format, &file).unwrap();
        let (back, settings) = load_segmentation_file(&file, &device).unwrap();
        assert_eq!((back.config.clone(), settings.intensity), (net.config.clone(), window), "{format:?}");
        assert_eq!(logits(&back, &input, &device), got, "{format:?}");
    }
    // The exported names are exactly the .pth's.
    let (pth, exported) = (StateDict::read(&path).unwrap(), StateDict::read(&dir.path().join("seg_Safetensors")).unwrap());
    assert_eq!(exported.tensors, pth.tensors);
}

fn run(args: &[&OsStr]) -> std::process::Output {
    common::cta2mbf().args(args).output().unwrap()
}

fn labels(path: &Path) -> Vec<usize> {
    read_nifti(path).unwrap().data.iter().map(|&v| v as usize).collect()
}

/// `segment --checkpoint X.pth` on a CTA in HU, run with the `.pth` defaults (raw HU, 256³),
/// writes PyTorch's labels; `export` of the `.pth` keeps its weights and those defaults.
#[test]
fn cli_segment_with_a_pth_and_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let (pth, cta) = (fixture("seg_unet.pth"), fixture("cta.nii.gz"));
    let mask = dir.path().join("mask.nii.gz");
    let out = run(&["segment".as_ref(), "--checkpoint".as_ref(), pth.as_os_str(), "--input".as_ref(), cta.as_os_str(), "--output".as_ref(), mask.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (got, input) = (read_nifti(&mask).unwrap(), read_nifti(&cta).unwrap());
    assert!(got.same_grid(&input, 1e-6), "the mask keeps the CTA's grid");
    let want = labels(&fixture("cta_labels.nii.gz"));
    let same = agreement(&labels(&mask), &want);
    eprintln!("segment with the .pth against PyTorch's pipeline: label agreement {:.4} %", 100.0 * same);
    assert!(same >= 0.999, "label agreement {same}");
    let classes: std::collections::BTreeSet<usize> = want.iter().copied().collect();
    assert!(classes.len() >= 6, "the reference labels use several classes: {classes:?}");

    let file = dir.path().join("seg.safetensors");
    let out = run(&["export".as_ref(), "--checkpoint".as_ref(), pth.as_os_str(), "--out".as_ref(), file.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("base_n_filter 2, 8 classes") && printed.contains("[256, 256, 256]"), "{printed}");
    // The same weights under the same names, and the settings the .pth was run with: the
    // exported file segments as the .pth does (the library test above checks the logits).
    let (back, settings) = load_segmentation_file(&file, &Device::flex()).unwrap();
    assert_eq!(settings, SegmentationSettings::reference());
    assert_eq!(state_dict_from_reference_unet(&back).unwrap().tensors, StateDict::read(&pth).unwrap().tensors);
}

/// A truncated `.pth`, another network's `.pth`, and a native checkpoint given to `export`:
/// each one error naming the file.
#[test]
fn wrong_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("seg_unet.pth")).unwrap();
    let truncated = dir.path().join("chambers_truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let generator = common::repo().join("tests/fixtures/torch_generator/net_G.pth");
    let (cta, mask) = (fixture("cta.nii.gz"), dir.path().join("mask.nii.gz"));
    for (file, needles) in
        [(&truncated, ["chambers_truncated.pth", "PyTorch"]), (&generator, ["net_G.pth", "no tensor conv3d_c1_1.weight (found model.0.weight"])]
    {
        let out =
            run(&["segment".as_ref(), "--checkpoint".as_ref(), file.as_os_str(), "--input".as_ref(), cta.as_os_str(), "--output".as_ref(), mask.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && needles.iter().all(|n| err.contains(n)), "{err}");
        assert!(!mask.exists());
    }
    let shipped = common::repo().join("models/chamber_seg_phantom");
    let out = run(&["export".as_ref(), "--checkpoint".as_ref(), shipped.as_os_str(), "--out".as_ref(), dir.path().join("x.safetensors").as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chamber_seg_phantom") && err.contains("no reference PyTorch layout"), "{err}");
}
