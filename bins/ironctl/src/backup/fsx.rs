//! Reading a directory tree that someone else may be changing, without following any
//! symlink out of it.
//!
//! Why: a running agent writes its workspace and its outbound directory while a backup
//! reads them, and the backup runs as root. A path-based read can be redirected by a
//! symlink swapped into any component between a check and the open, which would copy
//! a host file (say `/etc/shadow`) into the archive — and a restore would then hand it
//! to the agent. So a directory is opened once and everything below it is reached
//! through its descriptor (`/proc/self/fd/N/<name>`, i.e. `openat`), with `O_NOFOLLOW`
//! on the last component, and the root of the walk is checked to be exactly the path
//! asked for.
//!
//! Not for: writing. Restore creates a fresh tree of its own and needs none of this.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

const NOT_A_FILE: &str = "not a regular file";

/// Whether opening a file failed because it is not (or no longer) a regular file: a
/// symlink (`ELOOP` under `O_NOFOLLOW`), a directory, a FIFO, a device.
pub fn not_a_file(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
        || e.raw_os_error() == Some(libc::EISDIR)
        || (e.kind() == io::ErrorKind::Other && e.to_string() == NOT_A_FILE)
}

/// An open directory; names below it resolve against the descriptor, not a path.
pub struct Dir {
    /// Held open: `proc` names it for as long as it lives.
    _file: File,
    proc: PathBuf,
}

fn proc_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn open_flags(dir: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    // O_NONBLOCK: opening a FIFO someone put in place of a file must not hang the
    // backup (it has no effect on regular files and directories).
    let mut flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    if dir {
        flags |= libc::O_DIRECTORY;
    }
    o.read(true).custom_flags(flags);
    o
}

impl Dir {
    /// Opens `path`, which must be absolute and canonical: the kernel's name for what
    /// was opened must be `path` itself, so no component of it was a symlink.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = open_flags(true).open(path)?;
        let proc = proc_path(&file);
        let real = std::fs::read_link(&proc)?;
        if real != path {
            return Err(io::Error::other(format!(
                "{} resolves to {}: a component of it is a symlink",
                path.display(),
                real.display()
            )));
        }
        Ok(Dir { _file: file, proc })
    }

    /// The child directory `name` (refused if it is a symlink).
    pub fn dir(&self, name: &OsStr) -> io::Result<Dir> {
        let file = open_flags(true).open(self.proc.join(name))?;
        Ok(Dir {
            proc: proc_path(&file),
            _file: file,
        })
    }

    /// The child regular file `name`, opened for reading (refused if it is a symlink,
    /// and if it is anything but a regular file once open).
    pub fn file(&self, name: &OsStr) -> io::Result<File> {
        let file = open_flags(false).open(self.proc.join(name))?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(NOT_A_FILE));
        }
        Ok(file)
    }

    /// `lstat` of the child `name`.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Metadata> {
        std::fs::symlink_metadata(self.proc.join(name))
    }

    /// The target of the child symlink `name` (never followed).
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        std::fs::read_link(self.proc.join(name))
    }

    /// The children's names, sorted (so archives list the same tree the same way).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut names = std::fs::read_dir(&self.proc)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"x").unwrap();
        std::fs::write(root.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("d/link")).unwrap();
        std::os::unix::fs::symlink(root.join("d"), root.join("dlink")).unwrap();

        let dir = Dir::open(&root).unwrap();
        assert_eq!(dir.names().unwrap(), ["d", "dlink", "secret"]);
        let d = dir.dir(OsStr::new("d")).unwrap();
        assert!(d.file(OsStr::new("f")).is_ok());
        let e = d.file(OsStr::new("link")).unwrap_err();
        assert!(not_a_file(&e), "a symlinked file: {e}");
        assert_eq!(
            d.read_link(OsStr::new("link")).unwrap(),
            root.join("secret")
        );
        assert!(dir.dir(OsStr::new("dlink")).is_err(), "a symlinked dir");
        // A root reached through a symlink is refused.
        assert!(Dir::open(&root.join("dlink")).is_err());
        assert!(Dir::open(&root.join("d")).is_ok());
    }

    #[test]
    fn a_fifo_does_not_hang_and_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("p"))
            .status()
            .unwrap();
        assert!(status.success());
        let dir = Dir::open(&root).unwrap();
        let e = dir.file(OsStr::new("p")).unwrap_err();
        assert!(not_a_file(&e), "{e}");
    }

    #[test]
    fn a_directory_renamed_after_opening_keeps_being_read_by_descriptor() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/f"), b"1").unwrap();
        let dir = Dir::open(&root).unwrap();
        let a = dir.dir(OsStr::new("a")).unwrap();
        // Swap `a` for a symlink to somewhere else after it was opened.
        std::fs::rename(root.join("a"), root.join("moved")).unwrap();
        std::fs::create_dir(root.join("other")).unwrap();
        std::fs::write(root.join("other/g"), b"2").unwrap();
        std::os::unix::fs::symlink(root.join("other"), root.join("a")).unwrap();
        assert_eq!(a.names().unwrap(), ["f"]);
    }
}
