//! The connection builder: the one sequence of pragmas every queue connection gets.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::DbError;
use crate::key::SessionKey;
use crate::schema::{FileKind, FileSchema, QueueFile};

/// How long a writer waits for another writer on the same side before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// SQLCipher page size. Pinned so that both sides agree even if a future SQLCipher
/// changes its default.
pub const CIPHER_PAGE_SIZE: u32 = 4096;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Serializes `PRAGMA key` across the process (see `configure`).
static KEYING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How a file is encrypted.
#[derive(Clone, Debug)]
pub enum Cipher {
    /// SQLCipher under this raw key: the only mode a shipped binary can use.
    Key(SessionKey),
    /// No encryption, so a benchmark can measure what encryption costs on the same
    /// code path.
    #[cfg(feature = "plaintext-baseline")]
    Plaintext,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Write,
    Read,
}

/// Opens (creating if needed) a queue file for its one writer, creating and versioning
/// the schema on first use and verifying key, file kind and version otherwise.
pub fn open_writer(
    path: &Path,
    cipher: &Cipher,
    file: impl FileSchema,
) -> Result<Connection, DbError> {
    let file = file.kind();
    create_private(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open_keyed(path, cipher, Access::Write, || {
        Connection::open_with_flags(path, flags).map_err(|e| DbError::sqlite(path, "open", e))
    })?;
    // Configuring read the header, which rolled back any hot journal a crashed writer
    // left, so the length is now the length of a committed database.
    check_length(path, file_len(path)?)?;
    ensure_schema(&conn, path, file)?;
    Ok(conn)
}

/// Creates `path` empty with mode 0600 if it does not exist. SQLite would create it with
/// its default 0644 (less the umask), and its journals copy the database's mode.
fn create_private(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(DbError::Io {
            path: path.to_owned(),
            op: "create",
            source,
        }),
    }
}

/// Opens a queue file read-only, without locks, for one read. Callers go through
/// [`super::read_snapshot`], which validates what this connection saw.
pub(crate) fn open_reader(path: &Path, cipher: &Cipher) -> Result<Connection, DbError> {
    // `unix-none` takes no file locks: across the gVisor boundary locks do not work
    // anyway, so the reader must be correct without them — and using the lock-free VFS
    // everywhere means the protocol that is tested is the protocol that runs.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    open_keyed(path, cipher, Access::Read, || {
        Connection::open_with_flags_and_vfs(path, flags, "unix-none").map_err(|e| {
            if !path.exists() {
                DbError::NotProvisioned {
                    path: path.to_owned(),
                }
            } else {
                DbError::sqlite(path, "open read-only", e)
            }
        })
    })
}

/// How many fresh connections a transient keying failure gets before it is reported.
const KEY_ATTEMPTS: u32 = 4;

