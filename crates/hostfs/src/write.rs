//! The one writer of host files (see the crate doc for what each step guarantees).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::HostFsError;

/// Who may read a file written here. Only the owner ever writes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// 0600: the owner alone. Every key, token and state file.
    Private,
    /// 0644: anyone may read. Only for files that hold no secret and that another user
    /// must read (an image layout, which runsc's host side reads).
    WorldReadable,
}

impl FileMode {
    /// The permission bits.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::WorldReadable => 0o644,
        }
    }
}

/// Replaces the file at `path` with `bytes`, mode 0600, atomically and durably:
/// [`write_atomic`] with [`FileMode::Private`].
///
/// # Errors
/// [`HostFsError::Io`] if any step up to the rename fails (the old file is untouched);
/// [`HostFsError::NotDurable`] if only the directory fsync failed.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HostFsError> {
    write_atomic(path, bytes, FileMode::Private)
}

/// Replaces the file at `path` with `bytes`, with permissions `mode`: a temporary file
/// in the same directory (`O_CREAT | O_EXCL | O_NOFOLLOW`, the mode given at creation
/// and set again), fsync, rename over `path`, fsync the directory. A symlink at `path`
/// is replaced, never followed; one at the temporary name is never opened. A missing
/// `path` is created.
///
/// # Errors
/// As [`write_private`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: FileMode) -> Result<(), HostFsError> {
    let tmp = temp_path(path)?;
    replace_via(&tmp, path, mode, |f| f.write_all(bytes))
}

/// Creates the file `path`, which must not exist, with `bytes` and mode 0600, and makes
/// it durable: [`create_file`] with [`FileMode::Private`].
///
/// # Errors
/// As [`create_file`].
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<(), HostFsError> {
    create_file(path, bytes, FileMode::Private)
}

/// Creates the file `path`, which must not exist, with `bytes` and permissions `mode`
/// (given at creation, `O_CREAT | O_EXCL | O_NOFOLLOW`, and set again), and makes it
/// durable (fsync of the file, then of its directory). Nothing at `path` is ever
/// followed or replaced: a symlink, a file or anything else there is an error (its
/// `source` is `AlreadyExists`). On an error before the directory fsync the new file is
/// removed.
///
/// # Errors
/// [`HostFsError::Io`]; [`HostFsError::NotDurable`] if only the directory fsync failed
/// (the file is complete).
pub fn create_file(path: &Path, bytes: &[u8], mode: FileMode) -> Result<(), HostFsError> {
    create_filled(path, mode, |f| f.write_all(bytes))?;
    let dir = parent_dir(path);
    sync_dir(dir).map_err(|source| HostFsError::NotDurable {
        path: path.to_owned(),
        dir: dir.to_owned(),
        source,
    })
}

