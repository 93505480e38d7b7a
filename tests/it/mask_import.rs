//! Chamber masks imported from TotalSegmentator or another tool's label file (docs/design.md §3):
//! outputs built from a phantom's `CTA_MASK_connected` in both TotalSegmentator layouts come back
//! as the same labels on the CTA grid (also from a flipped grid and from files on different
//! grids); a phantom heart segmented on a 1.5 times coarser, shifted grid comes back within
//! Dice 0.95 per label; overlaps follow the stated priority; broken outputs are refused naming
//! the file; `segment` imports one case and a cohort whose broken patient fails alone.

use crate::common;

use common::cta2mbf;
use cta2mbf::analysis::overlap::dice_per_label;
use cta2mbf::io::{NiftiDtype, read_nifti, write_nifti};
use cta2mbf::phantom::anatomy::Anatomy;
use cta2mbf::preprocess::label_map::LabelMap;
use cta2mbf::preprocess::mask_import::{CaseMask, MaskFormat, MaskSource, TOTALSEGMENTATOR_STRUCTURES, import_mask};
use cta2mbf::{Geometry, Volume};
use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Output;

/// TotalSegmentator's `--ml` label of each of our labels 0..=7.
const TS_LABEL_OF_OURS: [f32; 8] = [0.0, 3.0, 5.0, 2.0, 4.0, 6.0, 1.0, 7.0];

/// TotalSegmentator's format with its own `--ml` labels.
const TS: MaskFormat = MaskFormat::TotalSegmentator { label_map: None };

/// What a command printed, stdout then stderr.
fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A phantom cohort of `cases` patients under `root`; the patient ids.
fn phantom(root: &Path, cases: usize) -> Vec<String> {
    common::phantom(root, cases, "48,48,32", 9)
}

/// The CTA path, the CTA and the connected mask of a one-patient phantom cohort under `dir`.
fn one_patient(dir: &Path) -> (PathBuf, Volume, Volume) {
    let root = dir.join("cohort");
    let pid = phantom(&root, 1).remove(0);
    case(&root, &pid)
}

/// The CTA and the connected mask of a phantom patient.
fn case(root: &Path, pid: &str) -> (PathBuf, Volume, Volume) {
    let cta = root.join("3.sorted_nii").join(pid).join("CTA.nii.gz");
    let mask = read_nifti(root.join("3.sorted_mask").join(pid).join("CTA/CTA_MASK_connected.nii.gz")).unwrap();
    let labels: std::collections::BTreeSet<u8> = mask.data.iter().map(|&v| v as u8).collect();
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), (0..=7).collect::<Vec<u8>>(), "the phantom mask holds every label");
    (cta.clone(), read_nifti(&cta).unwrap(), mask)
}

/// `mask` (our labels) written as a TotalSegmentator per-structure folder.
fn write_structures(dir: &Path, mask: &Volume) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, label) in TOTALSEGMENTATOR_STRUCTURES {
        write_nifti(dir.join(name), &mask.map(|v| (v == label as f32) as u8 as f32), NiftiDtype::U8).unwrap();
    }
}

/// `mask` (our labels) written as a TotalSegmentator `--ml` file.
fn write_ml(path: &Path, mask: &Volume) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    write_nifti(path, &mask.map(|v| TS_LABEL_OF_OURS[v as usize]), NiftiDtype::U8).unwrap();
}

