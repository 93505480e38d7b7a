//! A malicious dump: a series UID `../../x`, a truncated file, a DICOM file without pixel
//! data, a series whose slices have different sizes, a patient folder named with a
//! backslash. Every problem is a report line naming the file; nothing is written outside
//! `--out` and the input is left as it was.

use crate::common;

use common::*;
use cta2mbf::io::dicom::write::{SeriesTags, SeriesWriter, encode_file};
use cta2mbf::volume::Geometry;
use cta2mbf::Volume;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use ndarray::Array3;
use std::path::{Path, PathBuf};

fn tags_for(series: &str) -> SeriesTags {
    SeriesTags {
        patient_id: "666".into(),
        study_uid: "1.2.3".into(),
        series_uid: series.into(),
        frame_of_reference_uid: "1.2.4".into(),
        series_number: 1,
        description: "evil".into(),
        image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
        date: "20240101".into(),
        time: "120000".into(),
        slice_thickness: 2.0,
    }
}

fn volume(nx: usize, ny: usize, nz: usize) -> Volume {
    Volume::new(Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| (x + 3 * y + 7 * z) as f32 - 100.0), Geometry::axial([0.5, 0.5, 2.0], [-10.0, -10.0, 40.0]))
}

fn write_series(dir: &Path, prefix: &str, v: &Volume, series: &str, first_sop: u32) {
    let w = SeriesWriter::new(v, tags_for(series)).unwrap();
    for k in 0..w.len() {
        std::fs::write(dir.join(format!("{prefix}{k}")), w.encode(k, &format!("1.2.5.{}", first_sop + k as u32)).unwrap()).unwrap();
    }
}

#[test]
fn a_malicious_dump_gives_report_lines_and_writes_nothing_outside_out() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let p = raw.join("666");
    std::fs::create_dir_all(&p).unwrap();
    // A good series, a series with a path as its UID, slices of two sizes in one series.
    write_series(&p, "good", &volume(8, 6, 4), "1.2.6.1", 100);
    write_series(&p, "evil", &volume(8, 6, 2), "../../x", 200);
    write_series(&p, "big", &volume(8, 6, 2), "1.2.6.2", 300);
    write_series(&p, "small", &volume(4, 6, 1), "1.2.6.2", 400);
    // A file cut inside its header, and one cut inside its pixel data.
    let cut = volume(8, 6, 2);
    let whole = SeriesWriter::new(&cut, tags_for("1.2.6.3")).unwrap();
    std::fs::write(p.join("cut_header"), &whole.encode(0, "1.2.5.500").unwrap()[..300]).unwrap();
    let bytes = whole.encode(1, "1.2.5.501").unwrap();
    std::fs::write(p.join("cut_pixels"), &bytes[..bytes.len() - 40]).unwrap();
    // DICOM with a series but no pixel data.
    let nopix = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(uids::CT_IMAGE_STORAGE)),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.5.600")),
        DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.6.4")),
    ]);
    std::fs::write(p.join("nopixels"), encode_file(nopix).unwrap()).unwrap();
    std::fs::write(p.join("empty"), b"").unwrap();
    // A patient folder whose name is not a safe path component.
    std::fs::create_dir_all(raw.join("..\\evil")).unwrap();
    write_series(&raw.join("..\\evil"), "x", &volume(4, 4, 1), "1.2.6.9", 900);

    let before: Vec<(PathBuf, Vec<u8>)> = walk(&raw).into_iter().map(|f| { let b = std::fs::read(&f).unwrap(); (f, b) }).collect();
    let out_root = dir.path().join("out");
    let ori = out_root.join("0.ori_3");
    let run = cta2mbf().args(["sort", "--in", raw.to_str().unwrap(), "--out", ori.to_str().unwrap()]).output().unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{report}\n{}", String::from_utf8_lossy(&run.stderr));
    let line = |name: &str| report.lines().find(|l| l.contains(&format!("{}:", p.join(name).display()))).unwrap_or_else(|| panic!("no line for {name}:\n{report}")).to_string();
    assert!(line("evil0").contains("SeriesInstanceUID \"../../x\" is not a valid UID"), "{report}");
    assert!(line("cut_header").contains("unreadable DICOM"), "{report}");
    assert!(line("empty").contains("not a DICOM file"), "{report}");
    assert!(report.contains("..\\evil: patient folder name is not usable"), "{report}");
    // Nothing outside out/, the input unchanged, no `x` anywhere.
    let after: Vec<(PathBuf, Vec<u8>)> = walk(&raw).into_iter().map(|f| { let b = std::fs::read(&f).unwrap(); (f, b) }).collect();
    assert!(before == after, "the input changed");
    let top: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(top.len(), 2, "{top:?}");
    assert!(walk(&out_root).iter().all(|f| f.starts_with(ori.join("666"))), "{:?}", walk(&out_root));
    assert!(!walk(dir.path()).iter().any(|f| f.file_name().unwrap() == "x" || f.to_string_lossy().contains("/x/")));

    // Converting: the good series works; the others fail with one line naming the file.
    let convert = |series: &str| {
        let target = out_root.join(format!("{series}.nii.gz"));
        let o = cta2mbf().args(["convert", "--series", ori.join("666").join(series).to_str().unwrap(), "--output", target.to_str().unwrap()]).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), target.exists())
    };
    assert_eq!(convert("1.2.6.1"), (Some(0), String::new(), true));
    let (code, err, written) = convert("1.2.6.2");
    assert!(code == Some(1) && !written && err.lines().count() == 1 && err.contains("pixels (columns x rows) differs from"), "{err}");
    let (code, err, written) = convert("1.2.6.3");
    assert!(code == Some(1) && !written && err.contains("1.2.6.3"), "{err}");
    assert!(err.contains(".dcm") && (err.contains("unreadable") || err.contains("pixel data")), "{err}");
    let (code, err, written) = convert("1.2.6.4");
    assert!(code == Some(1) && !written && err.contains("no DICOM image"), "{err}");
}
