//! The few file-system moves the crate makes, each with the durability and access rules
//! key files need. Writing goes through `ironclaw-hostfs`, the one writer of the host's
//! own files; reading, with the key files' access rules, is here.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::KeyError;

/// `path` with `suffix` appended to its last component (`master.key` → `master.key.next`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory whose entry for `path` a rename or create changes.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes the directory entries of `dir` durable.
///
/// fsync on a file makes its *contents* durable, not its name: after a crash, a file
/// that was created or renamed but whose directory was not synced can be missing or
/// still carry its old name. For a key file that would mean a store that silently
/// reverts to an older set of keys, or a rotation whose order on disk differs from the
/// order we performed it in, which the recovery reasoning depends on.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), KeyError> {
    Ok(ironclaw_hostfs::fsync_dir(dir)?)
}

fn file_kind(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symlink"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads a key-bearing file, or `None` if it does not exist.
///
/// Refused: anything but a regular file, and any file with a group or other permission
/// bit. A symlink could point the host at a file an attacker controls (a key of their
/// choosing) or make it read a secret from somewhere unexpected; a group- or
/// world-accessible key file means the key may already be known to someone else, so
/// using it would give a false sense of protection. Refusing loudly, with the fix, is
/// better than tightening the mode silently: the operator needs to know the key may have
/// leaked.
///
/// The checks run on the opened file (fstat), and its identity is compared with the
/// lstat taken before opening, so a file swapped in between the two cannot slip through.
pub(crate) fn read_private_file(
    path: &Path,
    limit: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    let before = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KeyError::io("inspect", path, e)),
    };
    if !before.file_type().is_file() {
        return Err(KeyError::NotRegularFile {
            path: path.to_owned(),
            found: file_kind(before.file_type()),
        });
    }
    let file = File::open(path).map_err(|e| KeyError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| KeyError::io("inspect", path, e))?;
    if meta.dev() != before.dev() || meta.ino() != before.ino() || !meta.is_file() {
        return Err(KeyError::FileChanged {
            path: path.to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > limit {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
            limit,
        });
    }
    let mut buf = Zeroizing::new(Vec::new());
    // `take` bounds the read even if the file grows after the length check.
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KeyError::io("read", path, e))?;
    let len = buf.len() as u64;
    if len > limit {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            len,
            limit,
        });
    }
    Ok(Some(buf))
}

/// Writes `bytes` to a new file at `path` with mode 0600 and makes it durable (the file
/// and its directory entry). A leftover file at `path` (from an earlier crash) is
/// removed first.
///
/// [`ironclaw_hostfs::create_private`] gives the file its mode at creation, so it is
/// never readable by others, not even for an instant, and never follows a symlink
/// planted at `path`; on a failed write it removes the torn file.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    remove_if_exists(path)?;
    Ok(ironclaw_hostfs::create_private(path, bytes)?)
}

/// Removes `path` if it exists; true if it did. The caller fsyncs the directory.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, KeyError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(KeyError::io("remove", path, e)),
    }
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), KeyError> {
    fs::rename(from, to).map_err(|e| KeyError::io("rename into place", from, e))
}
