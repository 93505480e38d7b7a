//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cta2mbf::volume::mat3::Mat3;
use cta2mbf::{Geometry, Volume};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python packages (PyPI names) of each module the cross-check scripts import.
const PYTHON_PACKAGES: [(&str, &str); 9] = [
    ("SimpleITK", "SimpleITK"),
    ("nibabel", "nibabel"),
    ("pydicom", "pydicom pydicom-data"),
    ("tensorboard", "tensorboard"),
    ("playwright", "playwright (and Debian's chromium)"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
];

/// Run `scripts/<script>` with `args` under python3 and return what it did. A script that
/// fails because a Python module is missing panics with one message naming the module and the
/// package to install, so that a missing package never reads as a wrong result.
pub fn python_output<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> std::process::Output {
    let out = Command::new("python3").arg(repo().join("scripts").join(script)).args(args).output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(module) = stderr.split("No module named '").nth(1).and_then(|rest| rest.split('\'').next()) {
        let top = module.split('.').next().unwrap_or(module);
        let package = PYTHON_PACKAGES.iter().find(|(m, _)| *m == top).map_or(top, |(_, p)| p);
        panic!("scripts/{script} needs the Python module '{module}': `python3 -m pip install {package}` (as .ci/run does)");
    }
    out
}

/// Run `scripts/<script>` with `args`; its stdout, or a panic with its stderr on failure.
pub fn python<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> Vec<u8> {
    let out = python_output(script, args);
    assert!(out.status.success(), "scripts/{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Run `scripts/nifti_crosscheck.py` with `args`; panics with its stderr on failure.
pub fn crosscheck(args: &[&str]) -> String {
    String::from_utf8(python("nifti_crosscheck.py", args)).unwrap()
}

/// What SimpleITK and nibabel read from file number `i` of a `crosscheck read` run.
pub struct Reference {
    pub json: Value,
    pub nib: Vec<f32>,
    pub sitk: Option<Vec<f32>>,
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Load the reference of file number `i` from `dir`.
pub fn reference(dir: &Path, i: usize) -> Reference {
    let json: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{i}.json"))).unwrap()).unwrap();
    let nib = read_f32(&dir.join(format!("{i}.nib.f32")));
    let sitk_path = dir.join(format!("{i}.sitk.f32"));
    let sitk = json["sitk"].is_object().then(|| read_f32(&sitk_path));
    Reference { json, nib, sitk }
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Largest difference between our geometry and SimpleITK's.
pub fn sitk_geometry_diff(g: &Geometry, sitk: &Value) -> f64 {
    let spacing = f64s(&sitk["spacing"]);
    let origin = f64s(&sitk["origin"]);
    let dir = f64s(&sitk["direction"]);
    let mut d: f64 = 0.0;
    for i in 0..3 {
        d = d.max((g.spacing[i] - spacing[i]).abs()).max((g.origin[i] - origin[i]).abs());
        for j in 0..3 {
            // SimpleITK's direction of an N-D image is N×N, row-major.
            let n = spacing.len();
            d = d.max((g.direction[i][j] - dir[i * n + j]).abs());
        }
    }
    d
}

/// The RAS voxel-to-world affine (nibabel's) of a geometry.
pub fn ras_affine(g: &Geometry) -> [[f64; 4]; 3] {
    let m: Mat3 = g.index_to_world_matrix();
    let sign = [-1.0, -1.0, 1.0];
    [0, 1, 2].map(|r| [sign[r] * m[r][0], sign[r] * m[r][1], sign[r] * m[r][2], sign[r] * g.origin[r]])
}

/// Largest difference between our affine and nibabel's.
pub fn nib_affine_diff(g: &Geometry, nib: &Value) -> f64 {
    let ours = ras_affine(g);
    let theirs: Vec<Vec<f64>> = nib["affine"].as_array().unwrap().iter().map(f64s).collect();
    let mut d: f64 = 0.0;
    for r in 0..3 {
        for c in 0..4 {
            d = d.max((ours[r][c] - theirs[r][c]).abs());
        }
    }
    d
}

/// Our frames' voxels flattened as the cross-check script writes them (frames, x, y, z).
pub fn flatten(volumes: &[Volume]) -> Vec<f32> {
    volumes.iter().flat_map(|v| v.data.iter().copied()).collect()
}

/// ‖a − b‖ / ‖b‖ (b the reference).
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Run the release/debug binary built for the tests.
pub fn cta2mbf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cta2mbf"))
}

/// Panic with the first differing voxel unless `a` and `b` are equal (NaN equals NaN).
pub fn assert_same_values(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {} values vs {}", a.len(), b.len());
    if let Some(i) = (0..a.len()).find(|&i| !(a[i] == b[i] || (a[i].is_nan() && b[i].is_nan()))) {
        panic!("{what}: voxel {i} differs: {} vs {}", a[i], b[i]);
    }
}

/// Every file under `dir` (any depth), sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

/// Write a phantom cohort of `cases` patients (`size` "X,Y,Z", `seed`) under `root`;
/// returns the patient ids, sorted.
pub fn phantom(root: &Path, cases: usize, size: &str, seed: u64) -> Vec<String> {
    let out = cta2mbf()
        .args(["phantom", "--cases", &cases.to_string(), "--size", size, "--seed", &seed.to_string(), "--out"])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pids: Vec<String> =
        std::fs::read_dir(root.join("3.sorted_mask")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pids.sort();
    pids
}

/// `configs/phantom_small.json` shrunk to a tiny generator (ngf 4, 2 blocks, one crop per
/// case per epoch) with `extra` keys set on top, written to `dir/name.json`.
pub fn tiny_generator_config(dir: &Path, name: &str, extra: &[(&str, Value)]) -> PathBuf {
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(repo().join("configs/phantom_small.json")).unwrap()).unwrap();
    cfg["name"] = name.into();
    cfg["generator"]["ngf"] = 4.into();
    cfg["generator"]["n_blocks"] = 2.into();
    cfg["samples_per_volume"] = 1.into();
    for (k, v) in extra {
        cfg[*k] = v.clone();
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    path
}

/// The generator weights of an exported safetensors file, by name.
pub fn safetensors_weights(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        .collect()
}

/// Data parallelism against one device: a tiny GAN (generator batch norm in eval mode,
/// discriminator instance norm, no masked loss — a mean over each device's mask voxels is not
/// the mean over the whole batch's — so nothing depends on how the batch is split) trained for
/// one epoch of two steps, once with `--devices parallel` (one sample per device per step)
/// and once with `--device single` and batch 2. Returns the largest weight difference of the
/// two generators and the learning rate.
pub fn data_parallel_difference(dir: &Path, parallel: &str, single: &str) -> (f64, f64) {
    phantom(dir, 2, "64,64,48", 6);
    let a = tiny_gan_weights(dir, "parallel", cta2mbf(), 1, &["--devices", parallel], &[]);
    let b = tiny_gan_weights(dir, "single", cta2mbf(), 2, &["--device", single], &[]);
    (largest_difference(&a, &b), TINY_GAN_LR)
}

/// The learning rate of [`tiny_gan_weights`].
pub const TINY_GAN_LR: f64 = 0.002;

/// One epoch of a tiny GAN (generator batch norm in eval mode, discriminator instance norm, no
/// masked loss, 16³ crops, 2 samples per case, no validation) on the phantom cohort in `dir`
/// (written by [`phantom`]), run by `command` (`cta2mbf` or an MPI launcher of it) with
/// `batch` samples per step and device; `extra_config` overrides the config. Returns the
/// trained generator's weights by name (exported to safetensors).
pub fn tiny_gan_weights(dir: &Path, name: &str, mut command: Command, batch: usize, args: &[&str], extra_config: &[(&str, Value)]) -> std::collections::BTreeMap<String, Vec<f32>> {
    let mut keys: Vec<(&str, Value)> = vec![
        ("batch_size", batch.into()),
        ("samples_per_volume", 2.into()),
        ("norm_mode", "eval".into()),
        ("crop_size", serde_json::json!([16, 16, 16])),
        ("discriminator", serde_json::json!({"ndf": 4, "n_layers": 2, "norm": "instance"})),
        ("lambda_gan", 1.0.into()),
        ("lambda_l1", 1.0.into()),
        ("lambda_mask", 0.0.into()),
        ("lr", TINY_GAN_LR.into()),
        ("val_cases", serde_json::json!([])),
    ];
    keys.extend(extra_config.iter().cloned());
    let config = tiny_generator_config(dir, name, &keys);
    let out = command
        .args(["train", "--quiet", "--epochs", "1", "--name", name])
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-root")
        .arg(dir.join("5.mbf_myocardium"))
        .arg("--checkpoints-dir")
        .arg(dir.join("ckpt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "train {name}: {}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join(format!("{name}.safetensors"));
    let out = cta2mbf().args(["export", "--format", "safetensors", "--checkpoint"]).arg(dir.join("ckpt").join(name)).arg("--out").arg(&file).output().unwrap();
    assert!(out.status.success(), "export {name}: {}", String::from_utf8_lossy(&out.stderr));
    safetensors_weights(&file)
}

/// The largest difference between two sets of weights with the same names.
pub fn largest_difference(a: &std::collections::BTreeMap<String, Vec<f32>>, b: &std::collections::BTreeMap<String, Vec<f32>>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().map(|(k, v)| v.iter().zip(&b[k]).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)).fold(0.0, f64::max)
}

/// Every weight of a set, in name order, in one vector.
pub fn all_weights(w: &std::collections::BTreeMap<String, Vec<f32>>) -> Vec<f32> {
    w.values().flatten().copied().collect()
}

/// `mpirun -np N` of this build's cta2mbf as the tests run it: as root where CI runs, more
/// ranks than cores allowed, no core binding (each rank's threads float).
pub fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &np.to_string(), env!("CARGO_BIN_EXE_cta2mbf")]);
    c
}

/// `command` (`cta2mbf` or an MPI launcher of it) running `pipeline` over the raw dump `raw`
/// into the cohort `root`, segmenting with the shipped model.
pub fn pipeline(mut command: Command, raw: &Path, root: &Path) -> Command {
    command.args(["pipeline", "--in"]).arg(raw).arg("--root").arg(root).arg("--seg-model").arg(repo().join("models/chamber_seg_phantom"));
    command
}

/// Run `cmd`, panicking with its output unless it succeeds; returns its stdout and stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("cta2mbf runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Every data file the pipeline's stages write under `root` (volumes and transforms; the JSON
/// reports hold timings).
pub fn data_files(root: &Path) -> Vec<PathBuf> {
    use cta2mbf::cohort;
    [cohort::SORTED_NII, cohort::REGISTRATION, cohort::SORTED_MASK, cohort::MBF_MYOCARDIUM]
        .iter()
        .flat_map(|f| walk(&root.join(f)))
        .filter(|p| !p.to_string_lossy().ends_with(".json"))
        .collect()
}

/// Panic unless the cohorts `a` and `b` hold the same data files, byte for byte.
pub fn same_files(a: &Path, b: &Path) {
    let (fa, fb) = (data_files(a), data_files(b));
    let rel = |root: &Path, v: &[PathBuf]| v.iter().map(|p| p.strip_prefix(root).unwrap().to_path_buf()).collect::<Vec<_>>();
    assert_eq!(rel(a, &fa), rel(b, &fb), "different file lists");
    assert!(fa.len() > 20);
    for (x, y) in fa.iter().zip(&fb) {
        assert!(std::fs::read(x).unwrap() == std::fs::read(y).unwrap(), "{} and {} differ", x.display(), y.display());
    }
}

/// The process id of rank `rank` of the MPI job running `command` (`train`, `pipeline`) whose
/// command line contains `marker`.
pub fn rank_pid(rank: usize, command: &str, marker: &str) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let has = |bytes: &[u8], s: &str| bytes.split(|&b| b == 0).any(|part| part == s.as_bytes()) || String::from_utf8_lossy(bytes).contains(s);
        (has(&cmdline, marker) && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) && has(&cmdline, command)).then_some(pid)
    })
}
