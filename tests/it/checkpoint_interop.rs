//! Generators saved by the reference's PyTorch code load and give PyTorch's outputs; files
//! that are not such a generator are refused with one error saying what is wrong. Fixtures:
//! `scripts/generator_fixtures.py` (committed; torch is not needed here).

use burn::tensor::Device;
use cta2mbf::data::IntensityMap;
use cta2mbf::predict::predict_volume;
use cta2mbf::interop::{StateDict, StoredTensor, generator_from_state_dict, infer_config, state_dict_from_generator};
use cta2mbf::io::read_nifti;
use cta2mbf::models::{NormKind, NormMode, UpsampleKind};
use std::path::{Path, PathBuf};

use crate::common::{self, relative_l2};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_generator").join(name)
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
    exported.write_safetensors(&file).unwrap();
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
    sd.write_safetensors(&file).unwrap();
    let back = StateDict::read(&file).unwrap();
    let err = generator_from_state_dict(&back, &file, &Device::flex()).unwrap_err().to_string();
    for needle in ["bad.safetensors", "model.3.weight is [8, 4, 3, 3, 2], expected [8, 4, 3, 3, 3]", "missing model.27.bias", "unexpected model.99.weight"] {
        assert!(err.contains(needle), "'{needle}' not in: {err}");
    }
}

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::cta2mbf().args(args).output().unwrap()
}

#[test]
fn cli_infer_one_file_with_a_pth_export_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (pth, input) = (fixture("net_G.pth"), fixture("input.nii.gz"));
    let fake = dir.path().join("fake.nii.gz");
    let out = run(&["infer".as_ref(), "--checkpoint".as_ref(), pth.as_os_str(), "--input".as_ref(), input.as_os_str(), "--output".as_ref(), fake.as_os_str(), "--norm-mode".as_ref(), "eval".as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (got, want, inp) = (read_nifti(&fake).unwrap(), read_nifti(fixture("fake_eval.nii.gz")).unwrap(), read_nifti(&input).unwrap());
    assert!(got.same_grid(&inp, 1e-6), "the output keeps the input's grid");
    let err = relative_l2(&got.data.iter().copied().collect::<Vec<_>>(), &want.data.iter().copied().collect::<Vec<_>>());
    assert!(err < 1e-4, "{err:e}");
    // Export to both formats and run again: the same numbers.
    for format in ["safetensors", "burn"] {
        let file = dir.path().join(format!("g.{format}"));
        let out = run(&["export".as_ref(), "--checkpoint".as_ref(), pth.as_os_str(), "--format".as_ref(), format.as_ref(), "--out".as_ref(), file.as_os_str()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let again = dir.path().join(format!("again_{format}.nii.gz"));
        let out = run(&["infer".as_ref(), "--checkpoint".as_ref(), file.as_os_str(), "--input".as_ref(), input.as_os_str(), "--output".as_ref(), again.as_os_str(), "--norm-mode".as_ref(), "eval".as_ref()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(read_nifti(&again).unwrap().data, got.data, "{format}");
    }
}

#[test]
fn cli_infer_keeps_a_grid_that_is_not_a_multiple_of_eight() {
    use cta2mbf::io::{NiftiDtype, write_nifti};
    use cta2mbf::{Geometry, Volume};
    let dir = tempfile::tempdir().unwrap();
    let mut v = Volume::filled([13, 10, 9], -1024.0, Geometry::axial([0.7, 0.8, 2.5], [-30.0, 12.0, -140.0]));
    v.data.indexed_iter_mut().for_each(|((x, y, z), a)| *a = (x * 37 + y * 11 + z * 5) as f32 % 300.0);
    let input = dir.path().join("cta.nii.gz");
    write_nifti(&input, &v, NiftiDtype::I16).unwrap();
    let fake = dir.path().join("fake.nii.gz");
    let pth = fixture("net_G.pth");
    let out = run(&["infer".as_ref(), "--checkpoint".as_ref(), pth.as_os_str(), "--input".as_ref(), input.as_os_str(), "--output".as_ref(), fake.as_os_str(), "--norm-mode".as_ref(), "train".as_ref()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = read_nifti(&fake).unwrap();
    assert!(got.same_grid(&read_nifti(&input).unwrap(), 1e-6));
    assert!(got.data.iter().all(|x| x.is_finite()) && got.data.iter().any(|x| *x != got.data[[0, 0, 0]]));
}

#[test]
fn cli_bad_checkpoints_give_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("net_G.pth")).unwrap();
    let truncated = dir.path().join("trunc_net_G.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() * 3 / 4]).unwrap();
    for (file, needle) in [(truncated, "truncated or corrupt"), (fixture("other_net.pth"), "not a cta2mbf/reference generator")] {
        let out_file = dir.path().join("out.safetensors");
        let out = run(&["export".as_ref(), "--checkpoint".as_ref(), file.as_os_str(), "--out".as_ref(), out_file.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&file.display().to_string()) && err.contains(needle), "{err}");
        assert!(!out_file.exists());
    }
}

#[test]
fn shipped_generator_loads_with_its_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/generator_phantom_small.safetensors");
    let (g, settings) = cta2mbf::interop::load_generator_file(&path, &Device::flex()).unwrap();
    assert_eq!((g.config().ngf, g.config().n_blocks), (8, 6));
    assert_eq!((settings.crop_size, settings.trained_norm_mode, settings.intensity.dst_scale), ([32, 32, 40], NormMode::Train, 100.0));
}