/// Makes the entries of `dir` durable: a name created, renamed or removed in it
/// survives a crash once this returns.
///
/// fsync on a file makes its contents durable, not its name: after a crash, a file that
/// was created or renamed in a directory that was not synced can be missing or carry
/// its old name.
///
/// # Errors
/// [`HostFsError::Io`] (`fsync directory`).
pub fn fsync_dir(dir: &Path) -> Result<(), HostFsError> {
    sync_dir(dir).map_err(|e| HostFsError::io("fsync directory", dir, e))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory whose entry for `path` a create or rename changes.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<dir>/.<name>.tmp-<16 hex>`, next to `path` so the rename stays in one file system.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf, HostFsError> {
    let name = path.file_name().ok_or_else(|| {
        HostFsError::io(
            "name a temporary file for",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix)
        .map_err(|e| HostFsError::io("name a temporary file for", path, e.into()))?;
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(OsStr::from_bytes(TEMP_MARK));
    tmp.push(hex(&suffix));
    Ok(parent_dir(path).join(tmp))
}

/// True if `name` (a file name, not a path) has the shape of this crate's temporary
/// files, `.<name>.tmp-<16 hex>`: a write in flight, or one a crash interrupted. Such a
/// file is never read back, so a copy of a directory (a backup) leaves it out.
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let Some(rest) = b.strip_prefix(b".") else {
        return false;
    };
    let Some(split) = rest.len().checked_sub(TEMP_MARK.len() + SUFFIX_HEX) else {
        return false;
    };
    let (base, tail) = rest.split_at(split);
    !base.is_empty()
        && tail.starts_with(TEMP_MARK)
        && tail[TEMP_MARK.len()..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Between a temporary file's base name and its random suffix.
const TEMP_MARK: &[u8] = b".tmp-";
/// Hex digits of the random suffix (8 random bytes).
const SUFFIX_HEX: usize = 16;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Steps 1–5 of the crate doc, with `tmp` as the temporary name. `fill` writes the
/// contents (a parameter so the tests can make a write fail halfway).
fn replace_via(
    tmp: &Path,
    path: &Path,
    mode: FileMode,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), HostFsError> {
    create_filled(tmp, mode, fill)?;
    // rename(2) replaces the name itself: a symlink at `path` is replaced, not followed.
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(HostFsError::io("rename into place", path, e));
    }
    let dir = parent_dir(path);
    sync_dir(dir).map_err(|source| HostFsError::NotDurable {
        path: path.to_owned(),
        dir: dir.to_owned(),
        source,
    })
}

/// Creates `path` exclusively with `mode`, fills it and fsyncs it; on an error after the
/// create, removes it again.
fn create_filled(
    path: &Path,
    mode: FileMode,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), HostFsError> {
    // O_EXCL alone already refuses a symlink at `path`; O_NOFOLLOW says so explicitly
    // and keeps it true should the flags ever change. Anything already there is someone
    // else's, so it is never removed.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| HostFsError::io("create", path, e))?;
    let filled = (|| {
        // The umask may have taken bits away, the owner's own included.
        f.set_permissions(fs::Permissions::from_mode(mode.bits()))
            .map_err(|e| HostFsError::io("chmod", path, e))?;
        fill(&mut f).map_err(|e| HostFsError::io("write", path, e))?;
        f.sync_all().map_err(|e| HostFsError::io("fsync", path, e))
    })();
    if filled.is_err() {
        // Ours, and torn: best effort, the error that matters is the one returned.
        drop(f);
        let _ = fs::remove_file(path);
    }
    filled
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};
    use std::sync::Arc;

    use super::*;

    fn name_bytes(path: &Path) -> &[u8] {
        path.file_name().map_or(&[], |n| n.as_bytes())
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// The names in `dir`, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_file_is_private_and_nothing_is_left_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokens");
        write_private(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), 0o600);
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(d.path()), ["tokens"]);
    }

    #[test]
    fn the_result_is_0600_whatever_the_old_file_was() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn world_readable_is_0644() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("index.json");
        write_atomic(&p, b"{}", FileMode::WorldReadable).unwrap();
        assert_eq!(mode_of(&p), 0o644);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let p = d.path().join("dev-token");
        symlink(&victim, &p).unwrap();
        write_private(&p, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        let meta = fs::symlink_metadata(&p).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(mode_of(&p), 0o600);
    }

    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let p = d.path().join("dev-token");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let tmp = d.path().join("dev-token.tmp");
        // Both a symlink to an existing file and a dangling one (O_CREAT would create
        // its target if followed).
        let missing = d.path().join("created-through-the-link");
        for target in [&victim, &missing] {
            let _ = fs::remove_file(&tmp);
            symlink(target, &tmp).unwrap();
            let e =
                replace_via(&tmp, &p, FileMode::Private, |f| f.write_all(b"secret")).unwrap_err();
            match &e {
                HostFsError::Io { op, source, .. } => {
                    assert_eq!(*op, "create");
                    assert_eq!(source.kind(), io::ErrorKind::AlreadyExists, "{e}");
                }
                other => panic!("{other:?}"),
            }
            assert!(!e.in_place());
            assert_eq!(fs::read(&victim).unwrap(), b"victim");
            assert!(!missing.exists());
            assert_eq!(fs::read(&p).unwrap(), b"old");
            // Someone else's entry is left as it was.
            assert!(fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
        }
    }

    #[test]
    fn the_old_content_survives_a_failed_write() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sealed-keys");
        write_private(&p, b"old contents").unwrap();
        let tmp = temp_path(&p).unwrap();
        let e = replace_via(&tmp, &p, FileMode::Private, |f| {
            f.write_all(b"half of the n")?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        })
        .unwrap_err();
        assert!(matches!(e, HostFsError::Io { op: "write", .. }), "{e:?}");
        assert!(!e.in_place());
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        assert_eq!(names(d.path()), ["sealed-keys"]);
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        // A non-empty directory at the target: rename(2) cannot replace it.
        let p = d.path().join("index.json");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        let e = write_private(&p, b"{}").unwrap_err();
        assert!(
            matches!(
                e,
                HostFsError::Io {
                    op: "rename into place",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(fs::read(p.join("keep")).unwrap(), b"x");
        assert_eq!(names(d.path()), ["index.json"]);
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/tokens");
        let e = write_private(&p, b"x").unwrap_err();
        let (op, path, source) = e.into_parts();
        assert_eq!(op, "create");
        assert!(path.starts_with(d.path().join("no/such/dir")), "{path:?}");
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(write_private(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn temporary_names_are_hidden_siblings_and_differ() {
        let p = Path::new("/state/master.key");
        let a = temp_path(p).unwrap();
        let b = temp_path(p).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/state")));
        let name = name_bytes(&a);
        assert!(name.starts_with(b".master.key.tmp-"), "{a:?}");
        assert_eq!(name.len(), ".master.key.tmp-".len() + 16);
        assert_eq!(
            temp_path(Path::new("tokens")).unwrap().parent(),
            Some(Path::new("."))
        );
    }

    #[test]
    fn temporary_names_are_recognised_and_nothing_else() {
        for p in ["/state/tokens", "/state/sealed-keys", "x", "/s/.hidden"] {
            let tmp = temp_path(Path::new(p)).unwrap();
            assert!(is_temp_name(tmp.file_name().unwrap()), "{tmp:?}");
        }
        for name in [
            "tokens",
            "tokens.tmp",
            ".tokens.tmp",
            ".tokens.tmp-",
            ".tokens.tmp-0123456789abcde",
            ".tokens.tmp-0123456789abcdef0",
            ".tokens.tmp-0123456789ABCDEF",
            "tokens.tmp-0123456789abcdef",
            "..tmp-0123456789abcdef",
            ".tmp-0123456789abcdef",
        ] {
            assert!(!is_temp_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = Arc::new(d.path().join("tokens"));
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        write_private(&p, &[i; 4096]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let got = fs::read(&*p).unwrap();
        assert_eq!(got.len(), 4096);
        assert!(got.iter().all(|b| *b == got[0]));
        assert_eq!(names(d.path()), ["tokens"]);
    }

    #[test]
    fn create_private_never_replaces_nor_follows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.key.next");
        create_private(&p, &[7; 32]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), [7; 32]);
        assert_eq!(mode_of(&p), 0o600);

        // An existing file is an error and keeps its contents.
        let e = create_private(&p, &[8; 32]).unwrap_err();
        let (_, _, source) = e.into_parts();
        assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), [7; 32]);

        // A planted symlink, dangling or not, is not followed.
        let victim = d.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let missing = d.path().join("missing");
        for target in [&victim, &missing] {
            let link = d.path().join("sealed-keys.next");
            let _ = fs::remove_file(&link);
            symlink(target, &link).unwrap();
            assert!(create_private(&link, b"x").is_err());
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!missing.exists());
    }

    #[test]
    fn create_file_gives_the_mode_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("image-signing.pub");
        create_file(&p, b"public", FileMode::WorldReadable).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"public");
        assert_eq!(mode_of(&p), 0o644);
        let e = create_file(&p, b"again", FileMode::WorldReadable).unwrap_err();
        let (op, _, source) = e.into_parts();
        assert_eq!(
            (op, source.kind()),
            ("create", io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&p).unwrap(), b"public");
    }

    #[test]
    fn a_failed_create_removes_the_torn_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.key.new");
        let e = create_filled(&p, FileMode::Private, |f| {
            f.write_all(&[1; 10])?;
            Err(io::Error::from_raw_os_error(libc::EIO))
        })
        .unwrap_err();
        assert!(matches!(e, HostFsError::Io { op: "write", .. }), "{e:?}");
        assert!(!p.exists());
    }

    #[test]
    fn fsync_dir_reports_the_directory() {
        let d = tempfile::tempdir().unwrap();
        fsync_dir(d.path()).unwrap();
        let gone = d.path().join("gone");
        let e = fsync_dir(&gone).unwrap_err();
        assert!(e.to_string().contains("fsync directory"), "{e}");
        assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
    }

    #[test]
    fn not_durable_is_in_place_and_folds_to_the_directory() {
        let e = HostFsError::NotDurable {
            path: PathBuf::from("/s/tokens"),
            dir: PathBuf::from("/s"),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(e.in_place());
        assert!(e.to_string().contains("/s/tokens"), "{e}");
        let (op, path, _) = e.into_parts();
        assert_eq!((op, path.as_path()), ("fsync directory", Path::new("/s")));
    }
}
