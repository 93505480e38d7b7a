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
