//! The crate's one error type.
//!
//! No variant carries key material, plaintext or ciphertext: only paths, modes, lengths,
//! fingerprints (which are one-way) and session ids. Debug is derived, so this holds for
//! `{:?}` as well as for `Display`.

use std::path::PathBuf;

use ironclaw_contract::ids::SessionId;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{op} {p}: {source}", p = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{p} is {found}, not a regular file; refusing to use it (key files are never read \
         through symlinks)",
        p = .path.display()
    )]
    NotRegularFile { path: PathBuf, found: &'static str },

    #[error(
        "{p} has mode {mode:04o}, which lets group or other reach key material; fix it with \
         `chmod 600 {p}`",
        p = .path.display()
    )]
    LoosePermissions { path: PathBuf, mode: u32 },

    #[error(
        "master key file {p} is {len} bytes long; it must be exactly 32: put back the \
         master.key kept with your backups (`ironctl restore --master-key FILE`); without \
         it nothing in this state dir can be read",
        p = .path.display()
    )]
    WrongLength { path: PathBuf, len: u64 },

    #[error("{p} is {len} bytes long; the limit is {limit}", p = .path.display())]
    TooLarge { path: PathBuf, len: u64, limit: u64 },

    #[error("{p} was replaced while it was being opened; refusing it", p = .path.display())]
    FileChanged { path: PathBuf },

    #[error("the operating system's random number generator failed: {reason}")]
    Rng { reason: String },

    #[error("sealed key store {p} is not a valid store file: {reason}", p = .path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "sealed key store {p} has version {version}; this build reads version 1 only",
        p = .path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u64 },

    #[error(
        "sealed key store {p} was sealed by master key {store_fingerprint}, but the loaded \
         master key is {master_fingerprint}; refusing to open it (if a master rotation was \
         interrupted, open through KeyCustodian::load, which finishes it)",
        p = .path.display()
    )]
    WrongMaster {
        path: PathBuf,
        store_fingerprint: String,
        master_fingerprint: String,
    },

    #[error(
        "master key file {m} is missing but sealed key store {s} exists (sealed by master key \
         {store_fingerprint}); restore the master key from backup rather than creating a new one",
        m = .master_path.display(),
        s = .store_path.display()
    )]
    MasterMissing {
        master_path: PathBuf,
        store_path: PathBuf,
        store_fingerprint: String,
    },

    #[error(
        "master key file {m} holds master key {file_fingerprint}, but this custodian uses \
         {custodian_fingerprint}; refusing to rotate (restart to finish an interrupted rotation)",
        m = .master_path.display()
    )]
    MasterMismatch {
        master_path: PathBuf,
        file_fingerprint: String,
        custodian_fingerprint: String,
    },

    #[error(
        "interrupted master rotation cannot be resolved: sealed key store {s} was sealed by \
         master key {store_fingerprint}, which is neither {m} ({master_fingerprint}) nor \
         {m}.next ({next_fingerprint}); nothing was changed",
        s = .store_path.display(),
        m = .master_path.display()
    )]
    RotationUnresolved {
        master_path: PathBuf,
        store_path: PathBuf,
        store_fingerprint: String,
        master_fingerprint: String,
        next_fingerprint: String,
    },

    #[error(
        "the sealed key of session {session} does not open under the master key: the store \
         was tampered with or corrupted"
    )]
    Tampered { session: SessionId },

    #[error("sealing the key of session {session} failed")]
    Seal { session: SessionId },
}

/// A failed write of a key file is an I/O error like any other: the step, the path it
/// acted on and the OS error are kept. (When the file did land and only its directory
/// fsync failed, the custodian asks the [`ironclaw_hostfs::HostFsError`] before it
/// becomes this.)
impl From<ironclaw_hostfs::HostFsError> for KeyError {
    fn from(e: ironclaw_hostfs::HostFsError) -> Self {
        let (op, path, source) = e.into_parts();
        Self::Io { op, path, source }
    }
}

impl KeyError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
