//! The session manager as the ingest service's two ports: the router's rows go to a
//! session's encrypted inbound queue ([`InboundSink`]), and a touched session is
//! launched if needed and rung ([`SessionWaker`], a [`Wake`]).
//!
//! Here rather than in the daemon because both need what only this crate holds: the
//! session keys behind the queue handles, and the launch path.
//!
//! Not here: routing (the router) or the order of route, write and wake
//! (`ironclaw-ingest`).

use std::sync::Arc;

use ironclaw_contract::ids::SessionId;
use ironclaw_contract::queue::{InboundWriter, QueueError};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_ingest::{Appended, InboundSink, SinkError, Wake};
use tokio::runtime::Handle;

use crate::manager::{QueueAccessError, SessionManager};

impl InboundSink for SessionManager {
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        // A new session's files do not exist until its first launch; create them now
        // so the message is durable before the sandbox starts.
        self.provision_queues(session).map_err(sink_error)?;
        let mut w = self.inbound_writer(session).map_err(sink_error)?;
        match w.write_message(msg) {
            Ok(_) => Ok(Appended::New),
            // The row id derives from the platform's message id: a redelivery.
            Err(QueueError::DuplicateId { .. }) => Ok(Appended::AlreadyQueued),
            Err(e) => Err(SinkError::new("write inbound", e)),
        }
    }
}

/// What was being done when a queue could not be opened, as the router reports it.
fn sink_error(e: QueueAccessError) -> SinkError {
    match e {
        QueueAccessError::Key(e) => SinkError::new("session key", e),
        QueueAccessError::Provision(e) => SinkError::new("provision queue files", e),
        QueueAccessError::Open(e) => SinkError::new("open inbound queue", e),
    }
}

/// Wakes a session on a runtime: launched if needed, then rung. The caller (a request,
/// the Telegram poller's next batch) does not wait for a sandbox to start.
pub struct SessionWaker {
    sessions: Arc<SessionManager>,
    runtime: Handle,
}

impl SessionWaker {
    /// A waker that launches on the runtime this is called from.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `Handle::current` does): the daemon builds it while
    /// composing, inside its runtime.
    pub fn on_current_runtime(sessions: Arc<SessionManager>) -> Self {
        Self {
            sessions,
            runtime: Handle::current(),
        }
    }
}

impl Wake for SessionWaker {
    fn wake(&self, session: &SessionId) {
        let (m, sid) = (Arc::clone(&self.sessions), session.clone());
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
