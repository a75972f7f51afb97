//! Unpacking verified layer tars into a new rootfs directory, refusing anything that
//! could reach outside it or put something dangerous inside it.
//!
//! For: turning the (already digest-verified) layer streams into files. Not for:
//! verifying digests or trust (`verify`), or where the rootfs lives and how it is
//! cached (`provision`).
//!
//! Why each refusal, since a layer is attacker-controlled input until proven otherwise
//! (and even a trusted image should not be able to hurt the host that unpacks it):
//! - absolute paths and `..` components would write outside the rootfs;
//! - symlinks with absolute targets or targets that climb above the rootfs are refused
//!   (checked lexically against the link's own directory); and no symlink is ever
//!   followed while unpacking: every parent directory is checked with lstat, and files
//!   are created with O_EXCL, so an earlier entry cannot redirect a later write;
//! - hard links may only point at a regular file this unpack already created inside
//!   the rootfs (a hard link to a host file would expose or pin it);
//! - device nodes and FIFOs have no place in an agent image, and a device node is a
//!   direct line to host hardware if anything ever honours it;
//! - setuid/setgid bits are how a file gains privileges at exec; the agent never needs
//!   them (`no_new_privs` ignores them too, but the rootfs must not depend on that);
//! - replacing an earlier entry, whiteouts and sparse/unknown entry types are refused
//!   rather than interpreted: one meaning per archive, no layer-merge semantics;
//! - size caps per entry, in total, and on the entry count bound disk use and time.
//!
//! Files are created by the unpacking process (root in production) and never chowned
//! to the archive's uid/gid; modes are kept minus group/other write and the sticky bit,
//! so nothing in the rootfs is writable by anyone but its owner. Extended attributes
//! (including file capabilities) are never applied.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::Limits;

/// What was wrong with one archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The path starts at `/`.
    AbsolutePath,
    /// The path has a `..` component.
    ParentComponent,
    /// The path is empty.
    EmptyPath,
    /// An OCI whiteout (`.wh.*`): layer-merge semantics are not supported.
    Whiteout,
    /// A symlink to an absolute target.
    AbsoluteSymlink { target: String },
    /// A symlink whose target climbs above the rootfs.
    EscapingSymlink { target: String },
    /// A hard link whose target is unsafe or not a file unpacked before it.
    BadHardlink { target: String, why: &'static str },
    /// A character or block device node.
    DeviceNode,
    /// A FIFO.
    Fifo,
    /// Any other entry type (sparse files, global headers, …), by its type byte.
    UnsupportedType(u8),
    /// The setuid or setgid bit is set.
    SetId { mode: u32 },
    /// One entry is larger than the limit.
    EntryTooLarge { size: u64, limit: u64 },
    /// The path was already unpacked (an entry may not replace another).
    Duplicate,
    /// A parent of the path is not a directory (for example a symlink).
    ParentNotDirectory,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AbsolutePath => f.write_str("absolute path"),
            Self::ParentComponent => f.write_str("path contains a `..` component"),
            Self::EmptyPath => f.write_str("empty path"),
            Self::Whiteout => f.write_str("whiteout entries are not supported"),
            Self::AbsoluteSymlink { target } => write!(f, "symlink to absolute path {target:?}"),
            Self::EscapingSymlink { target } => {
                write!(f, "symlink target {target:?} escapes the rootfs")
            }
            Self::BadHardlink { target, why } => write!(f, "hard link to {target:?}: {why}"),
            Self::DeviceNode => f.write_str("device node"),
            Self::Fifo => f.write_str("FIFO"),
            Self::UnsupportedType(t) => write!(f, "unsupported entry type {:?}", char::from(*t)),
            Self::SetId { mode } => write!(f, "setuid/setgid mode {mode:04o}"),
            Self::EntryTooLarge { size, limit } => {
                write!(f, "{size} bytes, over the per-entry limit of {limit}")
            }
            Self::Duplicate => f.write_str("replaces an entry already unpacked"),
            Self::ParentNotDirectory => f.write_str("a parent is not a directory"),
        }
    }
}

