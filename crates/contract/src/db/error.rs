//! Typed failures of opening and reading a queue file.

use std::path::PathBuf;

/// Why a queue file could not be opened or read. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: queue file does not exist (the session is not provisioned)")]
    NotProvisioned { path: PathBuf },
    #[error("{path}: the session key does not decrypt this file (wrong key, or not an IronClaw queue file)")]
    WrongKey { path: PathBuf },
    #[error("{path}: not an encrypted IronClaw file: {reason}")]
    NotOurFile { path: PathBuf, reason: String },
    #[error("{path}: this is the {found} file, but the {expected} one was expected")]
    WrongFile {
        path: PathBuf,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{path}: {file} schema version {found} is newer than this build supports ({supported}); upgrade IronClaw")]
    SchemaTooNew {
        path: PathBuf,
        file: &'static str,
        found: i64,
        supported: i64,
    },
    #[error(
        "{path}: unknown {file} schema version {found} (this build reads version {supported})"
    )]
    UnknownSchema {
        path: PathBuf,
        file: &'static str,
        found: i64,
        supported: i64,
    },
    #[error("{path}: database is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: no stable snapshot after {attempts} attempts (the writer kept committing, or a crashed writer left a journal): {last}")]
    Unstable {
        path: PathBuf,
        attempts: u32,
        last: String,
    },
    #[error("{path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
}

impl DbError {
    /// True for failures that mean the file's bytes are not what they should be, as
    /// opposed to a missing file or a busy writer. The sandbox exits after a streak of
    /// these so the host can relaunch it on a fresh mount.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            DbError::Corrupt { .. } | DbError::NotOurFile { .. } | DbError::WrongKey { .. }
        )
    }

    pub(crate) fn sqlite(
        path: &std::path::Path,
        op: &'static str,
        source: rusqlite::Error,
    ) -> Self {
        DbError::Sqlite {
            path: path.to_owned(),
            op,
            source,
        }
    }
}

/// Maps an SQLite failure of operation `op` on `path` into a queue error.
pub fn sqlite_failure<'a>(
    path: &'a std::path::Path,
    op: &'static str,
) -> impl Fn(rusqlite::Error) -> crate::queue::QueueError + 'a {
    move |source| crate::queue::QueueError::Db(DbError::sqlite(path, op, source))
}
