//! Getting the session key to the agent without it touching a disk (DESIGN §2.2).
//!
//! The key file lives in the session's key directory, which — for a sandboxed session
//! — is a dedicated tmpfs mounted by the daemon (`size=64k`, `nosuid,nodev,noexec`),
//! bind-mounted read-only into the sandbox. The file is 0400 and the directory 0700, both
//! owned by the sandbox's host uid, so no other unprivileged uid on the host can list or
//! read it. On stop the file is overwritten, unlinked and the tmpfs unmounted.
//!
//! Unsandboxed `--dev` sessions (no root, no `runsc`) get a plain 0700 directory
//! instead: there is nothing to protect the key from in that mode, since the agent runs
//! as the daemon's own uid.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::KEY_FILE_NAME;

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("key directory {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("mounting a tmpfs on {path} failed: {reason}")]
    Mount { path: PathBuf, reason: String },
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> HandoffError {
    let path = path.to_owned();
    move |source| HandoffError::Io { path, op, source }
}

/// Whether `dir` is itself a tmpfs mount point, per `/proc/self/mountinfo`.
pub fn is_tmpfs_mount(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|line| {
        // `<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <src> <opts>`
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        let point = left.split(' ').nth(4).map(unescape);
        point.as_deref() == Some(canon.as_os_str().to_str().unwrap_or(""))
            && right.split(' ').next() == Some("tmpfs")
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where and how a session's key is handed over.
#[derive(Debug, Clone)]
pub struct KeyHandoff {
    dir: PathBuf,
    /// `Some((uid, gid))` for a sandboxed session: tmpfs, owned by that uid.
    owner: Option<(u32, u32)>,
}

impl KeyHandoff {
    pub fn new(dir: impl Into<PathBuf>, owner: Option<(u32, u32)>) -> Self {
        Self {
            dir: dir.into(),
            owner,
        }
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join(KEY_FILE_NAME)
    }

    /// Prepares the directory (mounting the tmpfs for a sandboxed session) and writes
    /// the key file.
    pub fn place(&self, key: &SessionKey) -> Result<PathBuf, HandoffError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir, "create"))?;
        if let Some((uid, gid)) = self.owner {
            if !is_tmpfs_mount(&self.dir) {
                // Owned by the sandbox's host uid like every other mount source: host
                // root is not mapped into the sandbox's user namespace, so a root-owned
                // directory would be closed to runsc's gofer and to the agent alike.
                let opts = format!("size=64k,mode=0700,uid={uid},gid={gid},nosuid,nodev,noexec");
                let out = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                    .arg(&self.dir)
                    .output()
                    .map_err(|e| HandoffError::Mount {
                        path: self.dir.clone(),
                        reason: format!("run mount: {e}"),
                    })?;
                if !out.status.success() || !is_tmpfs_mount(&self.dir) {
                    return Err(HandoffError::Mount {
                        path: self.dir.clone(),
                        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    });
                }
            }
        }
        let file = self.key_file();
        let _ = std::fs::remove_file(&file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&file)
            .map_err(io(&file, "create"))?;
        let hex = zeroize::Zeroizing::new(key.to_hex());
        f.write_all(hex.as_bytes()).map_err(io(&file, "write"))?;
        f.sync_all().map_err(io(&file, "sync"))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&file, Some(uid), Some(gid)).map_err(io(&file, "chown"))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400))
                .map_err(io(&file, "chmod"))?;
        }
        Ok(file)
    }

    /// Overwrites and unlinks the key file and unmounts the tmpfs. Idempotent.
    pub fn withdraw(&self) -> Result<(), HandoffError> {
        let file = self.key_file();
        if file.exists() {
            // Best effort: a tmpfs page is freed on unlink anyway, but overwriting
            // first shortens the time the bytes exist in the page cache.
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&file) {
                let _ = f.write_all(&[0u8; 64]);
            }
            std::fs::remove_file(&file).map_err(io(&file, "remove"))?;
        }
        if self.owner.is_some() && is_tmpfs_mount(&self.dir) {
            let out = Command::new("umount")
                .arg(&self.dir)
                .output()
                .map_err(io(&self.dir, "run umount"))?;
            if !out.status.success() {
                return Err(HandoffError::Mount {
                    path: self.dir.clone(),
                    reason: format!("umount: {}", String::from_utf8_lossy(&out.stderr).trim()),
                });
            }
        }
        Ok(())
    }
}
