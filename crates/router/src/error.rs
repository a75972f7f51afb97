//! The router's errors: a refused event, or routing that stopped part-way.

use ironclaw_ingest::{RouteFailure, RouteReport, SinkError};
use ironclaw_registry::RegistryError;

/// Why [`crate::Router::route_inbound`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The event itself is unacceptable (empty channel type or platform id, a thread
    /// id the registry cannot hold, host provenance claimed by a channel, …). Nothing
    /// was created or written.
    #[error("invalid inbound event: {field}: {reason}")]
    InvalidEvent { field: &'static str, reason: String },
    /// The registry failed before any wiring was considered. Nothing was written.
    #[error("registry: {0}")]
    Registry(#[source] RegistryError),
    /// Routing stopped at a wiring whose write (or registry read) failed. `partial`
    /// holds the outcomes of the wirings before it — rows may have been written, and
    /// `partial.wake` still names sessions the caller should wake. Later wirings were
    /// not considered. A platform retry of the same message is routed again (it is
    /// not remembered as a duplicate).
    #[error("routing stopped after {} outcome(s): {cause}", partial.outcomes.len())]
    Stopped {
        partial: Box<RouteReport>,
        #[source]
        cause: StopCause,
    },
}

/// What stopped routing part-way.
#[derive(Debug, thiserror::Error)]
pub enum StopCause {
    #[error("inbound sink: {0}")]
    Sink(#[from] SinkError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// The OS random source failed while minting a message id.
    #[error("OS random source: {0}")]
    Rng(String),
    /// The row id derived from the platform's message id was refused.
    #[error("message id: {0}")]
    MessageId(String),
}

/// In the ingest port's terms. The message is unchanged: a [`RouteFailure`] displays
/// the [`RouteError`] it wraps (and a caller that knows the router may downcast to it).
impl From<RouteError> for RouteFailure {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::InvalidEvent { .. } => RouteFailure::Invalid(Box::new(e)),
            RouteError::Registry(_) => RouteFailure::Failed(Box::new(e)),
            RouteError::Stopped { partial, cause } => {
                // The report goes to the port's variant; the error keeps a copy so its
                // message ("routing stopped after N outcome(s): …") stays whole.
                let report = partial.clone();
                RouteFailure::Stopped {
                    partial: report,
                    error: Box::new(RouteError::Stopped { partial, cause }),
                }
            }
        }
    }
}
