//! The wake port: a session that got an engaging row is launched if it is not running,
//! then rung.
//!
//! For: letting the [`crate::Ingest`] service wake sessions without depending on the
//! session manager. The daemon implements it over its session manager; tests record
//! the calls. Not for: deciding which sessions to wake (routing reports them).

use ironclaw_contract::ids::SessionId;

/// Wakes sessions.
pub trait Wake: Send + Sync {
    /// Launches `session` if needed, then rings its doorbell. Must not block: it is
    /// called from routing threads and from the Telegram poller's thread, and the
    /// caller's answer must not wait for a sandbox to start — the implementation does
    /// the work in the background and logs a failure.
    fn wake(&self, session: &SessionId);
}
