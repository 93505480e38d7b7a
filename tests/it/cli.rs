//! The binary: subcommand list, `info`, and one clear error line for bad input.

use crate::common;

use common::cta2mbf;
use cta2mbf::io::{NiftiDtype, write_nifti};
use cta2mbf::{Geometry, Volume};
use std::io::Write;

fn small_file(dir: &std::path::Path) -> std::path::PathBuf {
    let v = Volume::filled([8, 8, 8], 100.0, Geometry::axial([0.5, 0.5, 2.0], [1.0, 2.0, 3.0]));
    let p = dir.join("ok.nii.gz");
    write_nifti(&p, &v, NiftiDtype::I16).unwrap();
    p
}

/// Run `cta2mbf info FILE` and return (exit code, stderr).
fn info(path: &std::path::Path) -> (i32, String) {
    let out = cta2mbf().arg("info").arg(path).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_clear_error(path: &std::path::Path, needle: &str) {
    let before = std::fs::read(path).ok();
    let (code, err) = info(path);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    assert!(err.contains(needle), "says '{needle}': {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(path).ok(), before, "input untouched");
}

#[test]
fn help_lists_the_subcommands() {
    let out = cta2mbf().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["phantom", "info"] {
        assert!(text.contains(sub), "{text}");
    }
    let bad = cta2mbf().arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn info_describes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_file(dir.path());
    let out = cta2mbf().args(["info", "--json"]).arg(&p).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["size"], serde_json::json!([8, 8, 8]));
    assert_eq!(json["dtype"], "int16");
    assert_eq!(json["spacing"], serde_json::json!([0.5, 0.5, 2.0]));
    assert_eq!(json["origin"], serde_json::json!([1.0, 2.0, 3.0]));
    assert_eq!(json["mean"], 100.0);
}

#[test]
fn corrupt_inputs_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = small_file(dir.path());
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.nii.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_clear_error(&truncated, "gzip");

    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end_into(&mut raw);
    let mut magic = raw.clone();
    magic[344..348].copy_from_slice(b"abc\0");
    let wrong_magic = dir.path().join("magic.nii");
    std::fs::write(&wrong_magic, &magic).unwrap();
    assert_one_clear_error(&wrong_magic, "bad NIfTI magic");

    let mut dims = raw.clone();
    dims[42..44].copy_from_slice(&200u16.to_le_bytes()); // dim[1] = 200 instead of 8
    let wrong_dims = dir.path().join("dims.nii");
    std::fs::write(&wrong_dims, &dims).unwrap();
    assert_one_clear_error(&wrong_dims, "data size mismatch");

    let not_nifti = dir.path().join("notes.nii");
    std::fs::File::create(&not_nifti).unwrap().write_all(b"this is a text file, not an image").unwrap();
    assert_one_clear_error(&not_nifti, "too short");

    let folder = dir.path().join("folder.nii.gz");
    std::fs::create_dir(&folder).unwrap();
    assert_one_clear_error(&folder, "directory");

    assert_one_clear_error(&dir.path().join("missing.nii.gz"), "No such file");
}

trait ReadToEndInto {
    fn read_to_end_into(self, out: &mut Vec<u8>);
}
impl<R: std::io::Read> ReadToEndInto for R {
    fn read_to_end_into(mut self, out: &mut Vec<u8>) {
        self.read_to_end(out).unwrap();
    }
}
