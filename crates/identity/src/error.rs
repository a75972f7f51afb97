//! The one error type of the crate.

use std::path::PathBuf;

/// Why an identity operation failed.
///
/// No variant ever carries a token or a full token digest, so an error can be logged or
/// returned to a CLI as is.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid operator name {name:?}: {reason} (allowed: [a-z0-9][a-z0-9_-]{{0,31}})")]
    InvalidName { name: String, reason: &'static str },

    #[error("operator {name:?} already has an active token; revoke or rotate it instead")]
    NameTaken { name: String },

    #[error("operator {name:?} has no active token")]
    NoActiveToken { name: String },

    #[error("the provided token {reason}")]
    WeakToken { reason: &'static str },

    #[error("the provided token is already the active token of operator {name:?}")]
    TokenInUse { name: String },

    #[error(
        "token file {} has mode {mode:04o}, which lets group or others access it; \
         fix it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    #[error("token file {} is a symbolic link; refusing to follow it", path.display())]
    Symlink { path: PathBuf },

    #[error("token file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error("token file {} was replaced while it was being opened; try again", path.display())]
    Replaced { path: PathBuf },

    #[error("token file {} is {len} bytes; the limit is {max}", path.display())]
    TooLarge { path: PathBuf, len: u64, max: u64 },

    #[error(
        "token file {} has version {version}; this build understands version 1 only",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u64 },

    #[error(
        "token file {} is corrupt ({reason}); refusing to treat it as empty — \
         restore it from a backup or move it aside to start over",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    #[error("token file {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },

    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
}
