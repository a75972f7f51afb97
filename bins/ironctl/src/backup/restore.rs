//! Restoring an archive into an empty state directory, then proving the result opens.
//!
//! Every member must be in the manifest with the same kind, and every file must match
//! its size and SHA-256; paths are relative with normal components only; symlinks are
//! created last (so nothing is ever written through one) and never followed. Modes come
//! from the manifest without set-id bits; owners too when restoring as root (session
//! directories belong to the sandbox's mapped uid). Then the same verification as at
//! backup time runs, plus a check that the audit log ends exactly at the recorded head.
//! On any failure everything written is removed again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    read_master_file, verify_state, BackupError, EntryKind, Manifest, StateCheck, StateError,
    FORMAT, FORMAT_VERSION, MANIFEST_NAME,
};

/// Far above any real manifest; a bound so a hostile archive cannot make us allocate
/// without limit before anything is checked.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

pub struct RestoreOptions {
    pub from: PathBuf,
    pub state_dir: PathBuf,
    /// The master key file, for an archive made with `--exclude-master-key`.
    pub master_key: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub state_dir: PathBuf,
    pub entries: usize,
    pub backup_created_at: String,
    pub source_state_dir: String,
    pub master_key_fingerprint: String,
    /// `archive` or `file` (`--master-key`).
    pub master_key_from: &'static str,
    /// Whether owners were restored (only root can).
    pub owners_restored: bool,
    pub check: StateCheck,
}

