//! The state directory's files: the directory itself (`state dir`), the master key
//! (`master key`: metadata only, never its bytes) and the other private files
//! (`state files`), each checked for type, mode and owner from `lstat`.
//!
//! Not for: the env file ([`super::env_file`]), or anything inside the files (the audit
//! chain is [`super::audit`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::finding::{fail, pass, warn, Check};

/// What `lstat` says about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathFacts {
    pub mode: u32,
    pub uid: u32,
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub len: u64,
}

impl PathFacts {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            is_dir: m.is_dir(),
            is_file: m.is_file(),
            is_symlink: m.file_type().is_symlink(),
            len: m.len(),
        }
    }
}

/// A path doctor looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Missing,
    /// Could not be looked at (usually: doctor is not root).
    Unreadable(String),
    Present(PathFacts),
}

pub(super) fn observe(path: &Path) -> Seen {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Seen::Present(PathFacts::of(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
        Err(e) => Seen::Unreadable(e.to_string()),
    }
}

pub(super) fn unreadable(name: &'static str, path: &Path, why: &str) -> Check {
    warn(
        name,
        format!("cannot look at {}: {why}", path.display()),
        "run doctor as root (or as the daemon's user)",
    )
}

pub fn check_state_dir(path: &Path, seen: &Seen) -> Check {
    const N: &str = "state dir";
    let p = path.display();
    match seen {
        Seen::Missing => fail(
            N,
            format!("no state directory at {p}"),
            "pass --state-dir (the daemon's --state-dir / IRONCLAW_STATE_DIR), or start the daemon once to create it",
        ),
        Seen::Unreadable(why) => unreadable(N, path, why),
        Seen::Present(f) if f.is_symlink || !f.is_dir => fail(
            N,
            format!("{p} is not a directory (a symlink or a file)"),
            "point --state-dir at the real directory",
        ),
        Seen::Present(f) if f.mode & 0o066 != 0 => fail(
            N,
            format!("{p} has mode {:o}: others can list or change it, and it holds the keys", f.mode),
            format!("chmod 700 {p}"),
        ),
        Seen::Present(f) if f.uid != 0 => warn(
            N,
            format!("{p} (mode {:o}) is owned by uid {}, not root", f.mode, f.uid),
            format!("chown root:root {p} (the daemon runs as root under runsc)"),
        ),
        Seen::Present(f) => pass(
            N,
            if f.mode & 0o011 != 0 {
                format!(
                    "{p}: mode {:o} (traversable for runsc's gofer, not listable), owner root",
                    f.mode
                )
            } else {
                format!("{p}: mode {:o}, owner root", f.mode)
            },
        ),
    }
}

pub fn check_master_key(path: &Path, key: &Seen, store: &Seen) -> Check {
    const N: &str = "master key";
    let p = path.display();
    match key {
        Seen::Missing if matches!(store, Seen::Present(_)) => fail(
            N,
            format!("{p} is missing but sealed-keys exists: nothing in the state dir can be decrypted"),
            "restore master.key from where you keep it (ironctl restore, or copy it back with mode 0600)",
        ),
        Seen::Missing => warn(
            N,
            format!("no master key at {p} yet"),
            "it is created at the daemon's first start; then back it up (see docs/operations.md)",
        ),
        Seen::Unreadable(why) => unreadable(N, path, why),
        Seen::Present(f) if f.is_symlink || !f.is_file => fail(
            N,
            format!("{p} is not a regular file"),
            "replace it with the real key file (the daemon refuses symlinks)",
        ),
        Seen::Present(f) if f.mode & 0o077 != 0 => fail(
            N,
            format!("{p} has mode {:o}: group or others can read the master key", f.mode),
            format!("chmod 600 {p}, and treat the key as exposed"),
        ),
        Seen::Present(f) if f.len != 32 => fail(
            N,
            format!("{p} is {} bytes long; a master key is 32", f.len),
            "restore the key from your backup",
        ),
        Seen::Present(f) if f.uid != 0 => warn(
            N,
            format!("{p} (mode {:o}) is owned by uid {}, not root", f.mode, f.uid),
            format!("chown root:root {p}"),
        ),
        Seen::Present(f) => pass(N, format!("{p}: mode {:o}, owner root, 32 bytes", f.mode)),
    }
}

/// The other private files of the state dir, by name.
pub fn check_state_files(files: &[(String, Seen)]) -> Check {
    const N: &str = "state files";
    let open: Vec<String> = files
        .iter()
        .filter_map(|(name, s)| match s {
            Seen::Present(f) if f.mode & 0o077 != 0 => Some(format!("{name} ({:o})", f.mode)),
            _ => None,
        })
        .collect();
    let unreadable: Vec<&str> = files
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Unreadable(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    let present = files
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Present(_)))
        .count();
    if !open.is_empty() {
        let names: Vec<&str> = files
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Present(f) if f.mode & 0o077 != 0))
            .map(|(n, _)| n.as_str())
            .collect();
        fail(
            N,
            format!("readable by group or others: {}", open.join(", ")),
            format!("chmod 600 {}", names.join(" ")),
        )
    } else if !unreadable.is_empty() {
        warn(
            N,
            format!("cannot look at {}", unreadable.join(", ")),
            "run doctor as root (or as the daemon's user)",
        )
    } else {
        pass(N, format!("{present} files, all owner-only"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

    fn dir(mode: u32, uid: u32) -> Seen {
        Seen::Present(PathFacts {
            mode,
            uid,
            is_dir: true,
            is_file: false,
            is_symlink: false,
            len: 4096,
        })
    }

    fn file(mode: u32, uid: u32, len: u64) -> Seen {
        Seen::Present(PathFacts {
            mode,
            uid,
            is_dir: false,
            is_file: true,
            is_symlink: false,
            len,
        })
    }

    #[test]
    fn state_dir_branches() {
        let p = Path::new("/var/lib/ironclaw");
        assert_eq!(level(check_state_dir(p, &Seen::Missing)), Level::Fail);
        assert_eq!(
            level(check_state_dir(p, &Seen::Unreadable("EACCES".into()))),
            Level::Warn
        );
        assert_eq!(level(check_state_dir(p, &file(0o600, 0, 1))), Level::Fail);
        let mut link = PathFacts {
            mode: 0o777,
            uid: 0,
            is_dir: false,
            is_file: false,
            is_symlink: true,
            len: 0,
        };
        assert_eq!(level(check_state_dir(p, &Seen::Present(link))), Level::Fail);
        link.is_symlink = false;
        link.is_dir = true;
        link.mode = 0o755;
        assert_eq!(level(check_state_dir(p, &Seen::Present(link))), Level::Fail);
        assert_eq!(level(check_state_dir(p, &dir(0o700, 1000))), Level::Warn);
        assert_eq!(level(check_state_dir(p, &dir(0o700, 0))), Level::Pass);
        let c = check_state_dir(p, &dir(0o711, 0));
        assert_eq!(level(c.clone()), Level::Pass);
        assert!(c.detail.contains("gofer"));
    }

    #[test]
    fn master_key_branches() {
        let p = Path::new("/var/lib/ironclaw/master.key");
        let store = file(0o600, 0, 100);
        assert_eq!(
            level(check_master_key(p, &Seen::Missing, &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &Seen::Missing, &Seen::Missing)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &Seen::Unreadable("x".into()), &store)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &dir(0o700, 0), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o644, 0, 32), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 0, 31), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 1000, 32), &store)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 0, 32), &store)),
            Level::Pass
        );
        assert_eq!(
            level(check_master_key(p, &file(0o400, 0, 32), &store)),
            Level::Pass
        );
    }

    #[test]
    fn state_file_branches() {
        let ok = vec![
            ("tokens".to_owned(), file(0o600, 0, 10)),
            ("dev-token".to_owned(), Seen::Missing),
        ];
        assert_eq!(level(check_state_files(&ok)), Level::Pass);
        let mut open = ok.clone();
        open.push(("registry.db".into(), file(0o644, 0, 10)));
        let c = check_state_files(&open);
        assert_eq!(level(c.clone()), Level::Fail);
        assert_eq!(c.fix.as_deref(), Some("chmod 600 registry.db"));
        let mut hidden = ok;
        hidden.push(("audit.jsonl".into(), Seen::Unreadable("EACCES".into())));
        assert_eq!(level(check_state_files(&hidden)), Level::Warn);
    }
}
