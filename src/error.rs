//! The library's error type: every failure names the file (or argument) it is about.

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in cta2mbf, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system level failure (open, read, write, rename) on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file whose content is not what its format requires.
    #[error("{path}: {message}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A request that cannot be carried out with the given values (bad size, bad region, ...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// An [`Error::Invalid`] with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// Run `work`, turning a panic into an [`Error::Invalid`] that says it is a bug: the boundary
/// around one patient of a cohort command, so that an unforeseen failure becomes that patient's
/// failed row instead of ending the run for everyone.
pub fn panic_boundary<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::invalid(format!("internal error (a bug in cta2mbf, please report it): {message}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_results_pass_through() {
        let err = panic_boundary::<()>(|| panic!("index 7 out of range")).unwrap_err().to_string();
        assert!(err.contains("internal error") && err.contains("index 7 out of range"), "{err}");
        let err = panic_boundary::<()>(|| panic!("{} values", 3)).unwrap_err().to_string();
        assert!(err.contains("3 values"), "{err}");
        assert_eq!(panic_boundary(|| Ok(5)).unwrap(), 5);
        assert!(panic_boundary::<()>(|| Err(Error::invalid("plain"))).unwrap_err().to_string() == "plain");
    }
}
