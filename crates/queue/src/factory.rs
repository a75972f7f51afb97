//! Per-session queue files on disk.
//!
//! Layout (from the contract's path table):
//!
//! ```text
//! <state>/sessions/<id>/            0700
//!     inbound/inbound.db            0600  host writes, sandbox reads (dir mounted ro)
//!     outbound/outbound.db          0600  sandbox writes, host reads (dir mounted rw)
//! ```
//!
//! Both files are created before a sandbox starts, so either side's read-only open
//! works whatever the start order. An existing outbound file is never opened for
//! writing by the host — a live sandbox may be writing it — only verified by a read.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ironclaw_contract::db::{open_writer, Cipher, DbError};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::sandbox_queue::EncryptedInboundReader;
use ironclaw_contract::schema::QueueFile;

use crate::{EncryptedInboundWriter, EncryptedOutboundReader};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Why a session's queues could not be provisioned or removed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> ProvisionError + 'a {
    move |source| ProvisionError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Creates and opens the queue files of sessions under one state directory.
#[derive(Debug, Clone)]
pub struct QueueFactory {
    layout: HostLayout,
}

impl QueueFactory {
    pub fn new(layout: HostLayout) -> Self {
        Self { layout }
    }

    pub fn layout(&self) -> &HostLayout {
        &self.layout
    }

    /// Creates the session's directories and both queue files (idempotent: existing
    /// files and their rows are kept, after checking they open with `cipher`).
    pub fn provision(&self, id: &SessionId, cipher: &Cipher) -> Result<(), ProvisionError> {
        // The shared parent is created private, but an existing one keeps the search
        // bit a sandbox runtime gave it: a runsc gofer must traverse it to every other
        // session, and resetting it here (a new chat routed while other sessions
        // launch) cut those launches off.
        make_shared_parent(&self.layout.sessions_dir())?;
        for dir in [
            self.layout.session_dir(id),
            self.layout.inbound_dir(id),
            self.layout.outbound_dir(id),
        ] {
            make_private_dir(&dir)?;
        }
        let inbound = self.layout.inbound_db(id);
        precreate(&inbound)?;
        drop(open_writer(&inbound, cipher, QueueFile::Inbound)?);

        let outbound = self.layout.outbound_db(id);
        if precreate(&outbound)? {
            drop(open_writer(&outbound, cipher, QueueFile::Outbound)?);
        } else {
            EncryptedOutboundReader::open(&outbound, cipher.clone())?;
        }
        Ok(())
    }

    /// The host's writer of the session's inbound queue.
    pub fn inbound_writer(
        &self,
        id: &SessionId,
        cipher: &Cipher,
    ) -> Result<EncryptedInboundWriter, DbError> {
        let path = self.layout.inbound_db(id);
        if !path.exists() {
            // The writer would create it; an unprovisioned session is a caller bug.
            return Err(DbError::NotProvisioned { path });
        }
        EncryptedInboundWriter::open(&path, cipher)
    }

    /// A read-only view of the session's inbound queue (the sweep's due scan).
    pub fn inbound_reader(
        &self,
        id: &SessionId,
        cipher: Cipher,
    ) -> Result<EncryptedInboundReader, DbError> {
        EncryptedInboundReader::open(self.layout.inbound_db(id), cipher)
    }

    /// The host's reader of the session's outbound queue.
    pub fn outbound_reader(
        &self,
        id: &SessionId,
        cipher: Cipher,
    ) -> Result<EncryptedOutboundReader, DbError> {
        EncryptedOutboundReader::open(self.layout.outbound_db(id), cipher)
    }

    /// Deletes the session's queue files and directories (end of session).
    pub fn remove(&self, id: &SessionId) -> Result<(), ProvisionError> {
        let dir = self.layout.session_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir, "remove session directory")(e)),
        }
    }
}

/// Creates `dir` with mode 0700, or tightens an existing one to 0700.
fn make_private_dir(dir: &Path) -> Result<(), ProvisionError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir, "create directory")(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir, "stat directory"))?;
    if !meta.is_dir() {
        return Err(io(dir, "check directory")(std::io::Error::new(
            ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )));
    }
    // The umask may have cleared bits we want, never added ones we do not; but an
    // existing directory may be looser than ours.
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(io(dir, "set directory mode"))
}

/// Creates `dir` 0700 if missing; an existing one loses any read or write bits for
/// group and others, and keeps its search bits.
fn make_shared_parent(dir: &Path) -> Result<(), ProvisionError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir, "create directory")(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir, "stat directory"))?;
    if !meta.is_dir() {
        return Err(io(dir, "check directory")(std::io::Error::new(
            ErrorKind::AlreadyExists,
            "exists and is not a directory",
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    let tightened = mode & !0o066;
    if tightened != mode {
        std::fs::set_permissions(dir, Permissions::from_mode(tightened))
            .map_err(io(dir, "set directory mode"))?;
    }
    Ok(())
}

/// Creates an empty 0600 file if none exists (SQLite would otherwise create it with its
/// default 0644). Returns whether the file is new — created now, or still empty from an
/// earlier attempt that failed before writing the schema.
fn precreate(path: &Path) -> Result<bool, ProvisionError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
                .map_err(io(path, "set file mode"))?;
            let len = std::fs::metadata(path)
                .map_err(io(path, "stat file"))?
                .len();
            Ok(len == 0)
        }
        Err(e) => Err(io(path, "create file")(e)),
    }
}
