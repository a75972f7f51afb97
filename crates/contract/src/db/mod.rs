//! The one way to open a queue file, and the lock-free read protocol.
//!
//! Host and sandbox open `inbound.db` / `outbound.db` only through this module, so the
//! cipher settings and connection pragmas cannot drift between them:
//!
//! - SQLCipher 4 with a raw 256-bit key (`PRAGMA key = "x'<64 hex>'"`, no KDF), set
//!   before any page is read; 4096-byte cipher pages; SQLCipher's own stderr logging
//!   off (its failures come back as typed errors instead);
//! - `busy_timeout = 5000` and `mmap_size = 0` on every connection; never `immutable`;
//! - writers: read-write, `journal_mode = DELETE` (WAL's shared memory does not cross a
//!   gVisor bind mount), `synchronous = FULL`; they create and version the schema;
//! - readers: read-only open, `query_only = 1`, the lock-free `unix-none` VFS, a fresh
//!   connection for every read, and the snapshot validation in [`read_snapshot`];
//! - every open verifies the key (a read of `sqlite_master`), the file kind
//!   (`application_id`) and the schema version (`user_version`).

mod error;
mod open;
mod snapshot;

pub use error::{sqlite_failure, DbError};
pub use open::{open_writer, Cipher, BUSY_TIMEOUT, CIPHER_PAGE_SIZE};
pub use snapshot::{journal_path, read_snapshot, SnapshotPolicy};
