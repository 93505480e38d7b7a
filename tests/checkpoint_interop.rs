//! Generators saved by the reference's PyTorch code load and give PyTorch's outputs; files
//! that are not such a generator are refused with one error saying what is wrong. Fixtures:
//! `scripts/generator_fixtures.py` (committed; torch is not needed here).

use burn::tensor::Device;
use cta2mbf::data::IntensityMap;
use cta2mbf::infer::predict::predict_volume;
use cta2mbf::interop::{StateDict, StoredTensor, generator_from_state_dict, infer_config, state_dict_from_generator};
use cta2mbf::io::read_nifti;
use cta2mbf::models::{NormKind, NormMode, UpsampleKind};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_generator").join(name)
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn load_reference(device: &Device) -> cta2mbf::models::Generator {
    let path = fixture("net_G.pth");
    let sd = StateDict::read(&path).expect("the fixture reads");
    generator_from_state_dict(&sd, &path, device).expect("the fixture loads")
}

#[test]
fn architecture_is_read_from_names_and_shapes() {
    let path = fixture("net_G.pth");
    let sd = StateDict::read(&path).unwrap();
    let c = infer_config(&sd, &path).unwrap();
    assert_eq!((c.ngf, c.n_blocks, c.norm, c.upsample), (4, 6, NormKind::Batch, UpsampleKind::Transposed));
}

#[test]
fn pytorch_generator_matches_pytorch_in_both_norm_modes() {
    let device = Device::flex();
    let input = read_nifti(fixture("input.nii.gz")).unwrap();
    for (mode, expected) in [(NormMode::Eval, "fake_eval.nii.gz"), (NormMode::Train, "fake_train.nii.gz")] {
        let g = load_reference(&device);
        let out = predict_volume(&g, &input, mode, &IntensityMap::default(), &device);
        let want = read_nifti(fixture(expected)).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (out.data.iter().copied().collect(), want.data.iter().copied().collect());
        let err = relative_l2(&a, &b);
        assert!(err < 1e-4, "{mode} mode: relative L2 error {err:e} against PyTorch");
        assert!(b.iter().map(|v| v.abs()).sum::<f32>() / b.len() as f32 > 1e-2, "the reference output is not trivially small");
        eprintln!("{mode} mode: relative L2 error {err:e}");
    }
    // The two references differ, so each comparison tells the modes apart.
    let (e, t) = (read_nifti(fixture("fake_eval.nii.gz")).unwrap(), read_nifti(fixture("fake_train.nii.gz")).unwrap());
    let d = relative_l2(&e.data.iter().copied().collect::<Vec<_>>(), &t.data.iter().copied().collect::<Vec<_>>());
    assert!(d > 1e-2, "eval and train references differ by only {d:e}");
}

#[test]
fn export_round_trip_keeps_every_tensor() {
    let device = Device::flex();
    let path = fixture("net_G.pth");
    let original = StateDict::read(&path).unwrap();
    let g = generator_from_state_dict(&original, &path, &device).unwrap();
    let exported = state_dict_from_generator(&g, 123).unwrap();
    assert_eq!(exported.tensors.keys().collect::<Vec<_>>(), original.tensors.keys().collect::<Vec<_>>());
    for (name, t) in &original.tensors {
        assert_eq!(&exported.tensors[name], t, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.safetensors");
    exported.write_safetensors(&file, None).unwrap();
    assert_eq!(StateDict::read(&file).unwrap(), exported);
}

#[test]
fn truncated_pth_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("net_G.pth")).unwrap();
    let path = dir.path().join("latest_net_G.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = StateDict::read(&path).unwrap_err().to_string();
    assert!(err.contains("latest_net_G.pth") && err.contains("PyTorch"), "{err}");
}

#[test]
fn other_network_is_refused_with_what_was_found() {
    let path = fixture("other_net.pth");
    let sd = StateDict::read(&path).unwrap();
    let err = generator_from_state_dict(&sd, &path, &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("other_net.pth") && err.contains("model.0.weight") && err.contains("not a cta2mbf/reference generator"), "{err}");
}

#[test]
fn wrong_shape_and_missing_tensors_are_listed_in_one_error() {
    let path = fixture("net_G.pth");
    let mut sd = StateDict::read(&path).unwrap();
    sd.tensors.insert("model.3.weight".into(), StoredTensor::f32(vec![8, 4, 3, 3, 2], vec![0.0; 8 * 4 * 18]));
    sd.tensors.remove("model.27.bias");
    sd.tensors.insert("model.99.weight".into(), StoredTensor::f32(vec![1], vec![0.0]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.safetensors");
    sd.write_safetensors(&file, None).unwrap();
    let back = StateDict::read(&file).unwrap();
    let err = generator_from_state_dict(&back, &file, &Device::flex()).unwrap_err().to_string();
    for needle in ["bad.safetensors", "model.3.weight is [8, 4, 3, 3, 2], expected [8, 4, 3, 3, 3]", "missing model.27.bias", "unexpected model.99.weight"] {
        assert!(err.contains(needle), "'{needle}' not in: {err}");
    }
}
