//! The routing port: one verified event → the rows it wrote and the sessions to wake.
//!
//! For: letting the [`crate::Ingest`] service (and the channel side that calls it)
//! route without depending on the router, its registry and the SQLCipher stack. The
//! router implements [`RouteInbound`]; tests implement it in memory. Not for: the
//! routing rules themselves (the router's).

use std::error::Error;
use std::fmt;

use crate::event::InboundEvent;
use crate::report::RouteReport;

/// Routes one event: engagement, access and session decisions per wiring, at most one
/// row per wiring written through an [`crate::InboundSink`]. Blocks (registry and queue
/// I/O): the [`crate::Ingest`] service calls it on a blocking thread.
pub trait RouteInbound: Send + Sync {
    /// One outcome per wiring and the sessions to wake; waking is the caller's.
    fn route(&self, event: &InboundEvent) -> Result<RouteReport, RouteFailure>;
}

/// Why routing one event failed, in the terms a caller branches on. The router's own
/// error is kept as the source (callers that depend on the router may downcast it);
/// this type's message is that error's, unchanged.
#[derive(Debug)]
pub enum RouteFailure {
    /// The event itself is unacceptable (an empty platform id, a thread id too long,
    /// host provenance claimed by a channel, …). Nothing was created or written, and
    /// routing the same event again can never succeed.
    Invalid(Box<dyn Error + Send + Sync>),
    /// Routing stopped at a wiring whose write (or registry read) failed. `partial`
    /// holds the outcomes of the wirings before it — rows may have been written, and
    /// `partial.wake` names sessions that must still be woken. A platform retry of the
    /// same event is routed again.
    Stopped {
        partial: Box<RouteReport>,
        error: Box<dyn Error + Send + Sync>,
    },
    /// Routing failed before any wiring was considered (the registry, say). Nothing
    /// was written; a retry may succeed.
    Failed(Box<dyn Error + Send + Sync>),
}

impl RouteFailure {
    /// The underlying error.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        match self {
            RouteFailure::Invalid(e) | RouteFailure::Failed(e) => e.as_ref(),
            RouteFailure::Stopped { error, .. } => error.as_ref(),
        }
    }

    /// Sessions that got an engaging row before routing stopped (empty otherwise).
    pub fn partial_wake(&self) -> &[ironclaw_contract::ids::SessionId] {
        match self {
            RouteFailure::Stopped { partial, .. } => &partial.wake,
            _ => &[],
        }
    }
}

/// The underlying error's message, unchanged.
impl fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.error(), f)
    }
}

/// Transparent: the underlying error's source, so a chain is printed once.
impl Error for RouteFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error().source()
    }
}
