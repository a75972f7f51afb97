//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why a host file was not written.
///
/// Every variant keeps the operating system's error as its source, and the path the
/// failing step acted on (the temporary file, the target or the directory).
#[derive(Debug, thiserror::Error)]
pub enum HostFsError {
    /// A step before the file was in place failed: the target, if it existed, still
    /// has its old contents, and no temporary file is left.
    #[error("{op} {p}: {source}", p = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The new file is in place, and every reader sees it, but the directory could not
    /// be fsynced: after a crash the old name (or no file) may come back.
    #[error(
        "fsync directory {d}: {source} ({p} is written, but may not survive a crash)",
        d = .dir.display(),
        p = .path.display()
    )]
    NotDurable {
        /// The file that was written.
        path: PathBuf,
        /// The directory whose fsync failed.
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl HostFsError {
    /// True if the new file is in place despite the error (only the directory fsync
    /// failed). A caller that mirrors the file in memory must then take the new
    /// contents, or a later write could bring back what this one replaced.
    pub fn in_place(&self) -> bool {
        matches!(self, Self::NotDurable { .. })
    }

    /// The failed step, the path it acted on and the OS error, for callers that fold
    /// this into their own I/O variant. A [`HostFsError::NotDurable`] becomes
    /// `("fsync directory", <dir>, error)`.
    pub fn into_parts(self) -> (&'static str, PathBuf, io::Error) {
        match self {
            Self::Io { op, path, source } => (op, path, source),
            Self::NotDurable { dir, source, .. } => ("fsync directory", dir, source),
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