/// Opens a connection with `open` and configures it, starting over on a fresh
/// connection when SQLCipher fails to attach its codec.
///
/// Why: CI saw a rare `PRAGMA key` failure on a brand-new file in a process with many
/// concurrent connections, even with keying serialized. A failed attach leaves that
/// connection's btree read-only, so the only sound retry is a new connection. The
/// failure is not a wrong key (that surfaces later, at the first page read, as
/// `WrongKey`), so retrying cannot mask a key mismatch; after the last attempt the
/// original error is returned.
fn open_keyed(
    path: &Path,
    cipher: &Cipher,
    access: Access,
    open: impl Fn() -> Result<Connection, DbError>,
) -> Result<Connection, DbError> {
    let mut attempt = 1;
    loop {
        let conn = open()?;
        match configure(&conn, path, cipher, access) {
            Ok(()) => return Ok(conn),
            Err(DbError::Sqlite { op: "set key", .. }) if attempt < KEY_ATTEMPTS => {
                drop(conn);
                std::thread::sleep(Duration::from_millis(u64::from(attempt) * 5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Applies the pragma sequence. Order matters: the key must be set before any page is
/// read, and the cipher settings after the key.
fn configure(
    conn: &Connection,
    path: &Path,
    cipher: &Cipher,
    access: Access,
) -> Result<(), DbError> {
    let step =
        |op: &'static str, sql: &str| run_pragma(conn, sql).map_err(|e| classify(path, op, e));
    match cipher {
        Cipher::Key(key) => {
            let hex = key.to_hex();
            // The statement text holds the key; it lives in a zeroizing buffer and is
            // never logged. SQLCipher copies the key into its own locked memory.
            let mut sql = zeroize::Zeroizing::new(String::with_capacity(80));
            sql.push_str("PRAGMA key = \"x'");
            sql.push_str(&hex);
            sql.push_str("'\"");
            {
                // SQLCipher initializes its process-wide state (provider, static mutexes)
                // on the first key in the process, and that initialization races: when
                // several threads key their first databases at once, one `PRAGMA key`
                // can fail. Keying is microseconds with a raw key, so serialize it.
                let _one_at_a_time = KEYING.lock().unwrap_or_else(|p| p.into_inner());
                step("set key", &sql)?;
            }
            // Keying activates SQLCipher, which turns its stderr logger on; turn it off.
            step("silence cipher log", "PRAGMA cipher_log_level = NONE")?;
            step(
                "set cipher page size",
                &format!("PRAGMA cipher_page_size = {CIPHER_PAGE_SIZE}"),
            )?;
        }
        #[cfg(feature = "plaintext-baseline")]
        Cipher::Plaintext => {}
    }
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| DbError::sqlite(path, "set busy timeout", e))?;
    step("disable mmap", "PRAGMA mmap_size = 0")?;
    match access {
        Access::Write => {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
                .map_err(|e| classify(path, "set journal mode", e))?;
            if !mode.eq_ignore_ascii_case("delete") {
                return Err(DbError::NotOurFile {
                    path: path.to_owned(),
                    reason: format!("journal mode stuck at {mode:?}"),
                });
            }
            step("set synchronous", "PRAGMA synchronous = FULL")?;
        }
        Access::Read => step("set query_only", "PRAGMA query_only = 1")?,
    }
    // Forces a page read: a wrong key fails here, at open, not at first use.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| classify(path, "verify key", e))?;
    Ok(())
}

/// Runs a statement and discards any rows it returns (many pragmas echo a value).
fn run_pragma(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// What the file's header pragmas say it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SchemaState {
    /// A brand-new file: no tables, no version.
    Empty,
    /// The expected kind at the expected version.
    Current,
}

/// Checks file kind and schema version.
pub(crate) fn check_schema(
    conn: &Connection,
    path: &Path,
    file: &FileKind,
) -> Result<SchemaState, DbError> {
    let q = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(|e| classify(path, "read schema version", e))
    };
    let app = q("PRAGMA application_id")?;
    let version = q("PRAGMA user_version")?;
    if app == 0 && version == 0 {
        let tables = q("SELECT count(*) FROM sqlite_master")?;
        if tables == 0 {
            return Ok(SchemaState::Empty);
        }
        return Err(DbError::NotOurFile {
            path: path.to_owned(),
            reason: format!("{tables} schema objects but no IronClaw file tag"),
        });
    }
    if app != file.application_id {
        return Err(match QueueFile::name_of_tag(app) {
            Some(found) => DbError::WrongFile {
                path: path.to_owned(),
                expected: file.name,
                found,
            },
            None => DbError::NotOurFile {
                path: path.to_owned(),
                reason: format!("application_id {app:#x} is not the {} file tag", file.name),
            },
        });
    }
    let supported = file.version;
    if version > supported {
        return Err(DbError::SchemaTooNew {
            path: path.to_owned(),
            file: file.name,
            found: version,
            supported,
        });
    }
    if version != supported {
        return Err(DbError::UnknownSchema {
            path: path.to_owned(),
            file: file.name,
            found: version,
            supported,
        });
    }
    Ok(SchemaState::Current)
}

fn ensure_schema(conn: &Connection, path: &Path, file: &FileKind) -> Result<(), DbError> {
    if check_schema(conn, path, file)? == SchemaState::Current {
        return Ok(());
    }
    // Another writer on this side may be creating it at the same moment: take the write
    // lock first, then look again.
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| classify(path, "begin schema", e))?;
    let result = (|| {
        if check_schema(conn, path, file)? == SchemaState::Empty {
            let ddl = format!(
                "{}\nPRAGMA user_version = {};\nPRAGMA application_id = {};",
                file.ddl, file.version, file.application_id
            );
            conn.execute_batch(&ddl)
                .map_err(|e| classify(path, "create schema", e))?;
        }
        conn.execute_batch("COMMIT")
            .map_err(|e| classify(path, "commit schema", e))
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Turns an SQLite failure into the most specific error: SQLCipher reports both a wrong
/// key and a non-database file as `SQLITE_NOTADB`, so the file itself is inspected to
/// tell an unencrypted or truncated file from a key that does not fit.
pub(crate) fn classify(path: &Path, op: &'static str, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => match inspect_file(path) {
            Some(reason) => DbError::NotOurFile {
                path: path.to_owned(),
                reason,
            },
            None => DbError::WrongKey {
                path: path.to_owned(),
            },
        },
        Some(ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        _ => DbError::sqlite(path, op, e),
    }
}

fn file_len(path: &Path) -> Result<u64, DbError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| DbError::Io {
            path: path.to_owned(),
            op: "stat",
            source,
        })
}

/// A committed queue file is a whole number of cipher pages.
pub(crate) fn check_length(path: &Path, len: u64) -> Result<(), DbError> {
    if len % u64::from(CIPHER_PAGE_SIZE) != 0 {
        return Err(DbError::NotOurFile {
            path: path.to_owned(),
            reason: format!("{len} bytes is not a whole number of {CIPHER_PAGE_SIZE}-byte pages (truncated or not a database)"),
        });
    }
    Ok(())
}

/// Returns why a file cannot be an encrypted queue file, if its shape already says so.
fn inspect_file(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut head = [0u8; 16];
    let n = f.read(&mut head).ok()?;
    if n == 16 && &head == SQLITE_MAGIC {
        return Some("it is an unencrypted SQLite database".to_owned());
    }
    match check_length(path, len) {
        Err(DbError::NotOurFile { reason, .. }) => Some(reason),
        _ => None,
    }
}
