//! What the cohort-level DICOM stages share: checking that input and output folders are
//! apart, validating patient folder names, listing patient folders, copying a file atomically.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// True when `name` can be used as a patient folder name: non-empty, not `.` or `..`,
/// without a path separator or NUL.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Create `output` and make sure neither folder contains the other, so that a stage
/// never reads its own output nor writes into its input.
pub fn prepare_folders(input: &Path, output: &Path) -> Result<()> {
    let input_abs = input.canonicalize().map_err(|e| Error::io(input, e))?;
    if !input_abs.is_dir() {
        return Err(Error::format(input, "is not a folder"));
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let output_abs = output.canonicalize().map_err(|e| Error::io(output, e))?;
    if output_abs.starts_with(&input_abs) || input_abs.starts_with(&output_abs) {
        return Err(Error::invalid(format!(
            "the output folder {} and the input folder {} must not contain one another",
            output.display(),
            input.display()
        )));
    }
    Ok(())
}

/// The patient folders of `input` (sorted, with their names) and the entries that are not
/// usable patient folders, each with the reason.
pub fn patient_folders(input: &Path) -> Result<(Vec<(String, PathBuf)>, Vec<(PathBuf, String)>)> {
    let mut patients = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
        let entry = entry.map_err(|e| Error::io(input, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        match entry.file_name().to_str() {
            _ if !kind.is_dir() => ignored.push((path, "not a patient folder (a file or link directly under the input)".to_string())),
            Some(name) if is_safe_name(name) => patients.push((name.to_string(), path)),
            Some(_) => ignored.push((path, "patient folder name is not usable as a path component".to_string())),
            None => ignored.push((path, "patient folder name is not valid UTF-8".to_string())),
        }
    }
    patients.sort();
    ignored.sort();
    Ok((patients, ignored))
}

/// Copy `from` to `to` atomically (temporary name, then rename).
pub fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    crate::io::write_atomically(to, |tmp| std::fs::copy(from, tmp).map(|_| ()).map_err(|e| Error::io(from, e)))
}

/// Run `f` on a thread pool of `jobs` threads (rayon's default pool when `None`).
pub fn with_jobs<T: Send>(jobs: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match jobs {
        None => Ok(f()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| Error::invalid(format!("cannot start {n} worker threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in ["", ".", "..", "a/b", "..\\x", "a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        assert!(is_safe_name("1791414"));
    }

    #[test]
    fn nested_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("raw");
        std::fs::create_dir(&input).unwrap();
        assert!(prepare_folders(&input, &input.join("out")).is_err());
        assert!(prepare_folders(&input, dir.path()).is_err());
        prepare_folders(&input, &dir.path().join("0.ori_3")).unwrap();
    }
}
