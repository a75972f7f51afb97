//! Where routed rows go: the seam between routing and the sessions' queue files.
//!
//! For: appending one inbound row to one session's queue. The daemon implements it
//! over the session manager (which creates the session's queue files on first use and
//! holds its key); tests use memory. Not for: waking the session — routing reports the
//! sessions to wake and the [`crate::Ingest`] service wakes them through
//! [`crate::Wake`], so routing stays synchronous and never blocks on a sandbox.

use std::error::Error;

use ironclaw_contract::ids::SessionId;
use ironclaw_contract::queue::QueueError;
use ironclaw_contract::rows::NewMessageIn;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The row is new in the session's queue.
    New,
    /// The queue already holds a row with this id (the queue refused the duplicate):
    /// the platform delivered the same message again, after the router's in-memory
    /// window or a daemon restart. Nothing was written.
    AlreadyQueued,
}

/// Appends routed rows to sessions' inbound queues.
pub trait InboundSink: Send + Sync {
    /// Appends `msg` to `session`'s inbound queue. The row has passed the contract's
    /// size check already. A row whose id the queue already holds is
    /// [`Appended::AlreadyQueued`], not an error. An error stops routing of the event
    /// (see [`crate::RouteFailure::Stopped`]).
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError>;
}

/// Why a sink could not append. Carries the implementation's own error (a queue
/// failure, a key that cannot be unsealed, a session that cannot be provisioned).
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct SinkError {
    context: String,
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

impl SinkError {
    /// `context` says what was being done (`open inbound writer`, …).
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl From<QueueError> for SinkError {
    fn from(e: QueueError) -> Self {
        Self::new("write inbound row", e)
    }
}
