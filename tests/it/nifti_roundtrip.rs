//! NIfTI write → read round trips: every datatype, oblique directions, scaling, atomicity.

use cta2mbf::io::{NiftiDtype, read_nifti, read_nifti_image, write_nifti};
use cta2mbf::volume::mat3;
use cta2mbf::{Geometry, Volume};
use ndarray::Array3;

fn oblique(shape: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    Volume::new(
        Array3::from_shape_fn(shape, |(x, y, z)| f(x, y, z)),
        Geometry {
            spacing: [0.4296875, 0.75, 3.0],
            origin: [-97.5, 180.25, -1302.625],
            direction: mat3::rotation([-0.2, 0.9, 0.4], 1.1),
        },
    )
}

fn assert_geometry_close(a: &Geometry, b: &Geometry, tol: f64) {
    let d = a.max_abs_diff(b);
    assert!(d <= tol, "geometry differs by {d}: {a:?} vs {b:?}");
}

#[test]
fn written_datatypes_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (NiftiDtype::U8, "u8.nii.gz", oblique([7, 5, 3], |x, y, z| ((x * 31 + y * 7 + z * 3) % 256) as f32)),
        (NiftiDtype::I16, "i16.nii.gz", oblique([4, 9, 6], |x, y, z| (x as f32 * 9000.0 - 32768.0 + (y * 6 + z) as f32).min(32767.0))),
        (NiftiDtype::F32, "f32.nii.gz", oblique([5, 4, 8], |x, y, z| ((x * 100 + y * 10 + z) as f32).sqrt() * -1.7e-3 + 1e7 * (z as f32))),
        (NiftiDtype::F32, "f32.nii", oblique([3, 3, 3], |x, y, z| f32::from_bits(0x3f80_0001 + (x * 9 + y * 3 + z) as u32))),
    ];
    for (dtype, name, vol) in cases {
        let p = dir.path().join(name);
        write_nifti(&p, &vol, dtype).unwrap();
        let back = read_nifti_image(&p).unwrap();
        assert_eq!(back.dtype, dtype);
        let v = &back.volumes[0];
        // bit-exact values
        for (a, b) in v.data.iter().zip(vol.data.iter()) {
            assert_eq!(a.to_bits(), b.to_bits(), "{name}");
        }
        assert_geometry_close(&v.geometry, &vol.geometry, 1e-6);
        // writing what was read gives the same geometry again
        let p2 = dir.path().join(format!("again-{name}"));
        write_nifti(&p2, v, dtype).unwrap();
        assert_geometry_close(&read_nifti(&p2).unwrap().geometry, &v.geometry, 1e-6);
    }
}

#[test]
fn every_readable_datatype_and_scaling() {
    // Files of the other datatypes come from the nifti crate's own writer.
    let dir = tempfile::tempdir().unwrap();
    let shape = (3, 4, 2);
    let mut hdr = nifti::NiftiHeader::default();
    hdr.pixdim = [1.0, 1.5, 2.0, 2.5, 1.0, 1.0, 1.0, 1.0];
    hdr.sform_code = 1;
    hdr.qform_code = 0;
    hdr.srow_x = [-1.5, 0.0, 0.0, 10.0];
    hdr.srow_y = [0.0, 2.0, 0.0, -20.0];
    hdr.srow_z = [0.0, 0.0, 2.5, 30.0];
    macro_rules! check {
        ($t:ty, $name:expr, $f:expr) => {{
            let arr = Array3::<$t>::from_shape_fn(shape, $f);
            let p = dir.path().join($name);
            nifti::writer::WriterOptions::new(&p).reference_header(&hdr).write_nifti(&arr).unwrap();
            let v = read_nifti(&p).unwrap();
            for (a, b) in v.data.iter().zip(arr.iter()) {
                assert_eq!(*a, *b as f32, "{}", $name);
            }
            // sform (code 1) with x negated: LPS x axis is +1, origin x is −10.
            assert_eq!(v.geometry.direction[0][0], 1.0);
            assert_eq!(v.geometry.origin, [-10.0, 20.0, 30.0]);
            assert_eq!(v.geometry.spacing, [1.5, 2.0, 2.5]);
        }};
    }
    check!(u8, "u8.nii", |(x, y, z)| (x * 80 + y * 20 + z) as u8);
    check!(i8, "i8.nii.gz", |(x, y, z)| (x as i8 - 1) * 60 + (y * 2 + z) as i8);
    check!(i16, "i16.nii", |(x, y, z)| (x as i16 - 1) * 30000 + (y * 2 + z) as i16);
    check!(u16, "u16.nii.gz", |(x, y, z)| (x * 30000 + y * 2 + z) as u16);
    check!(i32, "i32.nii", |(x, y, z)| (x as i32 - 1) * 8_000_000 + (y * 2 + z) as i32);
    check!(f32, "f32.nii", |(x, y, z)| x as f32 * 0.1 - y as f32 * 1e-7 + z as f32);
    check!(f64, "f64.nii.gz", |(x, y, z)| x as f64 * 0.5 - y as f64 * 0.25 + z as f64);
    // scl_slope / scl_inter applied.
    let mut scaled = hdr.clone();
    scaled.scl_slope = 0.5;
    scaled.scl_inter = -1024.0;
    let p = dir.path().join("scaled.nii");
    let arr = Array3::<i16>::from_shape_fn(shape, |(x, y, z)| (x * 100 + y * 10 + z) as i16);
    // The writer resets slope/intercept, so patch them into the header bytes (offsets 112, 116).
    nifti::writer::WriterOptions::new(&p).reference_header(&scaled).write_nifti(&arr).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[112..116].copy_from_slice(&0.5f32.to_le_bytes());
    bytes[116..120].copy_from_slice(&(-1024.0f32).to_le_bytes());
    std::fs::write(&p, bytes).unwrap();
    let v = read_nifti(&p).unwrap();
    for (a, b) in v.data.iter().zip(arr.iter()) {
        assert_eq!(*a, *b as f32 * 0.5 - 1024.0);
    }
}

#[test]
fn unstorable_values_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = oblique([2, 2, 2], |_, _, _| 1.0);
    v.data[[1, 1, 1]] = 40000.0;
    let p = dir.path().join("x.nii.gz");
    let err = write_nifti(&p, &v, NiftiDtype::I16).unwrap_err().to_string();
    assert!(err.contains("x.nii.gz") && err.contains("int16"), "{err}");
    assert!(!p.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary left behind");
    assert!(write_nifti(dir.path().join("x.mha"), &v, NiftiDtype::F32).is_err());
    // an existing file is replaced whole
    write_nifti(&p, &v.map(|_| 3.0), NiftiDtype::I16).unwrap();
    assert_eq!(read_nifti(&p).unwrap().data[[0, 0, 0]], 3.0);
}