/// The import of the case at `path` onto the grid of `cta` (a panic names the case).
fn import(format: &MaskFormat, path: &Path, cta: &Volume) -> Volume {
    let case = format.case(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    import_mask(&case, cta).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The error the import of the case at `path` gives.
fn error(format: &MaskFormat, path: &Path, cta: &Volume) -> String {
    match format.case(path).and_then(|c| import_mask(&c, cta)) {
        Ok(_) => panic!("{} was imported", path.display()),
        Err(e) => e.to_string(),
    }
}

/// Panic unless `got` is `want`: the same grid and the same labels.
fn assert_same_mask(got: &Volume, want: &Volume, what: &str) {
    assert_eq!(got.geometry, want.geometry, "{what}: geometry");
    common::assert_same_values(got.data.as_slice().unwrap(), want.data.as_slice().unwrap(), what);
}

#[test]
fn both_layouts_give_the_phantoms_labels_on_its_grid_on_a_flipped_grid_and_from_mixed_grids() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cta, mask) = one_patient(dir.path());
    let ts = dir.path().join("ts");

    write_structures(&ts.join("folder"), &mask);
    write_ml(&ts.join("ml.nii.gz"), &mask);
    write_ml(&ts.join("ml_folder/segmentations.nii.gz"), &mask);
    for layout in ["folder", "ml.nii.gz", "ml_folder"] {
        assert_same_mask(&import(&TS, &ts.join(layout), &cta), &mask, layout);
    }
    assert!(matches!(TS.case(&ts.join("folder")).unwrap(), CaseMask::Structures(_)));
    assert!(matches!(TS.case(&ts.join("ml_folder")).unwrap(), CaseMask::LabelFile(ref f, _) if f.ends_with("segmentations.nii.gz")));

    // The same voxels indexed the other way along x and y (a RAS-ordered file): every voxel
    // keeps its world position, so resampling in world coordinates gives the labels back.
    let flipped = mask.flip(0).flip(1);
    assert!(!flipped.same_grid(&cta, 1e-3));
    write_ml(&ts.join("flipped.nii.gz"), &flipped);
    assert_same_mask(&import(&TS, &ts.join("flipped.nii.gz"), &cta), &mask, "flipped ml file");

    // Structure files on grids of their own: flipped ones, and the aorta cut to its bounding box.
    write_structures(&ts.join("mixed"), &flipped);
    let aorta = mask.map(|v| (v == 5.0) as u8 as f32);
    let (lo, hi) = aorta.bounding_box(|v| v > 0.0).unwrap();
    let cut = aorta.crop(lo, [0, 1, 2].map(|a| hi[a] - lo[a] + 1)).unwrap();
    assert!(cut.shape() != cta.shape());
    write_nifti(ts.join("mixed/aorta.nii.gz"), &cut, NiftiDtype::U8).unwrap();
    assert_same_mask(&import(&TS, &ts.join("mixed"), &cta), &mask, "structure files on different grids");

    // What a case reads.
    let files = TS.case(&ts.join("folder")).unwrap().inputs();
    assert_eq!(files.len(), 7);
    assert!(files.iter().all(|f| f.is_file()));
    assert_eq!(TS.case(&ts.join("ml.nii.gz")).unwrap().inputs(), vec![ts.join("ml.nii.gz")]);
}

/// The labels of a phantom heart sampled at the voxel centres of a grid.
fn render(anatomy: &Anatomy, shape: [usize; 3], geometry: Geometry) -> Volume {
    Volume::new(cta2mbf::phantom::render(shape, &geometry, |p| anatomy.tissue(p).label as f32), geometry)
}

#[test]
fn a_coarser_shifted_grid_comes_back_within_dice_0_95() {
    // A phantom heart on a 0.6 mm CTA grid (cardiac CTA is reconstructed at 0.3-0.6 mm) and as
    // segmented on a 1.5 times coarser grid whose voxel centres fall between the CTA's.
    let anatomy = Anatomy::random(&mut ChaCha8Rng::seed_from_u64(9), [0.0; 3]);
    let cta = render(&anatomy, [200; 3], Geometry::axial([0.6; 3], [-60.0; 3]));
    let coarse = render(&anatomy, [134; 3], Geometry::axial([0.9; 3], [-59.77, -60.31, -59.58]));
    let labels: std::collections::BTreeSet<u8> = cta.data.iter().map(|&v| v as u8).collect();
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), (0..=7).collect::<Vec<u8>>(), "the grid holds every label");
    let dir = tempfile::tempdir().unwrap();
    write_structures(&dir.path().join("folder"), &coarse);
    write_ml(&dir.path().join("ml.nii.gz"), &coarse);
    for layout in ["folder", "ml.nii.gz"] {
        let got = import(&TS, &dir.path().join(layout), &cta);
        assert_eq!(got.geometry, cta.geometry);
        // dice[l - 1] is label l's.
        let dice = dice_per_label(&got.data, &cta.data, 8);
        let shown: Vec<String> = (1..8).map(|l| format!("{l}: {:.4}", dice[l - 1].unwrap())).collect();
        println!("{layout}: CTA grid 0.6 mm, TotalSegmentator grid 0.9 mm, Dice {}", shown.join(", "));
        for (i, d) in dice.iter().enumerate() {
            assert!(d.unwrap() >= 0.95, "{layout}: label {}: Dice {d:?}", i + 1);
        }
    }
}

/// A tiny volume on the default grid with `f(index)` as values.
fn tiny(f: impl Fn(usize) -> f32) -> Volume {
    Volume::new(Array3::from_shape_fn([3, 3, 3], |(x, y, z)| f(x * 9 + y * 3 + z)), Geometry::default())
}

