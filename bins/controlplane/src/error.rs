//! Why the daemon could not start, or stopped serving: one typed error for the binary.
//!
//! Every message names what to fix (a flag, a file, a mode), because it is the last
//! thing an operator sees before the process exits. The causes stay typed (`source()`
//! walks to the component's own error), so nothing is flattened into a string before it
//! is printed.
//!
//! Not here: errors of sessions that cannot *run* (no runtime, no image) — the daemon
//! still serves its API then, and says why in `/readyz` ([`crate::sessions`]).

use std::path::PathBuf;

/// A component's own error, kept typed behind the part of the daemon it belongs to.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A part of the daemon's state or services (key custody, registry, change store,
    /// tokens, channels, …) failed to open or start.
    #[error("{part}: {source}")]
    Part {
        part: &'static str,
        #[source]
        source: Cause,
    },
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// The audit chain does not open: the daemon cannot extend a chain it cannot read.
    #[error(
        "audit log: {}: {source}; see what is wrong with `ironctl audit verify --state-dir {}`, then restore the state dir from a backup (`ironctl restore`)",
        path.display(),
        state_dir.display()
    )]
    AuditLog {
        path: PathBuf,
        state_dir: PathBuf,
        #[source]
        source: ironclaw_audit::AuditError,
    },
    #[error(transparent)]
    ModelProxySocket(#[from] SocketError),
    /// A malformed provider setting (fail closed).
    #[error(transparent)]
    ModelProxy(#[from] ironclaw_modelproxy::ProxyError),
    #[error(transparent)]
    TelegramPolling(#[from] ironclaw_channels::telegram::poll::StartError),
    #[error(transparent)]
    Serve(#[from] ironclaw_api::ServeError),
}

impl DaemonError {
    /// Wraps a component's error under the name of the part it belongs to.
    pub fn part<E>(part: &'static str) -> impl FnOnce(E) -> DaemonError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| DaemonError::Part {
            part,
            source: Box::new(e),
        }
    }
}

/// The state directory cannot hold keys.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state dir {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create state dir {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state dir {} is not a directory: pass --state-dir a directory (created 0700 if missing), or move the file away",
        path.display()
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "state dir {} has mode {mode:o}; it holds keys and must be private: chmod 700 {}",
        path.display(),
        path.display()
    )]
    NotPrivate { path: PathBuf, mode: u32 },
}

/// The model proxy's base socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("--model-proxy-socket {}: needs a file name", path.display())]
    NoFileName { path: PathBuf },
    #[error("--model-proxy-socket {}: {source}", path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model proxy socket {}: another process is serving it (is another daemon running?); stop it or pass --model-proxy-socket",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error(
        "{source} (the parent directory must be creatable and writable by this user; choose another location with --model-proxy-socket)"
    )]
    Bind {
        #[source]
        source: ironclaw_modelproxy::ProxyError,
    },
}