/// A layer that could not be unpacked. Whatever was unpacked so far is discarded by
/// the caller; nothing partial is ever used.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {layer}: refused entry {path:?}: {reason}")]
    Refused {
        layer: Digest,
        path: String,
        reason: Refusal,
    },
    #[error("layer {layer}: more than {limit} entries")]
    TooManyEntries { layer: Digest, limit: u64 },
    #[error("layer {layer}: unpacked size exceeds the limit of {limit} bytes")]
    TotalTooLarge { layer: Digest, limit: u64 },
    #[error("layer {layer}: not a valid tar{gz}: {source}", gz = if *.gzip { " (gzip)" } else { "" })]
    Malformed {
        layer: Digest,
        gzip: bool,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: uncompressed content hashes to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_owned();
    move |source| LayerError::Io {
        action,
        path,
        source,
    }
}

/// What has been unpacked into one rootfs so far (across its layers).
#[derive(Default)]
pub(crate) struct UnpackState {
    entries: u64,
    total: u64,
    /// Every non-directory path created (relative), to refuse replacements.
    taken: HashSet<PathBuf>,
    /// Regular files created (relative): the only valid hard link targets.
    files: HashSet<PathBuf>,
    /// Directories with an explicit entry (relative), which a file may not replace.
    explicit_dirs: HashSet<PathBuf>,
}