#[test]
fn overlapping_structures_follow_the_stated_priority() {
    // The order of docs/design.md §3: myocardium, LV, RV, LA, RA, aorta, pulmonary artery.
    let order = [6u8, 1, 2, 3, 4, 5, 7];
    assert_eq!(TOTALSEGMENTATOR_STRUCTURES.map(|(_, l)| l), order);
    // Voxel k is set in the two structures of pair k (21 pairs); the first of the pair wins.
    let pairs: Vec<(usize, usize)> = (0..7).flat_map(|i| (i + 1..7).map(move |j| (i, j))).collect();
    let dir = tempfile::tempdir().unwrap();
    for (s, (name, _)) in TOTALSEGMENTATOR_STRUCTURES.iter().enumerate() {
        let v = tiny(|k| pairs.get(k).is_some_and(|&(i, j)| i == s || j == s) as u8 as f32);
        write_nifti(dir.path().join(name), &v, NiftiDtype::U8).unwrap();
    }
    let cta = tiny(|_| 0.0);
    let got = import(&TS, dir.path(), &cta);
    for (k, &(i, j)) in pairs.iter().enumerate() {
        assert_eq!(got.data.as_slice().unwrap()[k], order[i] as f32, "voxel of {} and {}", TOTALSEGMENTATOR_STRUCTURES[i].0, TOTALSEGMENTATOR_STRUCTURES[j].0);
    }
    assert!(got.data.iter().skip(pairs.len()).all(|&v| v == 0.0));
}

#[test]
fn broken_outputs_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cta = tiny(|_| 0.0);
    let ones = tiny(|k| (k == 4) as u8 as f32);
    let folder = dir.path().join("ts");
    std::fs::create_dir(&folder).unwrap();
    for (name, _) in TOTALSEGMENTATOR_STRUCTURES {
        write_nifti(folder.join(name), &ones, NiftiDtype::U8).unwrap();
    }
    import(&TS, &folder, &cta);

    // A custom map applies to label files, not to a structure folder.
    let map = LabelMap::new(&[(1, 6)], Default::default(), "the label map m.json").unwrap();
    let e = error(&MaskFormat::TotalSegmentator { label_map: Some(map.clone()) }, &folder, &cta);
    assert!(e.contains("per-structure folder") && e.contains("m.json"), "{e}");

    // A value other than 0 and 1 in a structure file.
    write_nifti(folder.join("aorta.nii.gz"), &tiny(|k| (k == 4) as u8 as f32 * 2.0), NiftiDtype::U8).unwrap();
    let e = error(&TS, &folder, &cta);
    assert!(e.contains("aorta.nii.gz") && e.contains("holds the value 2") && e.contains("binary"), "{e}");

    // Missing structures: one message naming each.
    std::fs::remove_file(folder.join("aorta.nii.gz")).unwrap();
    std::fs::remove_file(folder.join("heart_atrium_left.nii.gz")).unwrap();
    let e = error(&TS, &folder, &cta);
    assert!(e.contains("missing heart_atrium_left.nii.gz, aorta.nii.gz") && e.contains(&folder.display().to_string()), "{e}");

    // A --ml file of another task (labels beyond 7).
    let other = dir.path().join("total.nii.gz");
    write_nifti(&other, &tiny(|k| k as f32), NiftiDtype::U8).unwrap();
    let e = error(&TS, &other, &cta);
    assert!(e.contains("total.nii.gz") && e.contains("the labels 8, 9,") && e.contains("heartchambers_highres"), "{e}");

    // Folders that are neither layout.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(error(&TS, &empty, &cta).contains("holds no NIfTI file: expected TotalSegmentator's structure files"));
    std::fs::copy(&other, empty.join("a.nii.gz")).unwrap();
    std::fs::copy(&other, empty.join("b.nii")).unwrap();
    let e = error(&MaskFormat::Labels { label_map: map }, &empty, &cta);
    assert!(e.contains("holds 2 NIfTI files (a.nii.gz, b.nii): expected one label file"), "{e}");
    assert!(error(&TS, &dir.path().join("absent"), &cta).contains("no such segmentation file or folder"));

    // A cohort folder: a patient with none, or with two segmentations.
    let source = MaskSource::parse(&format!("totalsegmentator:{}", dir.path().display()), None).unwrap();
    let e = source.for_patient("p7").unwrap_err().to_string();
    assert!(e.contains("no segmentation of patient p7 (expected p7/ or p7.nii.gz)"), "{e}");
    std::fs::copy(&other, dir.path().join("ts.nii.gz")).unwrap();
    let e = source.for_patient("ts").unwrap_err().to_string();
    assert!(e.contains("several segmentations of patient ts"), "{e}");
    std::fs::remove_file(dir.path().join("ts.nii.gz")).unwrap();
    assert!(matches!(source.for_patient("ts"), Err(e) if e.to_string().contains("missing heart_atrium_left.nii.gz")));
    assert!(matches!(source.for_patient("total"), Ok(CaseMask::LabelFile(..))));

    // The source syntax.
    for bad in ["totalsegmentator", "nnunet:/x", "labels:"] {
        assert!(MaskSource::parse(bad, None).unwrap_err().to_string().contains("expected totalsegmentator:DIR or labels:DIR"), "{bad}");
    }
    assert!(MaskSource::parse("labels:/x", None).unwrap_err().to_string().contains("needs a label map"));
}

