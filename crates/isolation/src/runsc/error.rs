//! Why a runsc operation failed: one typed error for the isolator, whose messages name
//! the fix where there is one (install or upgrade runsc).
//!
//! Not for: mapping these to the session layer's errors (the caller does that).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::INSTALL_HINT;
use crate::spec::SpecError;

/// Why a runsc operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    #[error("runsc is not installed ({binary} not found); install gVisor's runtime: `{INSTALL_HINT}`", binary = .binary.display())]
    NotInstalled { binary: PathBuf },
    #[error("runsc {found} is too old: release {minimum} or newer is needed (for --host-uds=open and --oci-seccomp); upgrade it: `{INSTALL_HINT}`")]
    TooOld { found: String, minimum: u32 },
    #[error("runsc does not support --{flag}, which isolation depends on; install a current runsc: `{INSTALL_HINT}`")]
    MissingFeature { flag: &'static str },
    #[error("cannot parse the output of `runsc --version`: {output:?}")]
    UnparsableVersion { output: String },
    #[error("run {binary}: {source}", binary = .binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("runsc {op} {id} failed ({status}): {stderr}")]
    Failed {
        op: &'static str,
        id: String,
        status: String,
        stderr: String,
    },
    #[error("runsc {op} {id} did not finish within {after:?} and was killed")]
    Timeout {
        op: &'static str,
        id: String,
        after: Duration,
    },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} is already running; stop it first")]
    AlreadyRunning { id: String },
    #[error("container {id} was still running {after:?} after SIGKILL")]
    StopTimeout { id: String, after: Duration },
    #[error("unexpected output of runsc {op}: {detail}")]
    BadOutput { op: &'static str, detail: String },
    #[error("{what} {path}: {source}", path = .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
}