/// Caps the bytes read from the (decompressed) stream, for the headers and
/// long-name/pax records that the per-entry size checks do not see.
struct CappedReader<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One more byte proves the stream is longer than allowed.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.set(true);
            return Err(io::Error::other("layer stream exceeds the size limit"));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks one layer from `blob` (gzip'd when `gzip`) into `root`, checking its
/// uncompressed digest against `diff_id` once the whole stream has been read.
pub(crate) fn unpack_layer<R: Read>(
    blob: R,
    gzip: bool,
    layer: &Digest,
    diff_id: &Digest,
    root: &Path,
    state: &mut UnpackState,
    limits: &Limits,
) -> Result<(), LayerError> {
    let stream: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let exceeded = Rc::new(Cell::new(false));
    // Headers add at most 3 KiB per entry (header, long name, pax record) on top of the
    // data, plus the end-of-archive blocks: anything beyond that is not a real layer.
    let cap = limits
        .max_total_bytes
        .saturating_add(limits.max_entries.saturating_mul(3 * 1024))
        .saturating_add(64 * 1024);
    let capped = CappedReader {
        inner: stream,
        left: cap,
        exceeded: exceeded.clone(),
    };
    let mut archive = tar::Archive::new(HashingReader::new(capped));
    let malformed = |source: io::Error| {
        if exceeded.get() {
            LayerError::TotalTooLarge {
                layer: layer.clone(),
                limit: limits.max_total_bytes,
            }
        } else {
            LayerError::Malformed {
                layer: layer.clone(),
                gzip,
                source,
            }
        }
    };
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        state.entries += 1;
        if state.entries > limits.max_entries {
            return Err(LayerError::TooManyEntries {
                layer: layer.clone(),
                limit: limits.max_entries,
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let refuse = |reason| LayerError::Refused {
            layer: layer.clone(),
            path: String::from_utf8_lossy(&raw_path).into_owned(),
            reason,
        };
        let Some(rel) = normalize(&raw_path).map_err(refuse)? else {
            // "." or "./": the rootfs directory itself, whose mode we set ourselves.
            continue;
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(malformed)? & 0o7777;
        if mode & 0o6000 != 0 {
            return Err(refuse(Refusal::SetId { mode }));
        }
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(refuse(Refusal::EntryTooLarge {
                size,
                limit: limits.max_entry_bytes,
            }));
        }
        state.total = state.total.saturating_add(size);
        if state.total > limits.max_total_bytes {
            return Err(LayerError::TotalTooLarge {
                layer: layer.clone(),
                limit: limits.max_total_bytes,
            });
        }
        // Checked for every type before anything is created.
        let kind = match kind {
            EntryType::Directory => Kind::Directory,
            EntryType::Regular => Kind::File,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char | EntryType::Block => return Err(refuse(Refusal::DeviceNode)),
            EntryType::Fifo => return Err(refuse(Refusal::Fifo)),
            other => return Err(refuse(Refusal::UnsupportedType(other.as_byte()))),
        };
        ensure_parents(root, &rel, state).map_err(|e| e.into_layer_error(&refuse))?;
        let dest = root.join(&rel);
        // Final permissions: never group/other writable, never sticky/setid.
        let perm = mode & 0o755;
        match kind {
            Kind::Directory => {
                // Declaring a directory again (later layers usually repeat their parent
                // directories) only sets its mode; replacing a non-directory is refused.
                if state.taken.contains(&rel) {
                    return Err(refuse(Refusal::Duplicate));
                }
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.file_type().is_dir() => {}
                    Ok(_) => return Err(refuse(Refusal::Duplicate)),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&dest)
                            .map_err(io_err("create directory", &dest))?;
                    }
                    Err(e) => return Err(io_err("inspect", &dest)(e)),
                }
                // The owner keeps rwx so later entries can be created inside.
                fs::set_permissions(&dest, fs::Permissions::from_mode(perm | 0o700))
                    .map_err(io_err("chmod", &dest))?;
                state.explicit_dirs.insert(rel);
            }
            Kind::File => {
                claim(state, &rel, &dest).map_err(&refuse)?;
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(io_err("create", &dest))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out).map_err(malformed)?;
                if copied != size {
                    return Err(malformed(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "entry data shorter than its header says",
                    )));
                }
                // Durable before the rootfs is marked ready: a crash must not leave a
                // "ready" rootfs with empty files.
                out.sync_all().map_err(io_err("fsync", &dest))?;
                out.set_permissions(fs::Permissions::from_mode(perm))
                    .map_err(io_err("chmod", &dest))?;
                state.files.insert(rel);
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                check_symlink(&rel, &target).map_err(&refuse)?;
                claim(state, &rel, &dest).map_err(&refuse)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .map_err(io_err("create symlink", &dest))?;
            }
            Kind::Hardlink => {
                let raw_target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target_text = String::from_utf8_lossy(&raw_target).into_owned();
                let bad = |why| Refusal::BadHardlink {
                    target: target_text.clone(),
                    why,
                };
                let target = match normalize(&raw_target) {
                    Ok(Some(t)) => t,
                    Ok(None) | Err(_) => {
                        return Err(refuse(bad("the target is not a path inside the rootfs")))
                    }
                };
                if !state.files.contains(&target) {
                    return Err(refuse(bad(
                        "the target is not a regular file unpacked earlier in this image",
                    )));
                }
                claim(state, &rel, &dest).map_err(&refuse)?;
                // link(2) does not follow a symlink at the source, and the source is a
                // regular file we created (tracked in `files`).
                let src = root.join(&target);
                fs::hard_link(&src, &dest).map_err(io_err("create hard link", &dest))?;
                // Same inode as a regular file of ours: a valid target for later links.
                state.files.insert(rel);
            }
        }
    }
    // Hash the rest of the stream (end-of-archive blocks, padding) so the diff id covers
    // every byte, exactly as the image builder hashed it.
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(malformed)?;
    let (actual, _) = hashing.finish();
    if actual != *diff_id {
        return Err(LayerError::DiffIdMismatch {
            layer: layer.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

/// The entry types that are unpacked; everything else is refused.
enum Kind {
    Directory,
    File,
    Symlink,
    Hardlink,
}

/// A relative, normalized path, or `None` for the archive root (`.`).
fn normalize(raw: &[u8]) -> Result<Option<PathBuf>, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptyPath);
    }
    if raw[0] == b'/' {
        return Err(Refusal::AbsolutePath);
    }
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => {
                if n.as_bytes().starts_with(b".wh.") {
                    return Err(Refusal::Whiteout);
                }
                out.push(n);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(Refusal::ParentComponent),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::AbsolutePath),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// A symlink at `rel` pointing at `target` must stay inside the rootfs: not absolute,
/// and never climbing above the root from the link's own directory.
fn check_symlink(rel: &Path, target: &[u8]) -> Result<(), Refusal> {
    let text = || String::from_utf8_lossy(target).into_owned();
    if target.is_empty() {
        return Err(Refusal::EscapingSymlink { target: text() });
    }
    if target[0] == b'/' {
        return Err(Refusal::AbsoluteSymlink { target: text() });
    }
    // Depth of the directory holding the link.
    let mut depth = rel.components().count().saturating_sub(1);
    for c in Path::new(OsStr::from_bytes(target)).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(Refusal::EscapingSymlink { target: text() });
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Refusal::AbsoluteSymlink { target: text() })
            }
        }
    }
    Ok(())
}

