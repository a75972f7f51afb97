//! The router's sink: a session's encrypted inbound queue, through the session
//! manager (which holds the session keys).

use std::sync::Arc;

use ironclaw_contract::ids::SessionId;
use ironclaw_contract::queue::{InboundWriter, QueueError};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_router::{Appended, InboundSink, SinkError};
use ironclaw_session::SessionManager;

pub struct SessionSink(pub Arc<SessionManager>);

impl InboundSink for SessionSink {
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        let cipher = self
            .0
            .cipher(session)
            .map_err(|e| SinkError::new("session key", e))?;
        let queues = self.0.queues();
        // A new session's files do not exist until its first launch; create them now
        // so the message is durable before the sandbox starts.
        if !queues.layout().inbound_db(session).exists() {
            queues
                .provision(session, &cipher)
                .map_err(|e| SinkError::new("provision queue files", e))?;
        }
        let mut w = queues
            .inbound_writer(session, &cipher)
            .map_err(|e| SinkError::new("open inbound queue", e))?;
        match w.write_message(msg) {
            Ok(_) => Ok(Appended::New),
            // The row id derives from the platform's message id: a redelivery.
            Err(QueueError::DuplicateId { .. }) => Ok(Appended::AlreadyQueued),
            Err(e) => Err(SinkError::new("write inbound", e)),
        }
    }
}
