//! Real DICOM that this project did not write: the CT and MR files of pydicom's test data
//! (PyPI `pydicom`, and `pydicom-data` when installed) sort into their series folders, and
//! every multi-slice series converts to the array and geometry SimpleITK's
//! ImageSeriesReader gives (needs `pip install pydicom pydicom-data SimpleITK`, as `.ci/run` does).

use crate::common;

use common::*;
use cta2mbf::io::dicom::{SliceHeader, files_in, is_valid_uid, read_series};
use cta2mbf::preprocess::sort::sort_dicom;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn script(args: &[&str]) -> String {
    String::from_utf8(crate::common::python("dicom_crosscheck.py", args)).unwrap()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn pydicom_test_data_sorts_by_series_and_converts_like_simpleitk() {
    // Every CT/MR file pydicom reads, with its series and instance UIDs.
    let listing = script(&["files"]);
    let files: Vec<(PathBuf, String, String)> = listing
        .lines()
        .map(|l| {
            let mut parts = l.split('\t');
            (PathBuf::from(parts.next().unwrap()), parts.next().unwrap().to_string(), parts.next().unwrap_or("").to_string())
        })
        .collect();
    assert!(files.len() >= 60, "pydicom ships CT and MR test files: {}", files.len());

    // A dump: one patient, files at several depths, under new names.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let mut dest_of = Vec::new();
    for (i, (src, _, _)) in files.iter().enumerate() {
        let dest = raw.join("pydicom").join(format!("d{}", i % 3)).join(format!("{i:03}_{}", src.file_name().unwrap().to_string_lossy()));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src, &dest).unwrap();
        dest_of.push(dest);
    }
    let ori = dir.path().join("0.ori_3");
    let report = sort_dicom(&raw, &ori).unwrap();
    println!("{report}");
    let patient = &report.patients[0];
    assert!(patient.error.is_none());
    let skipped: BTreeMap<&PathBuf, &String> = patient.skipped.iter().map(|(p, why)| (p, why)).collect();

    // Every sorted file sits in the folder of its own series; every file pydicom reads is
    // sorted under its SeriesInstanceUID or listed with the reason.
    let mut sorted_sops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for series_dir in std::fs::read_dir(ori.join("pydicom")).unwrap() {
        let series_dir = series_dir.unwrap().path();
        let uid = series_dir.file_name().unwrap().to_string_lossy().into_owned();
        for f in files_in(&series_dir).unwrap() {
            let h = SliceHeader::read(&f).unwrap();
            assert_eq!(h.series_instance_uid.as_deref(), Some(uid.as_str()), "{}", f.display());
            sorted_sops.entry(uid.clone()).or_default().insert(h.sop_instance_uid.unwrap());
        }
    }
    let mut listed = 0;
    for ((_, series, sop), dest) in files.iter().zip(&dest_of) {
        let in_folder = sorted_sops.get(series).is_some_and(|s| s.contains(sop));
        if !in_folder {
            let why = skipped.get(dest).unwrap_or_else(|| panic!("{} (series {series}) neither sorted nor reported", dest.display()));
            if !is_valid_uid(series) {
                assert!(why.contains("is not a valid UID"), "{why}");
            }
            listed += 1;
        }
    }
    println!("{} files sorted into {} series, {listed} listed with a reason", files.len() - listed, sorted_sops.len());
    assert!(sorted_sops.len() >= 10, "{sorted_sops:?}");

    // Every multi-slice series: our volume against SimpleITK's.
    let dirs: Vec<PathBuf> = sorted_sops.iter().filter(|(_, s)| s.len() >= 2).map(|(uid, _)| ori.join("pydicom").join(uid)).collect();
    let refdir = dir.path().join("ref");
    let mut args = vec!["series".to_string(), refdir.to_string_lossy().into_owned()];
    args.extend(dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    script(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (mut same, mut stacked, mut refused) = (0, 0, Vec::new());
    for (i, d) in dirs.iter().enumerate() {
        let json: Value = serde_json::from_slice(&std::fs::read(refdir.join(format!("{i}.json"))).unwrap()).unwrap();
        let ours = read_series(d);
        match (&ours, json["sitk"].is_object()) {
            (Ok(series), true) => {
                let v = &series.volume;
                let size: Vec<usize> = json["sitk"]["size"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
                assert_eq!(v.shape().to_vec(), size, "{}: size", d.display());
                let theirs = read_f32(&refdir.join(format!("{i}.f32")));
                assert_same_values(v.data.as_slice().unwrap(), &theirs, &format!("{}: values", d.display()));
                let diff = sitk_geometry_diff(&v.geometry, &json["sitk"]);
                assert!(diff <= 1e-4, "{}: geometry differs from SimpleITK's by {diff}: ours {:?}, SimpleITK {}", d.display(), v.geometry, json["sitk"]);
                println!("same as SimpleITK: {} {:?} {:?}", d.display(), v.shape(), series.warnings);
                same += 1;
                if let Some(why) = &series.not_a_volume {
                    assert!(series.warnings.iter().any(|w| w.contains(why.as_str()) && w.contains("stacked as ITK")), "{:?}", series.warnings);
                    stacked += 1;
                    // `convert` writes it with the warning; `convert --strict` refuses it.
                    let nii = dir.path().join(format!("stacked{i}.nii.gz"));
                    let run = |strict: bool| {
                        let mut cmd = cta2mbf();
                        cmd.args(["convert", "--series"]).arg(d).arg("--output").arg(&nii);
                        if strict {
                            cmd.arg("--strict");
                        }
                        cmd.output().unwrap()
                    };
                    let out = run(true);
                    assert!(!out.status.success() && !nii.exists(), "--strict refuses: {}", String::from_utf8_lossy(&out.stderr));
                    assert!(String::from_utf8_lossy(&out.stderr).contains("do not form one volume"));
                    let out = run(false);
                    assert!(out.status.success() && nii.exists() && String::from_utf8_lossy(&out.stdout).contains("stacked as ITK"));
                }
            }
            (Err(e), sitk_read) => {
                let message = e.to_string();
                assert!(message.contains(&d.to_string_lossy().into_owned()), "error names the file: {message}");
                if sitk_read {
                    assert!(known_limit(&message), "{}: SimpleITK reads it, cta2mbf refuses: {message}", d.display());
                }
                println!("refused: {message} (SimpleITK: {})", if sitk_read { "read it".to_string() } else { json["error"].to_string() });
                refused.push(message);
            }
            (Ok(_), false) => panic!("{}: SimpleITK cannot read it ({}) but cta2mbf did", d.display(), json["error"]),
        }
    }
    println!("{same} series as SimpleITK reads them ({stacked} of them not one volume, stacked as ITK does), {} refused with a reason", refused.len());
    // Besides true volumes, pydicom's data holds localizers and a radial MR (slices of
    // different orientations) and copies of one slice (one position): read as ITK reads them.
    assert!(same >= 6 && stacked >= 4, "{same} series matched, {stacked} of them stacked");
}

/// A reason for refusing a file that SimpleITK reads: a transfer syntax cta2mbf does not
/// decode (JPEG-LS) or a damaged file.
fn known_limit(message: &str) -> bool {
    ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"].iter().any(|ts| message.contains(ts))
        || message.contains("pixel data holds")
        || message.contains("multi-frame")
        || message.contains("unreadable DICOM")
}

#[test]
fn every_pydicom_ct_mr_and_deflated_file_reads_like_simpleitk() {
    let listing = script(&["files"]);
    let dir = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (i, line) in listing.lines().enumerate() {
        let src = PathBuf::from(line.split('\t').next().unwrap());
        let d = dir.path().join(format!("{i:03}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(&src, d.join(src.file_name().unwrap())).unwrap();
        dirs.push(d);
    }
    let refdir = dir.path().join("ref");
    let mut args = vec!["series".to_string(), refdir.to_string_lossy().into_owned()];
    args.extend(dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    script(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut syntaxes = BTreeMap::<String, usize>::new();
    let mut limits = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let json: Value = serde_json::from_slice(&std::fs::read(refdir.join(format!("{i}.json"))).unwrap()).unwrap();
        let name = files_in(d).unwrap()[0].file_name().unwrap().to_string_lossy().into_owned();
        match (read_series(d), json["sitk"].is_object()) {
            (Ok(series), true) => {
                let v = &series.volume;
                let theirs = read_f32(&refdir.join(format!("{i}.f32")));
                assert_same_values(v.data.as_slice().unwrap(), &theirs, &format!("{name}: values"));
                let diff = sitk_geometry_diff(&v.geometry, &json["sitk"]);
                assert!(diff <= 1e-4, "{name}: geometry differs from SimpleITK's by {diff}: ours {:?}, SimpleITK {}", v.geometry, json["sitk"]);
                *syntaxes.entry(series.slices[0].transfer_syntax.clone()).or_default() += 1;
            }
            (Ok(_), false) => println!("{name}: SimpleITK cannot read it ({}); cta2mbf can", json["error"]),
            (Err(e), sitk_read) => {
                let message = e.to_string();
                assert!(message.contains(&name) || message.contains(&*d.to_string_lossy()), "error names the file: {message}");
                if sitk_read {
                    assert!(known_limit(&message), "{name}: SimpleITK reads it, cta2mbf refuses: {message}");
                    limits.push(message);
                } else {
                    println!("{name}: neither reads it: {message}");
                }
            }
        }
    }
    println!("same values and geometry as SimpleITK, per transfer syntax: {syntaxes:?}");
    for l in &limits {
        println!("not decoded: {l}");
    }
    // Native (explicit, implicit, big endian), RLE, deflate, JPEG lossless and JPEG 2000
    // (lossless and lossy) are all read.
    for ts in ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"] {
        assert!(syntaxes.contains_key(ts), "no file of transfer syntax {ts} matched: {syntaxes:?}");
    }
}
