//! The agent's file jail: every path a tool names is relative to the workspace root and
//! must stay inside it.
//!
//! Checks, in order: the path is non-empty (except for listing), relative, has no `..`
//! component and no NUL byte; then the file system is consulted — the existing part of
//! the path is resolved with [`std::fs::canonicalize`] (which follows every symlink) and
//! must still lie under the canonical root. Writes additionally refuse a symlink at the
//! final component, create missing directories one component at a time (re-checking each
//! one), and write through a fresh temporary file renamed into place, so the final
//! component is never followed even if it changes between check and write.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Largest file `read_file` returns, in bytes.
pub const MAX_READ_BYTES: u64 = 1024 * 1024;
/// Largest content `write_file` accepts, in bytes.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Most entries `list_dir` returns.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Longest path a tool may name, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a workspace operation was refused or failed. The text is what the model sees.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path is empty; name a file relative to the workspace")]
    Empty,
    #[error("path {path:?} is absolute; paths must be relative to the workspace")]
    Absolute { path: String },
    #[error("path {path:?} contains '..'; paths may not leave the workspace")]
    Traversal { path: String },
    #[error("path is {len} bytes; the limit is {MAX_PATH_BYTES}")]
    TooLong { len: usize },
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path {path:?} resolves outside the workspace (through a symlink)")]
    Escapes { path: String },
    #[error("path {path:?} is a symlink; writing through symlinks is not allowed")]
    Symlink { path: String },
    #[error("{path:?} does not exist")]
    NotFound { path: String },
    #[error("{path:?} is a directory")]
    IsDirectory { path: String },
    #[error("{path:?} is not a directory")]
    NotDirectory { path: String },
    #[error("{path:?} is {len} bytes; the limit is {max}")]
    TooLarge { path: String, len: u64, max: u64 },
    #[error("{path:?} is not UTF-8 text")]
    NotText { path: String },
    #[error("{path:?}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: io::Error,
    },
}

/// One `list_dir` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// A directory listing, sorted by name, at most [`MAX_LIST_ENTRIES`] long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub entries: Vec<DirEntry>,
    /// True when the directory had more entries than were returned.
    pub truncated: bool,
}

