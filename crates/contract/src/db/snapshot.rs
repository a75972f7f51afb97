//! The read protocol for a file whose writer is on the other side of a gVisor boundary.
//!
//! File locks do not cross the sandbox boundary (RUNSC-NOTES), so a reader cannot stop
//! the writer from committing while it reads, and SQLite's own locking cannot tell it
//! that happened. The protocol below makes that safe without locks:
//!
//! 1. fingerprint the database file: identity, length and the raw (encrypted) bytes of
//!    page 1;
//! 2. if the writer's rollback journal exists, a commit may be in progress → retry;
//! 3. open a fresh read-only, lock-free connection and read inside one transaction;
//! 4. if the journal exists now, or the fingerprint changed → discard the result, retry.
//!
//! Why this is sufficient: in `journal_mode=DELETE` the writer creates the journal
//! before it changes any page of the database file and deletes it only after the last
//! page is written, and every commit rewrites page 1 (the change counter; SQLCipher
//! re-encrypts it with a fresh IV, so its bytes always change). A read that saw no
//! journal at step 2 started outside any commit's write phase; one that sees no journal
//! at step 4 and an unchanged page 1 overlapped no commit that started after step 1.
//!
//! The reader never rolls a journal back: it is opened read-only, so SQLite answers a
//! "hot" journal with `SQLITE_READONLY_ROLLBACK`, which is retried here — only the
//! writer, on its own side, may recover a crashed commit. Busy, hot-journal and
//! corrupt-page errors are retried; a persistent failure that is stable across two
//! validated attempts is returned as what the file really is (wrong key, corrupt, …).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::open::{
    check_length, check_schema, classify, open_reader, Cipher, SchemaState, CIPHER_PAGE_SIZE,
};
use super::DbError;
use crate::schema::{FileKind, FileSchema};

/// How hard a reader tries before reporting [`DbError::Unstable`].
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    pub max_attempts: u32,
    /// Upper bound of the (exponential, jittered) pause between attempts.
    pub max_backoff: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 60,
            max_backoff: Duration::from_millis(20),
        }
    }
}

/// The rollback journal SQLite keeps next to `db` while a commit is in progress.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-journal");
    PathBuf::from(s)
}

#[derive(PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    page1: Vec<u8>,
}

impl Fingerprint {
    fn take(path: &Path) -> Result<Self, DbError> {
        let io = |op, source: std::io::Error| {
            if source.kind() == ErrorKind::NotFound {
                DbError::NotProvisioned {
                    path: path.to_owned(),
                }
            } else {
                DbError::Io {
                    path: path.to_owned(),
                    op,
                    source,
                }
            }
        };
        let f = File::open(path).map_err(|e| io("open", e))?;
        let meta = f.metadata().map_err(|e| io("stat", e))?;
        let mut page1 = Vec::with_capacity(CIPHER_PAGE_SIZE as usize);
        f.take(u64::from(CIPHER_PAGE_SIZE))
            .read_to_end(&mut page1)
            .map_err(|e| io("read page 1", e))?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            page1,
        })
    }
}

fn journal_exists(path: &Path) -> Result<bool, DbError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DbError::Io {
            path: path.to_owned(),
            op: "stat journal",
            source,
        }),
    }
}

/// Whether a failed attempt is worth retrying even though the file looked stable.
fn transient(e: &DbError) -> bool {
    match e {
        DbError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::ReadOnly
                    | ErrorCode::SchemaChanged
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
            )
        ),
        DbError::Io { .. } => true,
        _ => false,
    }
}

fn pause(attempt: u32, max: Duration) {
    if attempt == 0 {
        return;
    }
    let base = Duration::from_micros(100u64 << attempt.min(10)).min(max);
    // Cheap jitter so a reader and a periodic writer do not fall into lockstep.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = Duration::from_nanos(u64::from(nanos) % (base.as_nanos() as u64 / 2 + 1));
    std::thread::sleep(base / 2 + jitter);
}

/// Runs `read` against a validated snapshot of the queue file at `path`.
///
/// `read` runs inside a read transaction on a fresh connection whose key, file kind and
/// schema version have been verified; its result is returned only if the file provably
/// did not change while it ran. `read` may run several times, so it must not have side
/// effects outside its return value.
pub fn read_snapshot<T>(
    path: &Path,
    cipher: &Cipher,
    file: impl FileSchema,
    policy: SnapshotPolicy,
    mut read: impl FnMut(&Connection) -> rusqlite::Result<T>,
) -> Result<T, DbError> {
    let file = file.kind();
    let journal = journal_path(path);
    let mut last = String::from("no attempt made");
    let mut previous_stable_error: Option<String> = None;
    for attempt in 0..policy.max_attempts {
        pause(attempt, policy.max_backoff);
        let before = Fingerprint::take(path)?;
        if journal_exists(&journal)? {
            last = "the writer's journal is present (commit in progress)".to_owned();
            continue;
        }
        let outcome = check_length(path, before.len)
            .and_then(|()| attempt_read(path, cipher, file, &mut read));
        let stable = !journal_exists(&journal)? && Fingerprint::take(path)? == before;
        match outcome {
            Ok(value) if stable => return Ok(value),
            Ok(_) => last = "the file changed during the read".to_owned(),
            Err(e) if !stable || transient(&e) => last = e.to_string(),
            Err(e) => {
                // The file did not change, so this is what it really says. Confirm once
                // more before believing it: an error is cheap to re-check.
                let text = e.to_string();
                if previous_stable_error.as_deref() == Some(text.as_str()) {
                    return Err(e);
                }
                previous_stable_error = Some(text.clone());
                last = text;
                continue;
            }
        }
        previous_stable_error = None;
    }
    Err(DbError::Unstable {
        path: path.to_owned(),
        attempts: policy.max_attempts,
        last,
    })
}

fn attempt_read<T>(
    path: &Path,
    cipher: &Cipher,
    file: &FileKind,
    read: &mut impl FnMut(&Connection) -> rusqlite::Result<T>,
) -> Result<T, DbError> {
    let conn = open_reader(path, cipher)?;
    conn.execute_batch("BEGIN")
        .map_err(|e| classify(path, "begin read", e))?;
    if check_schema(&conn, path, file)? == SchemaState::Empty {
        return Err(DbError::NotProvisioned {
            path: path.to_owned(),
        });
    }
    let value = read(&conn).map_err(|e| classify(path, "read", e))?;
    conn.execute_batch("COMMIT")
        .map_err(|e| classify(path, "end read", e))?;
    Ok(value)
}
