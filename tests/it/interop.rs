//! NIfTI interoperability with real clients: SimpleITK and nibabel (needs
//! `pip install SimpleITK nibabel`, as `.ci/run` does).

use crate::common;

use common::*;
use cta2mbf::io::{NiftiDtype, read_nifti, read_nifti_image, write_nifti};
use cta2mbf::volume::mat3;
use cta2mbf::{Geometry, Volume};
use ndarray::Array3;

fn oblique_volume(shape: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    let data = Array3::from_shape_fn(shape, |(x, y, z)| f(x, y, z));
    let geometry = Geometry {
        spacing: [0.625, 1.25, 2.5],
        origin: [-120.5, 33.25, -512.75],
        direction: mat3::rotation([0.3, -0.5, 0.8], 0.6),
    };
    Volume::new(data, geometry)
}

#[test]
fn files_written_by_cta2mbf_read_the_same_in_simpleitk_and_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("u8.nii.gz", NiftiDtype::U8, oblique_volume([5, 6, 7], |x, y, z| ((x * 7 + y * 3 + z) % 9) as f32)),
        ("i16.nii.gz", NiftiDtype::I16, oblique_volume([6, 5, 4], |x, y, z| (x as f32 - 3.0) * 700.0 + (y * 11 + z) as f32)),
        ("f32.nii", NiftiDtype::F32, oblique_volume([4, 6, 5], |x, y, z| (x as f32).sin() * 1e3 + y as f32 * 0.125 - z as f32 / 3.0)),
        // A mirrored (left-handed) direction exercises qfac = −1.
        ("mirror.nii.gz", NiftiDtype::I16, {
            let mut v = oblique_volume([3, 4, 5], |x, y, z| (x + 10 * y + 100 * z) as f32);
            v.geometry.direction = mat3::mul(&v.geometry.direction, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]);
            v
        }),
    ];
    let mut files = Vec::new();
    for (name, dtype, vol) in &cases {
        let p = dir.path().join(name);
        write_nifti(&p, vol, *dtype).unwrap();
        files.push(p.to_string_lossy().into_owned());
    }
    let refdir = dir.path().join("ref");
    let mut args = vec!["read", refdir.to_str().unwrap()];
    args.extend(files.iter().map(|s| s.as_str()));
    crosscheck(&args);
    for (i, (name, _, vol)) in cases.iter().enumerate() {
        let r = reference(&refdir, i);
        let want: Vec<f32> = vol.data.iter().copied().collect();
        assert_same_values(&r.nib, &want, &format!("{name}: nibabel array"));
        assert_same_values(r.sitk.as_ref().unwrap(), &want, &format!("{name}: SimpleITK array"));
        let d = sitk_geometry_diff(&vol.geometry, &r.json["sitk"]);
        assert!(d < 1e-5, "{name}: SimpleITK geometry differs by {d}");
        let d = nib_affine_diff(&vol.geometry, &r.json["nib"]);
        assert!(d < 1e-5, "{name}: nibabel affine differs by {d}");
    }
}

#[test]
fn files_written_by_simpleitk_and_nibabel_read_the_same_in_cta2mbf() {
    let dir = tempfile::tempdir().unwrap();
    let listing = crosscheck(&["write", dir.path().to_str().unwrap()]);
    let files: Vec<&str> = listing.lines().collect();
    assert!(files.len() >= 13, "{files:?}");
    let refdir = dir.path().join("ref");
    let mut args = vec!["read", refdir.to_str().unwrap()];
    args.extend(files.iter().copied());
    crosscheck(&args);
    for (i, f) in files.iter().enumerate() {
        let r = reference(&refdir, i);
        let image = read_nifti_image(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(image.dtype.name(), r.json["nib"]["dtype"].as_str().unwrap().trim_start_matches(['<', '>', '|']).replace("i2", "int16").replace("f4", "float32"), "{f}: dtype");
        let ours = flatten(&image.volumes);
        assert_same_values(&ours, &r.nib, &format!("{f}: array vs nibabel"));
        assert_same_values(&ours, r.sitk.as_ref().unwrap(), &format!("{f}: array vs SimpleITK"));
        let g = &image.volumes[0].geometry;
        let d = sitk_geometry_diff(g, &r.json["sitk"]);
        assert!(d < 1e-5, "{f}: geometry differs from SimpleITK's by {d}");
        let d = nib_affine_diff(g, &r.json["nib"]);
        assert!(d < 1e-5, "{f}: affine differs from nibabel's by {d}");
    }
}

#[test]
fn nibabel_test_data_reads_like_nibabel() {
    let listing = crosscheck(&["nibabel-data"]);
    let files: Vec<&str> = listing.lines().collect();
    assert!(files.len() >= 5, "nibabel ships NIfTI test files: {files:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["read", dir.path().to_str().unwrap()];
    args.extend(files.iter().copied());
    crosscheck(&args);
    for (i, f) in files.iter().enumerate() {
        let r = reference(dir.path(), i);
        let image = read_nifti_image(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let shape: Vec<usize> = r.json["nib"]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(image.header.dim, shape, "{f}: shape");
        assert_same_values(&flatten(&image.volumes), &r.nib, &format!("{f}: array"));
        // nibabel prefers the sform, ITK the qform when both codes are 2: these files agree
        // to the precision of the qform's float32 quaternion.
        let d = nib_affine_diff(&image.volumes[0].geometry, &r.json["nib"]);
        assert!(d < 2e-4, "{f}: affine differs from nibabel's by {d}");
        if let Some(s) = r.json["sitk"].as_object() {
            let d = sitk_geometry_diff(&image.volumes[0].geometry, &serde_json::Value::Object(s.clone()));
            assert!(d < 1e-5, "{f}: geometry differs from SimpleITK's by {d}");
        }
    }
    // read_nifti insists on 3-D.
    let four_d = files.iter().find(|f| f.ends_with("example4d.nii.gz")).unwrap();
    let err = read_nifti(four_d).unwrap_err().to_string();
    assert!(err.contains("example4d.nii.gz") && err.contains("3-D"), "{err}");
}