#[test]
fn segment_imports_one_case_from_totalsegmentator_or_through_a_label_map() {
    let dir = tempfile::tempdir().unwrap();
    let (cta_path, _, mask) = one_patient(dir.path());
    let ts = dir.path().join("ts");
    write_structures(&ts, &mask);
    let (out, connected) = (dir.path().join("mask.nii.gz"), dir.path().join("connected.nii.gz"));
    let run = |args: &[&std::ffi::OsStr]| cta2mbf().arg("segment").args(args).output().unwrap();
    let o = run(&[
        "--from-totalsegmentator".as_ref(),
        ts.as_os_str(),
        "--input".as_ref(),
        cta_path.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--connected".as_ref(),
        connected.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("segment: ") && text(&o).contains("connected.nii.gz"), "{}", text(&o));
    for path in [&out, &connected] {
        assert_eq!(cta2mbf::io::read_nifti_image(path).unwrap().dtype, NiftiDtype::U8);
        assert_same_mask(&read_nifti(path).unwrap(), &mask, &path.display().to_string());
    }

    // Another tool: our label l written as 10·l, and a label 99 (some other organ) in the background.
    let tool = dir.path().join("tool.nii.gz");
    let mut other = mask.map(|v| 10.0 * v);
    let background = other.data.iter().position(|&v| v == 0.0).unwrap();
    other.data.as_slice_mut().unwrap()[background] = 99.0;
    write_nifti(&tool, &other, NiftiDtype::U8).unwrap();
    let map = dir.path().join("map.json");
    let with_map = |output: &Path| {
        run(&["--labels".as_ref(), tool.as_os_str(), "--label-map".as_ref(), map.as_os_str(), "--input".as_ref(), cta_path.as_os_str(), "--output".as_ref(), output.as_os_str()])
    };
    std::fs::write(&map, r#"{"labels": {"10": 1, "20": 2, "30": 3, "40": 4, "50": 5, "60": 6, "70": 7}}"#).unwrap();
    let o = with_map(&out);
    assert!(o.status.success(), "{}", text(&o));
    assert_same_mask(&read_nifti(&out).unwrap(), &mask, "label map, unmapped 99 → background");
    std::fs::write(&map, r#"{"labels": {"10": 1, "20": 2, "30": 3, "40": 4, "50": 5, "60": 6, "70": 7}, "unmapped": "error"}"#).unwrap();
    let o = with_map(&dir.path().join("refused.nii.gz"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("tool.nii.gz") && text(&o).contains("the labels 99, which the label map") && text(&o).contains("map.json"), "{}", text(&o));
    assert!(!dir.path().join("refused.nii.gz").exists());
    std::fs::write(&map, r#"{"labels": {"10": "LV"}}"#).unwrap();
    let o = with_map(&out);
    assert!(o.status.code() == Some(1) && text(&o).contains("map.json") && text(&o).contains("maps to \"LV\""), "{}", text(&o));

    // The sources exclude one another; --labels needs a map.
    for args in [
        vec!["--checkpoint", "models/chamber_seg_phantom", "--from-totalsegmentator", "x"],
        vec!["--from-totalsegmentator", "x", "--labels", "y", "--label-map", "z"],
        vec!["--labels", "y"],
        vec!["--label-map", "z"],
        vec![],
    ] {
        let o = cta2mbf().arg("segment").args(&args).args(["--input", "a.nii.gz", "--output", "b.nii.gz"]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
}

#[test]
fn segment_imports_a_cohort_and_a_broken_patient_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = phantom(&root, 2);
    let ts = dir.path().join("ts");
    let (cta0, _, mask0) = case(&root, &pids[0]);
    write_ml(&ts.join(format!("{}.nii.gz", pids[0])), &mask0);
    let (_, _, mask1) = case(&root, &pids[1]);
    write_structures(&ts.join(&pids[1]), &mask1);
    std::fs::remove_file(ts.join(&pids[1]).join("aorta.nii.gz")).unwrap();

    let out = dir.path().join("masks");
    let o = cta2mbf().args(["segment", "--in"]).arg(root.join("3.sorted_nii")).arg("--out").arg(&out).arg("--from-totalsegmentator").arg(&ts).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let line = |pid: &str| t.lines().find(|l| l.starts_with(&format!("patient {pid}"))).unwrap_or_else(|| panic!("no line for {pid}: {t}")).to_string();
    assert!(line(&pids[0]).contains("wrote"), "{t}");
    let l1 = line(&pids[1]);
    assert!(l1.contains("FAILED") && l1.contains("missing aorta.nii.gz") && l1.contains(&pids[1]), "{l1}");
    assert!(t.contains("segment: 2 patients, 1 done, 1 failed"), "{t}");
    assert!(t.contains("cta2mbf: error: segment: 1 of 2 patients failed"), "{t}");

    let written = out.join(&pids[0]).join("CTA");
    assert_eq!(std::fs::read(written.join("CTA.nii.gz")).unwrap(), std::fs::read(&cta0).unwrap());
    for file in ["CTA_MASK.nii.gz", "CTA_MASK_connected.nii.gz"] {
        assert_same_mask(&read_nifti(written.join(file)).unwrap(), &mask0, file);
    }
    assert!(!out.join(&pids[1]).join("CTA").join("CTA_MASK.nii.gz").exists());
}

#[test]
fn pipeline_imports_totalsegmentator_masks_checks_them_and_reruns_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cohort");
    let pids = phantom(&root, 3);
    let ts = dir.path().join("ts");
    // Patient 0 as a structure folder, patient 1 as an --ml file, patient 2 has none.
    let truth: Vec<Volume> = pids.iter().map(|pid| case(&root, pid).2).collect();
    write_structures(&ts.join(&pids[0]), &truth[0]);
    write_ml(&ts.join(format!("{}.nii.gz", pids[1])), &truth[1]);
    let run = || {
        let mut c = cta2mbf();
        c.args(["pipeline", "--in"]).arg(root.join("raw")).arg("--root").arg(&root).args(["--from", "segment"]);
        c.arg("--masks").arg(format!("totalsegmentator:{}", ts.display()));
        c.output().unwrap()
    };
    let out = run();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    let stage = |i: usize, s: &str| report["patients"][i]["stages"][s]["status"].as_str().unwrap().to_string();
    for i in 0..2 {
        assert_eq!((stage(i, "segment"), stage(i, "connected"), stage(i, "crop")), ("done".into(), "done".into(), "done".into()), "{log}");
        let mask = read_nifti(root.join("3.sorted_mask").join(&pids[i]).join("CTA/CTA_MASK.nii.gz")).unwrap();
        assert_same_mask(&mask, &truth[i], &pids[i]);
    }
    assert_eq!(stage(2, "segment"), "failed");
    let why = report["patients"][2]["stages"]["segment"]["reason"].as_str().unwrap();
    assert!(why.contains(&format!("holds no segmentation of patient {}", pids[2])), "{why}");
    // A changed structure file reruns that patient's segmentation and what follows; the other is up to date.
    let mut changed = truth[0].clone();
    changed.data.iter_mut().filter(|v| **v == 5.0).for_each(|v| *v = 0.0);
    write_structures(&ts.join(&pids[0]), &changed);
    let out = run();
    let log = text(&out);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(root.join("pipeline_report.json")).unwrap()).unwrap();
    let stage = |i: usize, s: &str| report["patients"][i]["stages"][s]["status"].as_str().unwrap().to_string();
    assert_eq!(stage(0, "segment"), "done", "{log}");
    // No aorta any more: QC stops the patient before myocardium.
    assert_eq!(stage(0, "connected"), "qc failed", "{log}");
    assert!(report["patients"][0]["stages"]["connected"]["reason"].as_str().unwrap().contains("aorta volume 0.0 ml"), "{log}");
    assert_eq!((stage(1, "segment"), stage(1, "crop")), ("skipped".into(), "skipped".into()), "{log}");
}