/// Records a new non-directory path, refusing one already unpacked.
fn claim(state: &mut UnpackState, rel: &Path, dest: &Path) -> Result<(), Refusal> {
    if state.taken.contains(rel)
        || state.explicit_dirs.contains(rel)
        || fs::symlink_metadata(dest).is_ok()
    {
        return Err(Refusal::Duplicate);
    }
    state.taken.insert(rel.to_owned());
    Ok(())
}

enum ParentError {
    Refused(Refusal),
    Io(LayerError),
}

impl ParentError {
    fn into_layer_error(self, refuse: &impl Fn(Refusal) -> LayerError) -> LayerError {
        match self {
            Self::Refused(r) => refuse(r),
            Self::Io(e) => e,
        }
    }
}

/// Creates the missing parents of `rel` (0755) and checks the existing ones are real
/// directories: lstat on every component, so a symlink planted by an earlier entry is
/// never walked through.
fn ensure_parents(root: &Path, rel: &Path, state: &UnpackState) -> Result<(), ParentError> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut cur = root.to_owned();
    let mut cur_rel = PathBuf::new();
    for c in parent.components() {
        cur.push(c);
        cur_rel.push(c);
        if state.taken.contains(&cur_rel) {
            return Err(ParentError::Refused(Refusal::ParentNotDirectory));
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(ParentError::Refused(Refusal::ParentNotDirectory)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(|e| ParentError::Io(io_err("create directory", &cur)(e)))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(|e| ParentError::Io(io_err("chmod", &cur)(e)))?;
            }
            Err(e) => return Err(ParentError::Io(io_err("inspect", &cur)(e))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    /// One raw tar entry; the name bytes are written as given (no validation, unlike
    /// `Header::set_path`), which is how a hostile archive is made.
    struct Raw<'a> {
        name: &'a [u8],
        kind: EntryType,
        mode: u32,
        link: &'a [u8],
        data: &'a [u8],
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
        Raw {
            name: name.as_bytes(),
            kind: EntryType::Regular,
            mode: 0o644,
            link: b"",
            data,
        }
    }

    fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            {
                let old = h.as_old_mut();
                old.name = [0; 100];
                old.name[..e.name.len()].copy_from_slice(e.name);
                old.linkname = [0; 100];
                old.linkname[..e.link.len()].copy_from_slice(e.link);
            }
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_size(e.data.len() as u64);
            h.set_mtime(0);
            h.set_cksum();
            b.append(&h, e.data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(tar: &[u8], root: &Path, limits: &Limits) -> Result<(), LayerError> {
        let diff_id = Digest::parse(&format!(
            "sha256:{}",
            ironclaw_contract::hex::encode(&Sha256::digest(tar))
        ))
        .unwrap();
        let mut state = UnpackState::default();
        unpack_layer(
            tar,
            false,
            &Digest::of(tar),
            &diff_id,
            root,
            &mut state,
            limits,
        )
    }

    fn refusal(entries: &[Raw<'_>]) -> (Refusal, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        match unpack(&tar_of(entries), dir.path(), &Limits::default()) {
            Err(LayerError::Refused { reason, .. }) => (reason, dir),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_layer_unpacks_with_safe_modes() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[
            Raw {
                name: b"./",
                kind: EntryType::Directory,
                mode: 0o755,
                link: b"",
                data: b"",
            },
            Raw {
                name: b"bin/tool",
                kind: EntryType::Regular,
                mode: 0o777,
                link: b"",
                data: b"#!",
            },
            Raw {
                name: b"bin/alias",
                kind: EntryType::Symlink,
                mode: 0o777,
                link: b"tool",
                data: b"",
            },
            Raw {
                name: b"tmp/",
                kind: EntryType::Directory,
                mode: 0o1777,
                link: b"",
                data: b"",
            },
            Raw {
                name: b"bin/hard",
                kind: EntryType::Link,
                mode: 0o755,
                link: b"bin/tool",
                data: b"",
            },
            Raw {
                name: b"lib/up",
                kind: EntryType::Symlink,
                mode: 0o777,
                link: b"../bin/tool",
                data: b"",
            },
        ]);
        unpack(&tar, dir.path(), &Limits::default()).unwrap();
        let mode = |p: &str| {
            fs::symlink_metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("bin/tool"), 0o755);
        assert_eq!(mode("tmp"), 0o755);
        assert_eq!(mode("bin"), 0o755);
        assert_eq!(fs::read(dir.path().join("bin/hard")).unwrap(), b"#!");
        assert_eq!(
            fs::read_link(dir.path().join("bin/alias")).unwrap(),
            Path::new("tool")
        );
    }

    #[test]
    fn traversal_absolute_paths_and_escaping_symlinks_are_refused() {
        assert_eq!(refusal(&[file("../x", b"")]).0, Refusal::ParentComponent);
        assert_eq!(
            refusal(&[file("a/../../x", b"")]).0,
            Refusal::ParentComponent
        );
        assert_eq!(
            refusal(&[file("/etc/passwd", b"")]).0,
            Refusal::AbsolutePath
        );
        let link = |name: &'static str, target: &'static str| Raw {
            name: name.as_bytes(),
            kind: EntryType::Symlink,
            mode: 0o777,
            link: target.as_bytes(),
            data: b"",
        };
        assert!(matches!(
            refusal(&[link("x", "/etc/shadow")]).0,
            Refusal::AbsoluteSymlink { .. }
        ));
        assert!(matches!(
            refusal(&[link("x", "../etc")]).0,
            Refusal::EscapingSymlink { .. }
        ));
        assert!(matches!(
            refusal(&[link("a/b/x", "../../../etc")]).0,
            Refusal::EscapingSymlink { .. }
        ));
        assert!(matches!(
            refusal(&[link("a/x", "b/../../../y")]).0,
            Refusal::EscapingSymlink { .. }
        ));
        assert!(matches!(
            refusal(&[link("x", "")]).0,
            Refusal::EscapingSymlink { .. }
        ));
        // A symlinked directory is never written through, even if it points inside.
        let (r, dir) = refusal(&[link("d", "."), file("d/x", b"")]);
        assert_eq!(r, Refusal::ParentNotDirectory);
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn devices_fifos_setid_and_bad_hardlinks_are_refused() {
        let special = |kind| Raw {
            name: b"dev/thing",
            kind,
            mode: 0o600,
            link: b"",
            data: b"",
        };
        assert_eq!(refusal(&[special(EntryType::Char)]).0, Refusal::DeviceNode);
        assert_eq!(refusal(&[special(EntryType::Block)]).0, Refusal::DeviceNode);
        assert_eq!(refusal(&[special(EntryType::Fifo)]).0, Refusal::Fifo);
        assert_eq!(
            refusal(&[special(EntryType::Continuous)]).0,
            Refusal::UnsupportedType(b'7')
        );
        let with_mode = |mode| Raw {
            name: b"bin/su",
            kind: EntryType::Regular,
            mode,
            link: b"",
            data: b"x",
        };
        let (r, dir) = refusal(&[with_mode(0o4755)]);
        assert_eq!(r, Refusal::SetId { mode: 0o4755 });
        assert!(!dir.path().join("bin/su").exists());
        assert_eq!(
            refusal(&[with_mode(0o2755)]).0,
            Refusal::SetId { mode: 0o2755 }
        );
        let hard = |target: &'static str| Raw {
            name: b"h",
            kind: EntryType::Link,
            mode: 0o644,
            link: target.as_bytes(),
            data: b"",
        };
        for target in ["/etc/passwd", "../outside", "later"] {
            assert!(
                matches!(
                    refusal(&[hard(target), file("later", b"")]).0,
                    Refusal::BadHardlink { .. }
                ),
                "{target}"
            );
        }
        assert!(matches!(
            refusal(&[file(".wh.gone", b"")]).0,
            Refusal::Whiteout
        ));
        assert_eq!(
            refusal(&[file("a", b"1"), file("a", b"2")]).0,
            Refusal::Duplicate
        );
        let dir = |name| Raw {
            name,
            kind: EntryType::Directory,
            mode: 0o755,
            link: b"",
            data: b"",
        };
        assert_eq!(refusal(&[dir(b"d/"), file("d", b"")]).0, Refusal::Duplicate);
        assert_eq!(refusal(&[file("d", b""), dir(b"d/")]).0, Refusal::Duplicate);
        // A directory declared twice (as layers do with their parents) is fine.
        let ok = tempfile::tempdir().unwrap();
        unpack(
            &tar_of(&[dir(b"etc/"), dir(b"etc/"), file("etc/x", b"")]),
            ok.path(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            refusal(&[file("a", b"1"), file("a/b", b"2")]).0,
            Refusal::ParentNotDirectory
        );
    }

    #[test]
    fn size_and_count_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let small = Limits {
            max_entry_bytes: 4,
            ..Limits::default()
        };
        assert!(matches!(
            unpack(&tar_of(&[file("big", b"12345")]), dir.path(), &small),
            Err(LayerError::Refused {
                reason: Refusal::EntryTooLarge { size: 5, limit: 4 },
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        let total = Limits {
            max_total_bytes: 6,
            ..Limits::default()
        };
        assert!(matches!(
            unpack(
                &tar_of(&[file("a", b"1234"), file("b", b"1234")]),
                dir.path(),
                &total
            ),
            Err(LayerError::TotalTooLarge { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let few = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        assert!(matches!(
            unpack(
                &tar_of(&[file("a", b""), file("b", b""), file("c", b"")]),
                dir.path(),
                &few
            ),
            Err(LayerError::TooManyEntries { limit: 2, .. })
        ));
    }

    #[test]
    fn a_wrong_diff_id_is_refused_and_garbage_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[file("a", b"x")]);
        let mut state = UnpackState::default();
        let err = unpack_layer(
            &tar[..],
            false,
            &Digest::of(&tar),
            &Digest::of(b"not it"),
            dir.path(),
            &mut state,
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let mut state = UnpackState::default();
        let err = unpack_layer(
            &b"\x1f\x8bnot gzip at all"[..],
            true,
            &Digest::of(b""),
            &Digest::of(b""),
            dir.path(),
            &mut state,
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, LayerError::Malformed { gzip: true, .. }),
            "{err}"
        );
    }
}
