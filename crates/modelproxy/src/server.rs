//! Unix-socket listeners: bind safely, serve HTTP/1.1, stop and clean up.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ironclaw_contract::ids::SessionId;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ProxyError;

/// How long [`SessionListener::shutdown`] waits for in-flight calls before aborting.
const DRAIN: Duration = Duration::from_secs(5);

/// A served socket (a session's, or the base socket). Stop it with
/// [`SessionListener::shutdown`]; dropping it also stops serving and removes the
/// socket file, without waiting.
#[derive(Debug)]
pub struct SessionListener {
    session: Option<SessionId>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SessionListener {
    /// The session this socket serves (`None` for the base socket).
    pub fn session(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, lets in-flight calls finish (up to 5 s, then they are cut) and
    /// removes the socket file.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
                task.abort();
            }
        }
        remove_socket(&self.path);
    }
}

impl Drop for SessionListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        remove_socket(&self.path);
    }
}

fn remove_socket(path: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn sock_err(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> ProxyError {
    let path = path.to_owned();
    move |source| ProxyError::Socket { path, op, source }
}

/// Binds `path` (parent 0700 if created, socket 0600, stale socket replaced) and serves
/// `router` on it until shutdown.
pub(crate) async fn bind_and_serve(
    path: &Path,
    router: axum::Router,
    session: Option<SessionId>,
) -> Result<SessionListener, ProxyError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => {
            return Err(ProxyError::Config {
                what: format!("socket path {} needs a parent directory", path.display()),
            })
        }
    };
    if parent.exists() && !parent.is_dir() {
        return Err(ProxyError::Config {
            what: format!(
                "socket path {}: {} is not a directory",
                path.display(),
                parent.display()
            ),
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(sock_err(parent, "create the parent directory"))?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(sock_err(path, "remove the stale socket"))?;
        }
        Ok(_) => {
            return Err(ProxyError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(path, "inspect the path")(e)),
    }
    let std_listener =
        std::os::unix::net::UnixListener::bind(path).map_err(sock_err(path, "bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(sock_err(path, "chmod 0600"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(sock_err(path, "set non-blocking"))?;
    let listener =
        tokio::net::UnixListener::from_std(std_listener).map_err(sock_err(path, "register"))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shown = path.display().to_string();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(socket = %shown, error = %e, "model proxy listener failed");
        }
    });
    Ok(SessionListener {
        session,
        path: path.to_owned(),
        stop: Some(stop_tx),
        task: Some(task),
    })
}
