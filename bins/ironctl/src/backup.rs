//! `ironctl backup` and `ironctl restore`: a consistent copy of a state directory taken
//! while the daemon runs, and its restore into an empty directory.
//!
//! For: the operator on the daemon's host (root), who can already read the state dir.
//! The archive is a plain tar whose first member is a manifest
//! ([`MANIFEST_NAME`]): every entry with its mode, owner, size and SHA-256, the master
//! key's fingerprint, and the audit chain's head at backup time.
//!
//! How it is consistent without stopping the daemon ([`snapshot`]):
//! - each SQLCipher database (`registry.db`, `changes.db`, every session's queues) is
//!   copied byte for byte and kept only if no commit overlapped the copy — the
//!   contract's lock-free read protocol (no journal before or after, page 1 and the
//!   file's identity unchanged), which needs no key and also holds for queue files a
//!   sandbox writes across the gVisor boundary, where file locks do not reach;
//! - databases first, then the audit log (cut at its last complete record), then the
//!   key pair last (`master.key` and `sealed-keys` read until they agree), so every
//!   copied database has its key and every decision in a copied database has its audit
//!   record;
//! - the copy is then verified before the archive exists: the key store opens under the
//!   master key, every database passes `PRAGMA cipher_integrity_check` and
//!   `quick_check` under its own key, and the audit chain verifies.
//!
//! Master key: included by default (a backup alone restores everything), so the archive
//! is as secret as the keys: it is created 0600, never over an existing file, and the
//! command says so loudly. `--exclude-master-key` leaves it out; `restore` then needs
//! `--master-key FILE`, checked against the fingerprint in the manifest.
//!
//! Not for: backups over the network API (the master key never crosses the API), nor
//! incremental or remote storage (pipe the file wherever it goes). Caches the daemon
//! rebuilds (`images/`, `bundles/`, `runsc/`) and the session-key tmpfs mounts
//! (`keys/`) are left out. Agent workspaces are copied file by file, each file whole,
//! but not as one instant: stop a group's sessions for an exact copy of its workspace.
//!
//! What a sandbox writes (its `outbound/` and `heartbeat/` directories, its group's
//! workspace) can never stop a backup: only the host's databases and the outbound
//! queues are databases (a workspace `*.db` is a plain file), and an outbound queue
//! that does not copy or verify, a symlink in its place, a tree deeper than 64 levels
//! or a file over the size limit is left out, with a warning and a `left_out` entry
//! in the report and the manifest. The host's databases must verify, or the backup
//! fails. Verification never follows a symlink in a database's place.

mod fsx;
mod restore;
mod snapshot;

use std::path::{Path, PathBuf};

use ironclaw_contract::db::{read_snapshot, Cipher, SnapshotPolicy};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::schema::{FileSchema, QueueFile};
use ironclaw_keys::{HostFile, KeyCustodian, KeyError, MasterKey, MASTER_KEY_LEN};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use restore::{restore, RestoreOptions};
pub use snapshot::{backup, BackupOptions};

/// The first member of every archive.
pub const MANIFEST_NAME: &str = "ironclaw-backup.json";
const FORMAT: &str = "ironclaw-backup";
const FORMAT_VERSION: u32 = 1;

/// Why a backup or restore did not happen. Nothing is left behind on any of these: a
/// failed backup leaves no archive, a failed restore leaves the target as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The request cannot be done as asked (exit 2): the output exists, the target is
    /// not empty, the master key is missing, ….
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} kept changing while it was copied ({attempts} attempts; last: {last})")]
    Unstable {
        path: PathBuf,
        attempts: u32,
        last: String,
    },
    #[error("key custody: {0}")]
    Keys(#[from] KeyError),
    /// The copy (or the restored directory) does not check out.
    #[error("verification failed: {0}")]
    Verify(String),
    /// The archive is not one `ironctl backup` wrote, or it was damaged.
    #[error("archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
}

impl BackupError {
    fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> BackupError {
        let path = path.to_owned();
        move |source| BackupError::Io { path, op, source }
    }
}

