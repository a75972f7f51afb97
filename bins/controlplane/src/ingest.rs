//! The ingest service's ports over the session manager, and the service composed from
//! them: rows go to a session's encrypted inbound queue, wakes launch and ring the
//! session. Adapters only (like `proxy_status.rs`); the behaviour lives in
//! `ironclaw-ingest`, `ironclaw-router` and `ironclaw-session`.

use std::sync::Arc;

use ironclaw_contract::ids::SessionId;
use ironclaw_contract::queue::{InboundWriter, QueueError};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_gateway::Gateway;
use ironclaw_ingest::{Appended, InboundSink, Ingest, SinkError, Wake};
use ironclaw_router::{Router, RouterConfig};
use ironclaw_session::SessionManager;
use tokio::runtime::Handle;

/// The ingest service of this daemon: the router (over the gateway's registry) writing
/// to the sessions' queues, and the session manager waking them. Call from within the
/// runtime: sessions are woken on it.
pub fn service(gateway: Arc<Gateway>, sessions: Arc<SessionManager>) -> Ingest {
    let router = Router::new(
        gateway,
        Arc::new(SessionSink(sessions.clone())),
        RouterConfig::default(),
    );
    Ingest::new(
        Arc::new(router),
        Arc::new(SessionWaker {
            sessions,
            runtime: Handle::current(),
        }),
    )
}

/// The router's sink: a session's encrypted inbound queue, through the session
/// manager (which holds the session keys).
struct SessionSink(Arc<SessionManager>);

impl InboundSink for SessionSink {
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        // A new session's files do not exist until its first launch; create them now
        // so the message is durable before the sandbox starts.
        self.0
            .provision_queues(session)
            .map_err(|e| SinkError::new("provision queue files", e))?;
        let mut w = self
            .0
            .inbound_writer(session)
            .map_err(|e| SinkError::new("open inbound queue", e))?;
        match w.write_message(msg) {
            Ok(_) => Ok(Appended::New),
            // The row id derives from the platform's message id: a redelivery.
            Err(QueueError::DuplicateId { .. }) => Ok(Appended::AlreadyQueued),
            Err(e) => Err(SinkError::new("write inbound", e)),
        }
    }
}

/// Wakes a session on the runtime: launched if needed, then rung. The caller (a
/// request, the Telegram poller's next batch) does not wait for a sandbox to start.
struct SessionWaker {
    sessions: Arc<SessionManager>,
    runtime: Handle,
}

impl Wake for SessionWaker {
    fn wake(&self, session: &SessionId) {
        let (m, sid) = (self.sessions.clone(), session.clone());
        self.runtime.spawn(async move {
            match m.ensure_running(&sid).await {
                Ok(_) => {
                    m.ring(&sid);
                }
                Err(e) => tracing::warn!(session = %sid, error = %e, "waking the session failed"),
            }
        });
    }
}
