//! The pipeline's stage contract (`PatientStage`): each stage, run by `pipeline --from S --to S`
//! in a fresh folder that holds only the files it declares as its inputs for one phantom
//! patient, writes exactly the files of its declared outputs in a full run, byte for byte. A
//! stage that read a file it does not declare would fail there (the file is missing) or write
//! something else.

use crate::common::{self, cta2mbf, repo};
use burn::tensor::Device;
use cta2mbf::cohort::{self, Cohort};
use cta2mbf::pipeline::{Options, PipelineReport, Stage, run_pipeline, stages};
use cta2mbf::preprocess::mask_qc::QcPolicy;
use cta2mbf::preprocess::stage::StagePath;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The stages `from..=to` over `base/{P/raw, R}`, with the annotation table (for `extract`)
/// and the model under `base`.
fn options(base: &Path, from: Stage, to: Stage) -> Options {
    Options {
        raw: base.join("P").join(cohort::RAW),
        root: base.join("R"),
        annotation: (from..=to).contains(&Stage::Extract).then(|| base.join("P").join(cohort::ANNOTATION).join(cohort::ANNOTATION_CSV)),
        seg_model: base.join("model"),
        masks: None,
        from,
        to,
        force: false,
        register: cta2mbf::register::Settings::default(),
        strict: false,
        qc: QcPolicy::default(),
    }
}

fn run(o: &Options) -> PipelineReport {
    let report = run_pipeline(o, &Device::flex(), &cta2mbf::distributed::Group::solo(), &|_| {}).unwrap();
    assert_eq!(report.failed(), 0, "{:?}", report.patients);
    report
}

/// Copy `from` to `to`, creating its folder.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// A file's content to compare: the bytes, except for the registration report, whose timings
/// are left out and whose paths are made relative to `base`.
fn content(path: &Path, base: &Path) -> Vec<u8> {
    if path.file_name().unwrap() != cohort::registration::REPORT {
        return std::fs::read(path).unwrap();
    }
    fn normalise(v: Value, base: &str) -> Value {
        match v {
            Value::Object(m) => Value::Object(m.into_iter().filter(|(k, _)| !k.ends_with("seconds")).map(|(k, v)| (k, normalise(v, base))).collect()),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| normalise(v, base)).collect()),
            Value::String(s) => Value::String(s.replace(base, "BASE")),
            other => other,
        }
    }
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::to_vec(&normalise(v, &base.display().to_string())).unwrap()
}

#[test]
fn each_stage_reads_only_what_it_declares() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let out = cta2mbf().args(["phantom", "--dicom", "--cases", "1", "--size", "64,64,48", "--seed", "3", "--out"]).arg(full.join("P")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = repo().join("models/chamber_seg_phantom");
    for f in common::walk(&model) {
        copy(&f, &full.join("model").join(f.strip_prefix(&model).unwrap()));
    }
    let o = options(&full, Stage::Sort, Stage::Crop);
    run(&o);
    let pid = Cohort::new(&o.root).patients(cohort::MBF_MYOCARDIUM).unwrap().remove(0);
    let declared = stages(&o, &Device::flex()).unwrap();
    for stage in Stage::ALL {
        let s = &*declared[stage as usize];
        let alone = dir.path().join(stage.name());
        let inputs = StagePath::files(&s.inputs(&Cohort::new(&o.root), &pid).unwrap()).unwrap();
        assert!(!inputs.is_empty(), "{}", stage.name());
        for input in &inputs {
            let rel = input.strip_prefix(&full).unwrap_or_else(|_| panic!("{} reads {} outside the run's folder", stage.name(), input.display()));
            copy(input, &alone.join(rel));
        }
        let report = run(&options(&alone, stage, stage));
        assert!(matches!(report.patients[0].1[0], cta2mbf::pipeline::Outcome::Done { .. }), "{}: {:?}", stage.name(), report.patients);
        let outputs = |base: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let files = StagePath::files(&s.outputs(&Cohort::new(base.join("R")), &pid)).unwrap();
            files.iter().map(|f| (f.strip_prefix(base).unwrap().to_path_buf(), content(f, base))).collect()
        };
        let (expected, got) = (outputs(&full), outputs(&alone));
        assert!(!expected.is_empty(), "{}", stage.name());
        assert_eq!(got.iter().map(|f| &f.0).collect::<Vec<_>>(), expected.iter().map(|f| &f.0).collect::<Vec<_>>(), "{}", stage.name());
        for ((path, a), (_, b)) in got.iter().zip(&expected) {
            assert!(a == b, "{}: {} differs from the full run's", stage.name(), path.display());
        }
        eprintln!("{}: {} declared input files, {} output files as in the full run", stage.name(), inputs.len(), got.len());
    }
}