/// What kind of thing an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// One file, directory or symlink under the state dir, as archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative to the state dir, `/`-separated, normal components only.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target, as text (never followed by backup or restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The audit chain's head when the backup was taken: restore checks the restored log
/// still ends exactly there (a truncated log would otherwise verify as a shorter chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchor {
    pub records: u64,
    pub last_seq: u64,
    pub last_hash: String,
}

/// The archive's first member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    pub created_by: String,
    pub source_state_dir: String,
    /// The state dir's own mode and owner.
    pub root_mode: u32,
    pub root_uid: u32,
    pub root_gid: u32,
    pub master_key_included: bool,
    /// Safe to show: identifies the master key without revealing it.
    pub master_key_fingerprint: String,
    pub audit: AuditAnchor,
    pub entries: Vec<Entry>,
    /// What was not copied, and why (absent when nothing was: archives that need no
    /// such list stay readable by earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// What [`verify_state`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateCheck {
    /// Databases that passed their integrity checks under their own keys.
    pub databases: usize,
    /// Session directories seen.
    pub sessions: usize,
    pub audit_records: u64,
    pub audit_last_seq: u64,
    pub audit_last_hash: String,
}

/// Why [`verify_state`] failed. `MissingKey` is separate because a backup can explain
/// it: the session ended (and its key was destroyed) while the backup ran.
#[derive(Debug)]
enum StateError {
    MissingKey(SessionId),
    /// A database a sandbox writes (a session's outbound queue) is not a regular file
    /// or does not check out: a backup leaves it out, a restore fails.
    Sandbox {
        path: PathBuf,
        reason: String,
    },
    Other(BackupError),
}

impl From<BackupError> for StateError {
    fn from(e: BackupError) -> Self {
        StateError::Other(e)
    }
}