/// The path as a `/`-joined relative string, if it has normal components only.
fn relative(p: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn is_root() -> bool {
    effective_uid() == Some(0)
}

fn effective_uid() -> Option<u32> {
    // /proc/self belongs to the process's effective uid: no unsafe call needed.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses a directory someone else could change under the restore (replace a
/// restored file, plant a symlink before verification): it must be the caller's and
/// writable by no one else.
fn trusted_dir(dir: &Path, meta: &std::fs::Metadata, what: &str) -> Result<(), BackupError> {
    let me = effective_uid()
        .ok_or_else(|| BackupError::Refused("cannot tell which user this is (/proc)".into()))?;
    if meta.uid() != me {
        return Err(BackupError::Refused(format!(
            "{what} {} belongs to uid {}, not to you (uid {me}); restore into a directory of your own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(BackupError::Refused(format!(
            "{what} {} is writable by group or others (mode {:o}): chmod go-w {} first",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        )));
    }
    Ok(())
}

/// Removes what a failed restore wrote: the directory if it created it, else its
/// contents (the directory was empty when the restore started).
struct Cleanup {
    dir: PathBuf,
    created: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.created {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                match e.file_type() {
                    Ok(t) if t.is_dir() => {
                        let _ = std::fs::remove_dir_all(&p);
                    }
                    _ => {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
    }
}

/// The target must not exist (it is created 0700) or be an empty directory; either way
/// it (or, when it is created, the nearest existing directory above it) must be the
/// caller's and writable by no one else.
fn prepare_target(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            trusted_dir(dir, &m, "the target")?;
            let mut rd = std::fs::read_dir(dir).map_err(BackupError::io(dir, "list"))?;
            if rd.next().is_some() {
                return Err(BackupError::Refused(format!(
                    "{} is not empty; restore only into a new or empty directory",
                    dir.display()
                )));
            }
            Ok(false)
        }
        Ok(_) => Err(BackupError::Refused(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let abs = std::path::absolute(dir).map_err(BackupError::io(dir, "resolve"))?;
            let mut up = abs.parent();
            while let Some(p) = up {
                match std::fs::metadata(p) {
                    Ok(m) => {
                        trusted_dir(p, &m, "the directory above the target,")?;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => up = p.parent(),
                    Err(e) => return Err(BackupError::io(p, "stat")(e)),
                }
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(BackupError::io(dir, "create"))?;
            Ok(true)
        }
        Err(e) => Err(BackupError::io(dir, "stat")(e)),
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn restore(opts: &RestoreOptions) -> Result<RestoreReport, BackupError> {
    let from = &opts.from;
    let bad = |reason: String| BackupError::Archive {
        path: from.clone(),
        reason,
    };
    let file = File::open(from).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BackupError::Refused(format!("no archive at {}", from.display()))
        } else {
            BackupError::io(from, "open")(e)
        }
    })?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut members = archive.entries().map_err(BackupError::io(from, "read"))?;

    // The manifest, and every decision it allows, before anything is written.
    let mut first = members
        .next()
        .ok_or_else(|| bad("empty archive".into()))?
        .map_err(BackupError::io(from, "read"))?;
    let first_path = first.path().map_err(BackupError::io(from, "read"))?;
    if first_path.as_ref() != Path::new(MANIFEST_NAME)
        || first.header().entry_type() != tar::EntryType::Regular
        || first.size() > MAX_MANIFEST_BYTES
    {
        return Err(bad(format!(
            "its first member is not {MANIFEST_NAME}: not an ironctl backup"
        )));
    }
    let mut json = Vec::new();
    first
        .read_to_end(&mut json)
        .map_err(BackupError::io(from, "read"))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| bad(format!("manifest: {e}")))?;
    if manifest.format != FORMAT || manifest.version != FORMAT_VERSION {
        return Err(bad(format!(
            "format {} version {}; this ironctl reads {FORMAT} version {FORMAT_VERSION}",
            manifest.format, manifest.version
        )));
    }
    let supplied = match (&opts.master_key, manifest.master_key_included) {
        (None, true) => None,
        (Some(p), _) => {
            let m = read_master_file(p)?;
            if m.fingerprint() != manifest.master_key_fingerprint {
                return Err(BackupError::Refused(format!(
                    "{} has fingerprint {}, but this backup was made under master key {}",
                    p.display(),
                    m.fingerprint(),
                    manifest.master_key_fingerprint
                )));
            }
            Some(m)
        }
        (None, false) => {
            return Err(BackupError::Refused(format!(
                "this backup was made with --exclude-master-key: pass --master-key FILE, the master.key kept apart from it (fingerprint {})",
                manifest.master_key_fingerprint
            )))
        }
    };
    let mut expected = BTreeMap::new();
    for e in &manifest.entries {
        if relative(Path::new(&e.path)).as_deref() != Some(e.path.as_str())
            || e.path == MANIFEST_NAME
        {
            return Err(bad(format!(
                "manifest entry {:?} is not a clean relative path",
                e.path
            )));
        }
        if expected.insert(e.path.clone(), e).is_some() {
            return Err(bad(format!("manifest lists {} twice", e.path)));
        }
    }
    if expected.contains_key("master.key") != manifest.master_key_included {
        return Err(bad("manifest disagrees with itself about master.key".into()));
    }

    let target = &opts.state_dir;
    let created = prepare_target(target)?;
    let mut cleanup = Cleanup {
        dir: target.clone(),
        created,
        armed: true,
    };
    let mut links = Vec::new();
    for member in members {
        let mut member = member.map_err(BackupError::io(from, "read"))?;
        let path = member.path().map_err(BackupError::io(from, "read"))?;
        let rel = relative(&path).ok_or_else(|| {
            bad(format!(
                "member {} is not a clean relative path",
                path.display()
            ))
        })?;
        let e = expected.remove(&rel).ok_or_else(|| {
            bad(format!(
                "member {rel} is not in the manifest, or appears twice"
            ))
        })?;
        let dest = target.join(&rel);
        match (member.header().entry_type(), e.kind) {
            (tar::EntryType::Directory, EntryKind::Dir) => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dest)
                    .map_err(BackupError::io(&dest, "create"))?;
            }
            (tar::EntryType::Regular, EntryKind::File) => {
                let out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(BackupError::io(&dest, "create"))?;
                let mut w = Hashing {
                    inner: out,
                    hash: Sha256::new(),
                    len: 0,
                };
                io::copy(&mut member, &mut w).map_err(BackupError::io(from, "read"))?;
                let sha = ironclaw_contract::hex::encode(&w.hash.finalize());
                if Some(w.len) != e.size || Some(&sha) != e.sha256.as_ref() {
                    return Err(bad(format!(
                        "{rel} does not match its checksum in the manifest: the archive is damaged"
                    )));
                }
                w.inner
                    .sync_all()
                    .map_err(BackupError::io(&dest, "fsync"))?;
            }
            (tar::EntryType::Symlink, EntryKind::Symlink) => {
                let to = member
                    .link_name()
                    .map_err(BackupError::io(from, "read"))?
                    .map(|t| t.to_string_lossy().into_owned());
                if to.is_none() || to != e.target {
                    return Err(bad(format!("symlink {rel} differs from the manifest")));
                }
                links.push((dest, to.unwrap_or_default()));
            }
            (t, k) => {
                return Err(bad(format!(
                    "member {rel} is a {t:?}, the manifest says {k:?}"
                )))
            }
        }
    }
    if let Some(missing) = expected.keys().next() {
        return Err(bad(format!(
            "{missing} is in the manifest but not in the archive (truncated?)"
        )));
    }
    let master_key_from = if manifest.master_key_included {
        "archive"
    } else {
        "file"
    };
    if let (Some(m), false) = (&supplied, manifest.master_key_included) {
        let dest = target.join("master.key");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(BackupError::io(&dest, "create"))?;
        f.write_all(m.0.as_slice())
            .and_then(|()| f.sync_all())
            .map_err(BackupError::io(&dest, "write"))?;
    }
    for (dest, to) in &links {
        std::os::unix::fs::symlink(to, dest).map_err(BackupError::io(dest, "create symlink"))?;
    }

    // Modes and owners last, deepest first, so a read-only directory never blocks the
    // writes below it.
    let root = is_root();
    for e in manifest.entries.iter().rev() {
        let dest = target.join(&e.path);
        if e.kind != EntryKind::Symlink {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(e.mode & 0o777))
                .map_err(BackupError::io(&dest, "chmod"))?;
        }
        if root {
            std::os::unix::fs::lchown(&dest, Some(e.uid), Some(e.gid))
                .map_err(BackupError::io(&dest, "chown"))?;
        }
    }
    std::fs::set_permissions(
        target,
        std::fs::Permissions::from_mode(manifest.root_mode & 0o777),
    )
    .map_err(BackupError::io(target, "chmod"))?;
    if root {
        std::os::unix::fs::lchown(target, Some(manifest.root_uid), Some(manifest.root_gid))
            .map_err(BackupError::io(target, "chown"))?;
    }

    let master = match supplied {
        Some(m) => m,
        None => read_master_file(&target.join("master.key"))?,
    };
    let check = verify_state(target, &master).map_err(|e| match e {
        StateError::Other(e) => e,
        StateError::MissingKey(id) => {
            BackupError::Verify(format!("session {id} has queue files but no key"))
        }
        StateError::Sandbox { path, reason } => {
            BackupError::Verify(format!("{}: {reason}", path.display()))
        }
    })?;
    if check.audit_last_seq != manifest.audit.last_seq
        || check.audit_last_hash != manifest.audit.last_hash
    {
        return Err(BackupError::Verify(format!(
            "the restored audit log ends at seq {} ({}), the backup recorded seq {} ({})",
            check.audit_last_seq,
            check.audit_last_hash,
            manifest.audit.last_seq,
            manifest.audit.last_hash
        )));
    }
    cleanup.armed = false;
    Ok(RestoreReport {
        state_dir: target.clone(),
        entries: manifest.entries.len(),
        backup_created_at: manifest.created_at,
        source_state_dir: manifest.source_state_dir,
        master_key_fingerprint: master.fingerprint(),
        master_key_from,
        owners_restored: root,
        check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // An existing empty target writable by others.
        assert!(matches!(
            prepare_target(&open),
            Err(BackupError::Refused(_))
        ));
        // A new target under a directory others can write.
        assert!(matches!(
            prepare_target(&open.join("new")),
            Err(BackupError::Refused(_))
        ));
        assert!(!open.join("new").exists());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            prepare_target(&open),
            Err(BackupError::Refused(_))
        ));
        // Private ones are fine.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!prepare_target(&open).unwrap());
        assert!(prepare_target(&open.join("a/b")).unwrap());
    }

    #[test]
    fn a_target_someone_else_owns_is_refused() {
        // Only root can make a directory that belongs to someone else; / is root's.
        if is_root() {
            let tmp = tempfile::tempdir().unwrap();
            let d = tmp.path().join("theirs");
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
            assert!(matches!(prepare_target(&d), Err(BackupError::Refused(_))));
        } else {
            let m = std::fs::metadata("/").unwrap();
            assert!(matches!(
                trusted_dir(Path::new("/"), &m, "the target"),
                Err(BackupError::Refused(_))
            ));
        }
    }
}
