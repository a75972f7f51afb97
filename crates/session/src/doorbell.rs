//! The host side of each session's doorbell (DESIGN §6).
//!
//! The host listens on the session's doorbell socket; the agent keeps one connection.
//! A byte from the agent means "outbound has new rows" and is forwarded, as the
//! session's id, to whoever consumes [`DoorbellHub::new`]'s receiver (the delivery
//! loop). [`DoorbellHub::ring`] writes a byte to the agent: "inbound has new rows".
//!
//! No data crosses it: the bytes' values are ignored, a burst of bytes is one signal,
//! and signals from one session are forwarded at most once per
//! [`MIN_SIGNAL_INTERVAL`], so a hostile agent cannot flood the host with wake-ups.
//! Losing a ring is harmless: both sides fall back to polling.
//!
//! Not for: carrying messages, acknowledging anything, or deciding that an agent is
//! dead or stuck (the sweep does that from the heartbeat and the runtime). A held
//! connection is only the manager's cheap hint that the agent is up, because the
//! sandbox closes it when the agent exits.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ironclaw_contract::ids::SessionId;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Shortest time between two signals forwarded for one session.
pub const MIN_SIGNAL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum DoorbellError {
    #[error("doorbell socket {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("doorbell socket {path} exists and is not a socket")]
    NotASocket { path: PathBuf },
}

/// The sandbox-facing write half of the agent's current connection.
type Writer = Arc<tokio::net::unix::OwnedWriteHalf>;

struct Bell {
    writer: Option<Writer>,
    accept: JoinHandle<()>,
    path: PathBuf,
}

/// Every session's doorbell.
#[derive(Clone)]
pub struct DoorbellHub {
    bells: Arc<Mutex<HashMap<SessionId, Bell>>>,
    rung: mpsc::UnboundedSender<SessionId>,
}

impl DoorbellHub {
    /// The hub and the stream of sessions whose agents rang.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<SessionId>) {
        let (rung, rx) = mpsc::unbounded_channel();
        (
            Self {
                bells: Arc::default(),
                rung,
            },
            rx,
        )
    }

    fn bells(&self) -> MutexGuard<'_, HashMap<SessionId, Bell>> {
        self.bells.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds the session's doorbell at `path` (0600, owned by `owner` when given, so
    /// the sandbox's uid can connect) and starts accepting. Replaces an earlier bell
    /// of the same session.
    pub fn listen(
        &self,
        session: &SessionId,
        path: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<(), DoorbellError> {
        let io = |op: &'static str| {
            move |source| DoorbellError::Io {
                path: path.to_owned(),
                op,
                source,
            }
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path).map_err(io("remove the stale socket"))?
            }
            Ok(_) => {
                return Err(DoorbellError::NotASocket {
                    path: path.to_owned(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspect")(e)),
        }
        let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(io("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod 0600"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io("chown"))?;
        }
        std_listener
            .set_nonblocking(true)
            .map_err(io("set non-blocking"))?;
        let listener = UnixListener::from_std(std_listener).map_err(io("register"))?;
        let accept = tokio::spawn(accept_loop(self.clone(), session.clone(), listener));
        let old = self.bells().insert(
            session.clone(),
            Bell {
                writer: None,
                accept,
                path: path.to_owned(),
            },
        );
        if let Some(old) = old {
            old.accept.abort();
        }
        Ok(())
    }

    /// Wakes the session's agent. Returns false when no agent is connected (it will
    /// find the new rows at its next poll).
    pub fn ring(&self, session: &SessionId) -> bool {
        let writer = self.bells().get(session).and_then(|b| b.writer.clone());
        let Some(writer) = writer else { return false };
        // A full socket buffer means unread rings are already waiting: as good as sent.
        match writer.try_write(b"!") {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }

    /// Whether the session's agent is connected.
    pub fn connected(&self, session: &SessionId) -> bool {
        self.bells()
            .get(session)
            .is_some_and(|b| b.writer.is_some())
    }

    /// Stops listening and removes the socket.
    pub fn close(&self, session: &SessionId) {
        if let Some(bell) = self.bells().remove(session) {
            bell.accept.abort();
            let _ = std::fs::remove_file(&bell.path);
        }
    }
}

async fn accept_loop(hub: DoorbellHub, session: SessionId, listener: UnixListener) {
    let mut reader: Option<JoinHandle<()>> = None;
    loop {
        let stream: UnixStream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "doorbell accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The agent keeps one connection; a new one replaces the old.
        if let Some(r) = reader.take() {
            r.abort();
        }
        let (mut read, write) = stream.into_split();
        let mine: Writer = Arc::new(write);
        if let Some(bell) = hub.bells().get_mut(&session) {
            bell.writer = Some(Arc::clone(&mine));
        }
        let (hub2, sid) = (hub.clone(), session.clone());
        reader = Some(tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if hub2.rung.send(sid.clone()).is_err() {
                            break;
                        }
                        // Coalesce: whatever arrives during the pause is drained next
                        // read and counts as one more signal at most.
                        tokio::time::sleep(MIN_SIGNAL_INTERVAL).await;
                    }
                }
            }
            // Only forget the connection if a newer one has not replaced it.
            if let Some(bell) = hub2.bells().get_mut(&sid) {
                if bell.writer.as_ref().is_some_and(|w| Arc::ptr_eq(w, &mine)) {
                    bell.writer = None;
                }
            }
        }));
    }
}
