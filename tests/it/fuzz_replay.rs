//! Corpus replay: every input in `fuzz/seeds/`, `fuzz/corpus/` and `fuzz/regressions/` goes
//! through the fuzz targets' entry points (`cta2mbf::fuzz::run`) on stable Rust, so that a
//! crash the fuzzers once found stays fixed. A reader may refuse an input; it must not panic.
//! The seeds written from valid files (fuzz/make_seeds.sh) must also still be accepted, which
//! shows the inputs reach the readers.

use crate::common::repo;
use cta2mbf::fuzz::{Target, run};
use std::path::PathBuf;

fn inputs(kind: &str, target: Target) -> Vec<PathBuf> {
    let dir = repo().join("fuzz").join(kind).join(target.name());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Seeds that come from valid files and must be accepted.
fn must_accept(target: Target, name: &str) -> bool {
    match target {
        Target::Nifti | Target::Config | Target::Annotation | Target::DicomSeries => true,
        Target::Checkpoint => name.starts_with("tiny"),
        Target::DicomFile => name.starts_with("phantom_"),
    }
}

#[test]
fn every_corpus_and_regression_input_is_read_without_a_panic() {
    let mut counts = Vec::new();
    for target in Target::ALL {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{} is empty (run fuzz/make_seeds.sh)", target.name());
        for path in &seeds {
            let name = path.file_name().unwrap().to_string_lossy();
            let result = run(target, &std::fs::read(path).unwrap());
            if must_accept(target, &name) {
                assert!(result.is_ok(), "{}: {:?}", path.display(), result.err());
            }
        }
        let mut n = seeds.len();
        for kind in ["corpus", "regressions"] {
            for path in inputs(kind, target) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(target, &data));
                assert!(outcome.is_ok(), "{} panicked", path.display());
                n += 1;
            }
        }
        counts.push(format!("{} {n}", target.name()));
    }
    println!("replayed: {}", counts.join(", "));
}
