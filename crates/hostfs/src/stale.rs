//! The temporary files a crash left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::{is_temp_name, HostFsError};

/// Removes the temporary files of interrupted writes directly inside `dir` (not below
/// it): every entry whose name [`is_temp_name`] recognises and that is a regular file.
/// Returns the paths removed, in directory order.
///
/// A crash between a write's create and its rename leaves its temporary file, and with
/// its random name nothing writes over it again: the token file's would keep a
/// plaintext token in the state dir for good. Call this where no writer of `dir` can be
/// in flight (the daemon, for its state dir, as it starts): a write caught in flight
/// loses its temporary file and fails at the rename with `NotFound`, its target
/// untouched, so it is never torn, but it is lost.
///
/// Nothing is followed: each entry is looked at with `lstat`. A symlink, a directory,
/// a FIFO or anything else with a temporary-looking name is left alone, since this
/// crate's writer only ever makes regular files; a symlink is removed neither itself
/// nor through its target. An entry that goes away while this runs is skipped. The
/// removals are not fsynced: one a crash undoes is made again by the next call.
///
/// # Errors
/// [`HostFsError::Io`] if `dir` cannot be listed (`list`), an entry cannot be
/// inspected (`inspect`) or removed (`remove`). The removals before the error stand.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<PathBuf>, HostFsError> {
    let mut removed = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| HostFsError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| HostFsError::io("list", dir, e))?;
        if !is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HostFsError::io("inspect", &path, e)),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        // unlink(2) removes the name; it never follows anything. Between the lstat and
        // here the name could be swapped for a symlink by someone who can write `dir`:
        // then the link itself goes, never its target.
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostFsError::io("remove", &path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::write::tests::names;
    use crate::write_private;

    #[test]
    fn a_stale_temporary_file_is_removed_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        // What a crash mid-write of the dev token leaves: the writer's own temporary
        // name.
        let stale = crate::write::temp_path(&dir.join("dev-token")).unwrap();
        fs::write(&stale, b"a plaintext token").unwrap();
        // The files themselves, and names that only look alike.
        write_private(&dir.join("dev-token"), b"token").unwrap();
        fs::write(dir.join("tokens.tmp"), b"x").unwrap();
        fs::write(dir.join(".tokens.tmp-0123456789ABCDEF"), b"x").unwrap();
        // A directory with a temporary name, and a file in it with one too: neither is
        // touched (one level only).
        let sub = dir.join(".sessions.tmp-00000000ffffffff");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join(".x.tmp-00000000ffffffff"), b"x").unwrap();
        // A symlink with a temporary name, to a file and dangling: the link stays, and
        // so does its target.
        let target = dir.join("victim");
        fs::write(&target, b"victim").unwrap();
        symlink(&target, dir.join(".tokens.tmp-1111111111111111")).unwrap();
        symlink(
            dir.join("missing"),
            dir.join(".tokens.tmp-2222222222222222"),
        )
        .unwrap();

        let removed = remove_stale_temp_files(dir).unwrap();

        assert_eq!(removed, [stale]);
        assert_eq!(
            names(dir),
            [
                ".sessions.tmp-00000000ffffffff",
                ".tokens.tmp-0123456789ABCDEF",
                ".tokens.tmp-1111111111111111",
                ".tokens.tmp-2222222222222222",
                "dev-token",
                "tokens.tmp",
                "victim",
            ]
        );
        assert_eq!(names(&sub), [".x.tmp-00000000ffffffff"]);
        assert_eq!(fs::read(&target).unwrap(), b"victim");
        assert_eq!(fs::read(dir.join("dev-token")).unwrap(), b"token");
        assert!(
            fs::symlink_metadata(dir.join(".tokens.tmp-1111111111111111"))
                .unwrap()
                .file_type()
                .is_symlink()
        );

        // Nothing left to remove the second time.
        assert!(remove_stale_temp_files(dir).unwrap().is_empty());
    }

    #[test]
    fn a_missing_directory_is_a_list_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone");
        let e = remove_stale_temp_files(&gone).unwrap_err();
        let (op, path, source) = e.into_parts();
        assert_eq!((op, path.as_path()), ("list", gone.as_path()));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }
}
