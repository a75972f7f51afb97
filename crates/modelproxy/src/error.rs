//! Errors of the proxy's own API (configuration, sockets). Refusals of individual
//! calls are not errors of this kind: they are HTTP answers to the agent.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("model proxy configuration: {what}")]
    Config { what: String },
    #[error("model proxy socket {path}: cannot {op}: {source}")]
    Socket {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error(
        "model proxy socket {path}: the path exists and is not a socket; refusing to replace it"
    )]
    NotASocket { path: PathBuf },
    #[error("model proxy: cannot start the audit writer thread: {0}")]
    AuditThread(io::Error),
}