/// The workspace root, canonicalized once at construction.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Workspace {
    /// Opens an existing directory as the workspace.
    pub fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("workspace {} is not a directory", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lexical checks: returns the normal components of `rel` (no `.`).
    fn lexical(rel: &str, allow_empty: bool) -> Result<Vec<&std::ffi::OsStr>, PathError> {
        if rel.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong { len: rel.len() });
        }
        if rel.contains('\0') {
            return Err(PathError::Nul);
        }
        let mut parts = Vec::new();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(PathError::Traversal {
                        path: rel.to_owned(),
                    })
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Absolute {
                        path: rel.to_owned(),
                    })
                }
            }
        }
        if parts.is_empty() && !allow_empty {
            return Err(PathError::Empty);
        }
        Ok(parts)
    }

    /// Canonicalizes an existing path and checks it is under the root.
    fn confine(&self, rel: &str, joined: &Path) -> Result<PathBuf, PathError> {
        let real = fs::canonicalize(joined).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => PathError::NotFound {
                path: rel.to_owned(),
            },
            _ => PathError::Io {
                path: rel.to_owned(),
                op: "resolve",
                source: e,
            },
        })?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(PathError::Escapes {
                path: rel.to_owned(),
            })
        }
    }

    /// Resolves an existing path inside the workspace (symlinks followed, then checked).
    pub fn resolve_existing(&self, rel: &str, allow_empty: bool) -> Result<PathBuf, PathError> {
        let parts = Self::lexical(rel, allow_empty)?;
        let joined = parts.iter().fold(self.root.clone(), |p, c| p.join(c));
        self.confine(rel, &joined)
    }

    /// Reads a UTF-8 file of at most [`MAX_READ_BYTES`].
    pub fn read_file(&self, rel: &str) -> Result<String, PathError> {
        let path = self.resolve_existing(rel, false)?;
        let io_err = |op| {
            move |source| PathError::Io {
                path: rel.to_owned(),
                op,
                source,
            }
        };
        let meta = fs::metadata(&path).map_err(io_err("stat"))?;
        if meta.is_dir() {
            return Err(PathError::IsDirectory {
                path: rel.to_owned(),
            });
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(PathError::TooLarge {
                path: rel.to_owned(),
                len: meta.len(),
                max: MAX_READ_BYTES,
            });
        }
        let f = fs::File::open(&path).map_err(io_err("open"))?;
        let mut buf = Vec::new();
        // The file may have grown since the stat: never read past the cap.
        f.take(MAX_READ_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io_err("read"))?;
        if buf.len() as u64 > MAX_READ_BYTES {
            return Err(PathError::TooLarge {
                path: rel.to_owned(),
                len: buf.len() as u64,
                max: MAX_READ_BYTES,
            });
        }
        String::from_utf8(buf).map_err(|_| PathError::NotText {
            path: rel.to_owned(),
        })
    }

    /// Writes (creates or replaces) a file of at most [`MAX_WRITE_BYTES`], creating
    /// missing parent directories. Returns the number of bytes written.
    pub fn write_file(&self, rel: &str, content: &str) -> Result<usize, PathError> {
        if content.len() > MAX_WRITE_BYTES {
            return Err(PathError::TooLarge {
                path: rel.to_owned(),
                len: content.len() as u64,
                max: MAX_WRITE_BYTES as u64,
            });
        }
        let parts = Self::lexical(rel, false)?;
        let (name, dirs) = parts.split_last().ok_or(PathError::Empty)?;
        // Walk (and create) the parent one component at a time; every step is
        // re-resolved so that a symlinked directory cannot lead outside.
        let mut dir = self.root.clone();
        for d in dirs {
            let next = dir.join(d);
            match fs::symlink_metadata(&next) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(PathError::Io {
                            path: rel.to_owned(),
                            op: "create directory",
                            source,
                        })
                    }
                },
                Err(source) => {
                    return Err(PathError::Io {
                        path: rel.to_owned(),
                        op: "stat",
                        source,
                    })
                }
            }
            dir = self.confine(rel, &next)?;
            if !dir.is_dir() {
                return Err(PathError::NotDirectory {
                    path: rel.to_owned(),
                });
            }
        }
        let target = dir.join(name);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PathError::Symlink {
                    path: rel.to_owned(),
                })
            }
            Ok(m) if m.is_dir() => {
                return Err(PathError::IsDirectory {
                    path: rel.to_owned(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PathError::Io {
                    path: rel.to_owned(),
                    op: "stat",
                    source,
                })
            }
        }
        // `create_new` (O_EXCL) never follows a symlink, and `rename` replaces the final
        // component rather than following it.
        let tmp = dir.join(format!(
            ".ironclaw-write-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io_err = |op| {
            move |source| PathError::Io {
                path: rel.to_owned(),
                op,
                source,
            }
        };
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err("create"))?;
            f.write_all(content.as_bytes()).map_err(io_err("write"))?;
            f.sync_all().map_err(io_err("sync"))?;
            fs::rename(&tmp, &target).map_err(io_err("rename"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| content.len())
    }

    /// Lists a directory (empty path = the root), sorted by name.
    pub fn list_dir(&self, rel: &str) -> Result<Listing, PathError> {
        let path = self.resolve_existing(rel, true)?;
        if !path.is_dir() {
            return Err(PathError::NotDirectory {
                path: rel.to_owned(),
            });
        }
        let io_err = |source| PathError::Io {
            path: rel.to_owned(),
            op: "list",
            source,
        };
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in fs::read_dir(&path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if entries.len() == MAX_LIST_ENTRIES {
                truncated = true;
                break;
            }
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing { entries, truncated })
    }
}