/// The master key's bytes, wiped when dropped.
pub(crate) struct MasterBytes(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterBytes {
    /// Parses a master key file's contents (exactly 32 bytes).
    fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, BackupError> {
        let mut k = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if bytes.len() != MASTER_KEY_LEN {
            return Err(BackupError::Refused(format!(
                "{} is {} bytes long; a master key is exactly {MASTER_KEY_LEN}",
                path.display(),
                bytes.len()
            )));
        }
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }

    fn key(&self) -> MasterKey {
        MasterKey::from_bytes(*self.0)
    }

    fn fingerprint(&self) -> String {
        self.key().fingerprint()
    }
}

/// Reads a master key file given on the command line (`restore --master-key`): a
/// regular file, owner-only, exactly 32 bytes.
fn read_master_file(path: &Path) -> Result<MasterBytes, BackupError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(BackupError::io(path, "stat"))?;
    if !meta.is_file() {
        return Err(BackupError::Refused(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(BackupError::Refused(format!(
            "{} is readable by group or others; it is a master key: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(BackupError::io(path, "read"))?);
    MasterBytes::from_slice(path, &bytes)
}

/// Whether `path` (below `root`) is a regular file, reached through directories only:
/// `Ok(false)` when it (or a directory on the way) does not exist, an error naming
/// what is wrong when anything on the way is a symlink or the file is not a regular
/// file. Nothing is followed: a database replaced by a symlink is never opened.
fn regular_file(root: &Path, path: &Path) -> Result<bool, String> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| format!("{} is outside {}", path.display(), root.display()))?;
    let mut at = root.to_owned();
    let parts: Vec<_> = rel.iter().collect();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("{}: {e}", at.display())),
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symlink", at.display()));
        }
        if last && !meta.is_file() {
            return Err(format!("{} is not a regular file", at.display()));
        }
        if !last && !meta.is_dir() {
            return Err(format!("{} is not a directory", at.display()));
        }
    }
    Ok(true)
}

/// Checks a complete state dir (a backup's staging copy, or a restored dir): the key
/// store opens under `master`, every database passes its integrity checks under its
/// own key, and the audit chain verifies. Opens nothing for writing.
fn verify_state(dir: &Path, master: &MasterBytes) -> Result<StateCheck, StateError> {
    let layout = HostLayout::new(dir);
    let keys = KeyCustodian::open(&layout.sealed_keys(), master.key()).map_err(|e| {
        BackupError::Verify(format!(
            "the key store does not open under master key {}: {e}",
            master.fingerprint()
        ))
    })?;
    let mut check = StateCheck::default();
    for (path, file, kind) in [
        (
            layout.registry_db(),
            HostFile::Registry,
            &ironclaw_registry::REGISTRY_FILE,
        ),
        (
            layout.changes_db(),
            HostFile::ChangeStore,
            &ironclaw_gateway::CHANGES_FILE,
        ),
    ] {
        if regular_file(dir, &path).map_err(BackupError::Verify)? {
            let key = keys
                .existing_host_file_key(file)
                .map_err(BackupError::from)?
                .ok_or_else(|| {
                    BackupError::Verify(format!(
                        "{}: its key ({}) is not in sealed-keys",
                        path.display(),
                        file.key_name()
                    ))
                })?;
            check_db(&path, &Cipher::Key(key), kind)?;
            check.databases += 1;
        }
    }
    let sessions = layout.sessions_dir();
    if sessions.exists() {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&sessions).map_err(BackupError::io(&sessions, "list"))? {
            let e = e.map_err(BackupError::io(&sessions, "list"))?;
            let name = e.file_name();
            let id = name
                .to_str()
                .and_then(|n| SessionId::new(n).ok())
                .ok_or_else(|| {
                    BackupError::Verify(format!("{}: not a session id", e.path().display()))
                })?;
            ids.push(id);
        }
        ids.sort();
        for id in ids {
            check.sessions += 1;
            let inbound = layout.inbound_db(&id);
            let outbound = layout.outbound_db(&id);
            let mut present = Vec::new();
            if regular_file(dir, &inbound).map_err(BackupError::Verify)? {
                present.push((inbound, QueueFile::Inbound));
            }
            // The sandbox writes its outbound directory: what is there is its doing.
            match regular_file(dir, &outbound) {
                Ok(true) => present.push((outbound, QueueFile::Outbound)),
                Ok(false) => {}
                Err(reason) => {
                    return Err(StateError::Sandbox {
                        path: outbound,
                        reason,
                    })
                }
            }
            if present.is_empty() {
                continue;
            }
            let key = keys
                .get(&id)
                .map_err(BackupError::from)?
                .ok_or_else(|| StateError::MissingKey(id.clone()))?;
            let cipher = Cipher::Key(key);
            for (path, kind) in present {
                match check_db(&path, &cipher, kind) {
                    Ok(()) => check.databases += 1,
                    Err(e) if kind == QueueFile::Outbound => {
                        return Err(StateError::Sandbox {
                            path,
                            reason: e.to_string(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let audit = layout.audit_log();
    let report = ironclaw_audit::verify(&audit)
        .map_err(|e| BackupError::Verify(format!("{}: {e}", audit.display())))?;
    check.audit_records = report.records;
    check.audit_last_seq = report.last_seq;
    check.audit_last_hash = report.last_hash;
    Ok(check)
}

/// Opens one database under `cipher` as the file kind it must be, and has SQLCipher
/// check every page's MAC and SQLite the b-tree structure.
fn check_db(path: &Path, cipher: &Cipher, kind: impl FileSchema) -> Result<(), BackupError> {
    let problems = read_snapshot(path, cipher, kind, SnapshotPolicy::default(), |conn| {
        let mut out: Vec<String> = conn
            .prepare("PRAGMA cipher_integrity_check")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if quick != "ok" {
            out.push(quick);
        }
        Ok(out)
    })
    .map_err(|e| BackupError::Verify(format!("{}: {e}", path.display())))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BackupError::Verify(format!(
            "{}: {}",
            path.display(),
            problems.join("; ")
        )))
    }
}
