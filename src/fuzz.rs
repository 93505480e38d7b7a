//! Entry points for the fuzzers in `fuzz/` and for the corpus-replay test: each hands arbitrary
//! bytes to one of the readers that take files from outside (NIfTI, DICOM, checkpoints,
//! JSON configs, annotation tables), through the same public function a user's file reaches.
//! A reader may accept the bytes or refuse them with an error; it must not panic, hang or
//! allocate more than the input could describe (the bounds are stated on each reader).
//!
//! The bytes are written to a scratch file first, because the readers take paths (as the
//! command line gives them); the scratch folder is removed afterwards.

use crate::config::RunConfig as _;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One fuzzed reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `io::nifti::read_nifti_image`: `.nii` or `.nii.gz` (told apart by content).
    Nifti,
    /// One DICOM file: its header as `sort` reads it, then the file as a one-slice series
    /// (header and pixel data of any transfer syntax the reader supports).
    DicomFile,
    /// A DICOM series folder: the input split at [`SERIES_SEPARATOR`] into up to 8 files.
    DicomSeries,
    /// A trained network in one file (`.pth`, safetensors or burnpack, told apart by
    /// content), loaded on the CPU as a generator, else as the reference's chamber network.
    Checkpoint,
    /// A JSON settings file; the first byte picks which: generator training, segmentation
    /// training or registration.
    Config,
    /// The annotation table; the first byte picks CSV or a spreadsheet (xlsx).
    Annotation,
}

impl Target {
    /// Every target, in the order of [`Target::name`].
    pub const ALL: [Target; 6] = [Target::Nifti, Target::DicomFile, Target::DicomSeries, Target::Checkpoint, Target::Config, Target::Annotation];

    /// The fuzz target's name (its binary in `fuzz/` and its corpus folder).
    pub fn name(self) -> &'static str {
        match self {
            Target::Nifti => "nifti",
            Target::DicomFile => "dicom_file",
            Target::DicomSeries => "dicom_series",
            Target::Checkpoint => "checkpoint",
            Target::Config => "config",
            Target::Annotation => "annotation",
        }
    }
}

/// Separates the files of a [`Target::DicomSeries`] input.
pub const SERIES_SEPARATOR: &[u8] = b"\0CTA2MBF-NEXT-FILE\0";

/// Most files a [`Target::DicomSeries`] input is split into.
const MAX_SERIES_FILES: usize = 8;

/// A fresh scratch folder for one input (unique per process and call).
fn scratch() -> Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("cta2mbf-fuzz-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// Write `data` to `path`.
fn put(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| Error::io(path, e))
}

/// Feed `data` to `target`'s reader; `Ok` when the reader accepted it, its error when not.
pub fn run(target: Target, data: &[u8]) -> Result<()> {
    let dir = scratch()?;
    let result = read(target, data, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn read(target: Target, data: &[u8], dir: &Path) -> Result<()> {
    match target {
        Target::Nifti => {
            let path = dir.join("image.nii");
            put(&path, data)?;
            crate::io::nifti::read_nifti_image(&path).map(drop)
        }
        Target::DicomFile => {
            let series = dir.join("series");
            std::fs::create_dir(&series).map_err(|e| Error::io(&series, e))?;
            let path = series.join("slice.dcm");
            put(&path, data)?;
            crate::io::dicom::SliceHeader::read(&path)?;
            crate::io::dicom::read_series(&series).map(drop)
        }
        Target::DicomSeries => {
            let mut rest = data;
            let mut k = 0;
            while k < MAX_SERIES_FILES {
                let (file, next) = match find(rest, SERIES_SEPARATOR) {
                    Some(i) if k + 1 < MAX_SERIES_FILES => (&rest[..i], Some(&rest[i + SERIES_SEPARATOR.len()..])),
                    _ => (rest, None),
                };
                put(&dir.join(format!("{k:02}.dcm")), file)?;
                k += 1;
                match next {
                    Some(n) => rest = n,
                    None => break,
                }
            }
            crate::io::dicom::read_series(dir).map(drop)
        }
        Target::Checkpoint => {
            let path = dir.join("net_G");
            put(&path, data)?;
            let device = burn::tensor::Device::flex();
            // The generator's loader, then the same bytes as the reference's chamber network
            // (both read one-file checkpoints); the generator's refusal is the one returned.
            let generator = crate::interop::load_generator_file(&path, &device).map(drop);
            match generator {
                Ok(()) => Ok(()),
                Err(_) if crate::interop::load_segmentation_file(&path, &device).is_ok() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Target::Config => {
            let (&pick, json) = data.split_first().unwrap_or((&0, &[]));
            let path = dir.join("config.json");
            put(&path, json)?;
            match pick % 3 {
                0 => crate::config::TrainConfig::load(&path)?.validate(),
                1 => crate::config::SegConfig::load(&path)?.validate(),
                _ => crate::register::Settings::read(&path).map(drop),
            }
        }
        Target::Annotation => {
            let (&pick, table) = data.split_first().unwrap_or((&0, &[]));
            let path = dir.join(if pick % 2 == 0 { "annotation.csv" } else { "annotation.xlsx" });
            put(&path, table)?;
            crate::preprocess::annotation::Annotation::read(&path).map(drop)
        }
    }
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_by_every_reader_and_scratch_is_removed() {
        for target in Target::ALL {
            assert!(run(target, b"\x01not a file of any kind").is_err(), "{}", target.name());
        }
    }
}
