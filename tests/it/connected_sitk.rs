//! `connected` against SimpleITK's ConnectedComponent (fullyConnected off) + RelabelComponent,
//! largest component kept, voxel for voxel on random masks (needs `pip install SimpleITK`, as
//! `.ci/run` does); and `connected --root` over a phantom cohort removes exactly its islands.

use crate::common;

use common::cta2mbf;
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use cta2mbf::preprocess::connected::{DEFAULT_LABELS, keep_largest_components};
use cta2mbf::{Geometry, Volume};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn sitk_connected(input: &Path, output: &Path, labels: &str) {
    crate::common::python("connected_crosscheck.py", &[input.as_os_str(), output.as_os_str(), labels.as_ref()]);
}

/// Random label blobs: a few labels painted as random boxes, plus salt of single voxels, so
/// that there are many components, ties between single voxels, and touching labels.
fn random_mask(rng: &mut ChaCha8Rng, shape: [usize; 3]) -> Volume {
    let mut d = Array3::<f32>::zeros(shape);
    for _ in 0..rng.random_range(10..30) {
        let label = rng.random_range(1..8) as f32;
        let lo = [0, 1, 2].map(|a| rng.random_range(0..shape[a]));
        let hi = [0, 1, 2].map(|a| (lo[a] + rng.random_range(1..6)).min(shape[a]));
        for x in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                for z in lo[2]..hi[2] {
                    d[[x, y, z]] = label;
                }
            }
        }
    }
    for v in d.iter_mut() {
        if rng.random_bool(0.08) {
            *v = rng.random_range(0..8) as f32;
        }
    }
    Volume::new(d, Geometry::axial([0.8, 0.9, 2.5], [-10.0, 4.0, -200.0]))
}

#[test]
fn connected_equals_simpleitk_on_random_masks() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let label_sets: [&[u8]; 3] = [&DEFAULT_LABELS, &[1, 2, 3, 4, 5, 6, 7], &[7]];
    // Mask 0: a tie between two single voxels of label 6, where the first in raster order
    // (x fastest) is not the first in memory order (z fastest): SimpleITK keeps (3, 0, 0).
    let mut tie = Array3::<f32>::zeros([4, 4, 4]);
    tie[[3, 0, 0]] = 6.0;
    tie[[0, 0, 1]] = 6.0;
    let tie = Volume::new(tie, Geometry::default());
    for i in 0..7 {
        let shape = [rng.random_range(5..30), rng.random_range(5..30), rng.random_range(3..20)];
        let mask = if i == 0 { tie.clone() } else { random_mask(&mut rng, shape) };
        let shape = mask.shape();
        let labels = label_sets[i % 3];
        let input = dir.path().join(format!("m{i}.nii.gz"));
        write_nifti(&input, &mask, NiftiDtype::U8).unwrap();
        let reference = dir.path().join(format!("sitk{i}.nii.gz"));
        let list: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        sitk_connected(&input, &reference, &list.join(","));
        let ours = keep_largest_components(&read_nifti(&input).unwrap(), labels);
        let theirs = read_nifti(&reference).unwrap();
        let differ = ours.data.iter().zip(theirs.data.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "mask {i} {shape:?} labels {labels:?}: {differ} voxels differ from SimpleITK");
        // The file-level command writes the same voxels.
        let out = dir.path().join(format!("ours{i}.nii.gz"));
        let status = cta2mbf().args(["connected", "--in"]).arg(&input).arg("--out").arg(&out).arg("--labels").arg(list.join(",")).output().unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        assert_eq!(read_nifti(&out).unwrap().data, theirs.data);
        if i == 0 {
            assert_eq!((theirs.data[[3, 0, 0]], theirs.data[[0, 0, 1]]), (6.0, 0.0), "SimpleITK's tie-break");
        }
    }
}

#[test]
fn connected_over_a_cohort_removes_the_phantom_islands() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let ok = cta2mbf().args(["phantom", "--cases", "2", "--size", "48,48,32", "--seed", "4", "--out"]).arg(&root).output().unwrap();
    assert!(ok.status.success());
    let masks = root.join("3.sorted_mask");
    let pids: Vec<String> = std::fs::read_dir(&masks).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let truth: Vec<Volume> = pids.iter().map(|p| read_nifti(masks.join(p).join("CTA/CTA_MASK_connected.nii.gz")).unwrap()).collect();
    for p in &pids {
        std::fs::remove_file(masks.join(p).join("CTA/CTA_MASK_connected.nii.gz")).unwrap();
    }
    let out = cta2mbf().args(["connected", "--root"]).arg(&root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("connected: 2 patients, 2 done, 0 failed"), "{text}");
    for (p, t) in pids.iter().zip(&truth) {
        let got = read_nifti(masks.join(p).join("CTA/CTA_MASK_connected.nii.gz")).unwrap();
        assert_eq!(got.data, t.data, "patient {p}");
        assert_eq!(got.geometry, t.geometry);
    }
}
