//! Atomic file creation: write under a temporary name in the target folder, then rename.

use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary sibling used while `path` is being written. It keeps `path`'s file name
/// as its suffix, so extension-sensitive writers (".nii.gz") behave the same.
fn temporary_sibling(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{}-{}", std::process::id(), n, name.to_string_lossy()));
    Ok((dir, tmp))
}

/// Create `path` by calling `write` on a temporary file in the same folder and renaming it
/// into place, so that `path` is either absent, its old content, or complete — never half
/// written. The parent folder is created when missing; the temporary file is removed on error.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (dir, tmp) = temporary_sibling(path)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if path.is_dir() {
        return Err(Error::format(path, "is a directory; cannot write a file there"));
    }
    let result = write(&tmp).and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    // An error about the temporary file (a full disk, say) names the file being written.
    result.map_err(|e| match e {
        Error::Io { path: p, source } if p == tmp => Error::io(path, source),
        Error::Format { path: p, message } if p == tmp => Error::format(path, message),
        other => other,
    })
}

/// Write `bytes` to `path` atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.txt");
        let err = write_atomically(&target, |tmp| {
            fs::write(tmp, b"partial").unwrap();
            Err(Error::io(tmp, std::io::Error::other("boom")))
        });
        assert!(!target.exists());
        let err = err.unwrap_err().to_string();
        assert!(err.starts_with(&target.display().to_string()), "the error names the file being written: {err}");
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
        write_bytes_atomically(&target, b"done").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"done");
    }
}
