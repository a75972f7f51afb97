//! The registry's one error type.

use ironclaw_contract::db::DbError;

/// Why a registry operation failed. Every failure the caller can act on is its own
/// variant, so the API layer can map them to status codes without parsing messages.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A referenced record does not exist (`what` is e.g. `"agent group"`).
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// A create found the record already present.
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    /// A value was refused by validation before it reached the database.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A stored row does not decode into a valid value: the file was edited behind
    /// the registry's back, or a bug wrote it. Reported, never panicked on.
    #[error("corrupt {table} row {key:?}: {reason}")]
    CorruptRow {
        table: &'static str,
        key: String,
        reason: String,
    },
    /// The registry file could not be opened (wrong key, wrong file kind, version…).
    #[error(transparent)]
    Db(#[from] DbError),
    /// An SQLite failure after open.
    #[error("registry database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The registry was called from inside one of its own `write` closures (which
    /// would deadlock); use the `RegistryTx` the closure was given.
    #[error("registry called from inside its own write transaction; use the RegistryTx")]
    Reentrant,
    /// The OS random source failed while minting an id.
    #[error("OS random source: {0}")]
    Rng(getrandom::Error),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> RegistryError {
    RegistryError::NotFound {
        what,
        id: id.into(),
    }
}

pub(crate) fn corrupt(
    table: &'static str,
    key: impl Into<String>,
    reason: impl std::fmt::Display,
) -> RegistryError {
    RegistryError::CorruptRow {
        table,
        key: key.into(),
        reason: reason.to_string(),
    }
}
