//! The isolator's directories on disk: the private (0700) state root and bundle
//! directory, and removing a bundle (`<state>/bundles/<id>/`) once its container is gone.
//!
//! Not for: writing `config.json` ([`crate::spec`] does, through
//! [`SandboxSpec::write_config`](crate::spec::SandboxSpec::write_config)) or preparing
//! the rootfs and session directories (the session layer).

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::RunscError;

/// Creates `dir` (and parents) with mode 0700, or tightens an existing one to 0700.
pub(super) fn private_dir(dir: &Path) -> Result<(), RunscError> {
    let io_err = |what, source| RunscError::Io {
        what,
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create directory", e))?;
    let meta = fs::metadata(dir).map_err(|e| io_err("stat directory", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("restrict directory", e))?;
    }
    Ok(())
}

pub(super) fn remove_bundle(dir: &Path) -> Result<(), RunscError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RunscError::Io {
            what: "remove bundle",
            path: dir.to_owned(),
            source,
        }),
    }
}
